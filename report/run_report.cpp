// `dmap run`'s table and JSON (see run_report.h).
#include "report/run_report.h"

#include <cstdio>

#include "core/json.h"
#include "core/stats.h"

namespace dmap::report {

namespace {

std::string line(const char* fmt, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

double tokens_per_s(const RunReport& r) {
  const double d = median(r.decode_s);
  return d > 0 ? static_cast<double>(r.batch) / d : 0;
}

}  // namespace

std::string run_report_json(const RunReport& r) {
  JsonWriter w;
  w.begin_object();
  w.key("tokens");
  w.begin_array();
  for (const auto& seq : r.tokens) {
    w.begin_array();
    for (int32_t t : seq) w.value(static_cast<int64_t>(t));
    w.end_array();
  }
  w.end_array();
  w.key("prompt_tokens");
  w.value(r.prompt_tokens);
  w.key("prefill_s");
  w.value(r.prefill_s);
  w.key("decode_token_s");
  w.value(median(r.decode_s));
  w.key("tokens_per_s");
  w.value(tokens_per_s(r));
  w.key("threads");
  w.value(static_cast<int64_t>(r.threads));
  w.key("isa");
  w.value(r.isa);
  w.key("disk_bytes_read");
  w.value(r.disk_bytes_read);
  if (r.disk_bytes_read) {
    w.key("decode_disk_read_s");
    w.value(r.decode_disk_read_s);
  }
  if (r.prefill_experts.forwards + r.decode_experts.forwards > 0) {
    w.key("experts_touched");  // per sparse-layer forward: measured, and uniform routing's E(1 - (1 - k/E)^rows)
    w.begin_object();
    for (const auto& [phase, e] : {std::pair{"prefill", &r.prefill_experts}, std::pair{"decode", &r.decode_experts}}) {
      if (e->forwards == 0) continue;
      w.key(phase);
      w.begin_object();
      w.key("measured");
      w.value(e->touched);
      w.key("uniform");
      w.value(e->uniform);
      if (e->spread) {
        w.key("sequence_spread");
        w.value(*e->spread);
      }
      w.end_object();
    }
    w.end_object();
  }
  w.key("backend");
  w.value(r.backend);
  w.key("semantics");
  w.value(r.semantics);
  w.key("device_map");
  w.raw(r.device_map_json);
  w.key("modules");
  w.begin_array();
  for (const auto& m : r.modules) {
    w.begin_object();
    w.key("module");
    w.value(m.module);
    w.key("device");
    w.value(m.device);
    w.key("prefill_s");
    w.value(m.prefill_s);
    w.key("decode_s");
    w.value(m.decode_s);
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.str();
}

std::string run_report_table(const RunReport& r) {
  std::string s;
  s += "model:      " + r.model + " (" + r.family + ", " + r.weights + " weights, " + r.dtype + ")\n";
  s += "placement:  " + r.placement + "\n";
  s += "executor:   " + r.executor + "\n";
  s += line("run:        batch %lld, prompt %lld tokens, %lld new tokens, %d threads, %s kernels\n",
            static_cast<long long>(r.batch), static_cast<long long>(r.prompt_tokens),
            static_cast<long long>(r.new_tokens), r.threads, r.isa.c_str());
  s += line("prefill:    %.3f s\n", r.prefill_s);
  s += line("decode:     %.2f ms/token (median of %zu steps), %.2f tokens/s\n", median(r.decode_s) * 1e3,
            r.decode_s.size(), tokens_per_s(r));
  if (r.disk_bytes_read) {
    s += line("disk:       %.2f MB read; decode spent %.2f ms/token (mean) copying disk-offloaded weights\n",
              static_cast<double>(r.disk_bytes_read) / 1e6, r.decode_disk_read_s * 1e3);
  }
  if (r.prefill_experts.forwards + r.decode_experts.forwards > 0) {
    s += line("experts:    %lld routed, %lld per token; touched per sparse layer:", static_cast<long long>(r.experts),
              static_cast<long long>(r.top_k));
    if (r.prefill_experts.forwards > 0) {
      s += line(" prefill %.2f (uniform routing: %.2f for %.0f tokens", r.prefill_experts.touched,
                r.prefill_experts.uniform, r.prefill_experts.rows);
      if (r.prefill_experts.spread) s += line("; sequence spread %.3f", *r.prefill_experts.spread);
      s += ")";
    }
    if (r.decode_experts.forwards > 0) {
      s += line("%s decode %.2f (uniform: %.2f", r.prefill_experts.forwards > 0 ? "," : "", r.decode_experts.touched,
                r.decode_experts.uniform);
      if (r.decode_experts.spread) s += line("; sequence spread %.3f", *r.decode_experts.spread);
      s += ")";
    }
    s += "\n";
  }
  for (size_t b = 0; b < r.tokens.size(); ++b) {
    s += line("tokens[%zu]:", b);
    for (int32_t t : r.tokens[b]) s += line(" %d", t);
    s += "\n";
  }
  s += line("\n%-44s %-6s %12s %14s\n", "module", "device", "prefill ms", "decode ms/tok");
  for (const auto& m : r.modules) {
    s += line("%-44s %-6s %12.3f %14.4f\n", m.module.c_str(), m.device.c_str(), m.prefill_s * 1e3, m.decode_s * 1e3);
  }
  return s;
}

}  // namespace dmap::report
