// JSON, table, Markdown and golden renderings of an Evaluation.
#include "sim/render.h"

#include "sim/quant_cost.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/json.h"
#include "core/yaml_io.h"

namespace dmap::sim {

namespace {

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", bytes / (1024.0 * 1024 * 1024));
  return buf;
}

std::string memory_cell(const Prediction& p) {
  std::string out;
  for (size_t i = 0; i < p.memory.size(); ++i) {
    if (!out.empty()) out += " ";
    out += p.memory[i].first.str() + ":" + gib(static_cast<double>(p.memory[i].second));
  }
  return out;
}

}  // namespace

std::vector<FigureRow> figures(const Evaluation& ev) {
  const Rates& r = ev.rates;
  std::vector<FigureRow> f;
  f.push_back({"cpu memory bandwidth", r.host.memory_bandwidth.value / 1e9, "GB/s", r.host.memory_bandwidth.source});
  for (const auto& [d, curve] : r.host.flops) {
    f.push_back(
        {"cpu " + std::string(dtype_name(d)) + " matmul", curve.points.back().second / 1e9, "GFLOP/s", curve.source});
  }
  f.push_back({"cpu dispatch per kernel", r.host.dispatch.value * 1e6, "us", r.host.dispatch.source});
  for (size_t i = 0; i < r.gpus.size(); ++i) {
    const std::string g = "gpu " + std::to_string(i) + " ";
    f.push_back(
        {g + "memory bandwidth", r.gpus[i].memory_bandwidth.value / 1e9, "GB/s", r.gpus[i].memory_bandwidth.source});
    const RateCurve c = r.gpus[i].flops_for(ev.graph->dtype);
    f.push_back(
        {g + std::string(dtype_name(ev.graph->dtype)) + " matmul", c.points.back().second / 1e12, "TFLOP/s", c.source});
    f.push_back({g + "launch per kernel", r.gpus[i].dispatch.value * 1e6, "us", r.gpus[i].dispatch.source});
  }
  if (!r.gpus.empty()) {
    f.push_back({"host-to-device pageable", r.h2d_pageable.value / 1e9, "GB/s", r.h2d_pageable.source});
    f.push_back({"host-to-device pinned", r.h2d_pinned.value / 1e9, "GB/s", r.h2d_pinned.source});
    f.push_back({"copy latency", r.copy_latency.value * 1e6, "us", r.copy_latency.source});
    f.push_back(
        {"accelerate hook per tensor", r.offload_tensor_overhead.value * 1e6, "us", r.offload_tensor_overhead.source});
  }
  if (ev.tree->quantization && !ev.tree->quantization->dequantize) {  // sim/quant_cost.h
    const QuantMethod m = ev.tree->quantization->method;
    const std::string key = quant_method_key(m);
    auto add = [&](const std::string& dev, const std::map<std::string, DequantFigure>& preset, bool gpu) {
      const DequantFigure q = dequant_figure(preset, m, gpu);
      f.push_back({dev + key + " dequant, decode", q.decode_bytes_per_weight, "B/weight", q.source});
      f.push_back({dev + key + " dequant, prefill", q.prefill_bytes_per_weight, "B/weight", q.source});
      f.push_back({dev + key + " extra kernels", static_cast<double>(q.kernels), "per layer", q.source});
    };
    add("cpu ", r.host.dequant, false);
    for (size_t i = 0; i < r.gpus.size(); ++i) add("gpu " + std::to_string(i) + " ", r.gpus[i].dequant, true);
  }
  const Figure& dr = r.disk_read_for(ev.graph->dtype);
  f.push_back({"disk read", dr.value / 1e9, "GB/s", dr.source});
  if (r.disk_read_large_from > 0) {  // one long stream the kernel reads ahead of
    f.push_back({"disk read, tensors >= " +
                     std::to_string(static_cast<long long>(std::lround(r.disk_read_large_from / (1024.0 * 1024.0)))) +
                     " MiB",
                 r.disk_read_large.value / 1e9, "GB/s", r.disk_read_large.source});
  }
  const Figure& pc = r.page_cache_for(ev.graph->dtype);
  if (r.torch_offload) {  // accelerate's copies under PyTorch (Rates::TorchOffload)
    const auto& t = *r.torch_offload;
    const DType d = ev.graph->dtype;
    f.push_back({"offloaded tensor copy (page cache -> warm pages, in a forward)",
                 t.copy.value / t.copy_scale_of(d) / 1e9, "GB/s", t.copy.source});
    f.push_back({"fresh page, tensors >= 32 MiB (all mapped afresh)", t.mapped_page.value * 1e6, "us/4 KiB",
                 t.mapped_page.source});
    f.push_back(
        {"fresh page, smaller tensors (from the heap)", t.fresh_page.value * 1e6, "us/4 KiB", t.fresh_page.source});
    f.push_back({"fresh share of smaller tensors' pages", t.heap_fresh.value, "", t.heap_fresh.source});
    if (t.cold_scale.count(d)) {
      f.push_back({"offloaded tensor copy, file not in the page cache (cold prefill)",
                   t.copy.value / t.copy_scale_of(d) / t.cold_scale_of(d) / 1e9, "GB/s", t.copy.source});
    }
  } else if (const auto it = r.page_cache_curve.find(ev.graph->dtype); it != r.page_cache_curve.end()) {
    // By tensor size: the smallest and largest calibrated sizes (between them, interpolated).
    const auto& pts = it->second.points;
    const auto mib = [](double v) { return std::to_string(static_cast<long long>(std::lround(v))); };
    f.push_back({"page-cache read, tensors <= " + mib(pts.front().first) + " MiB", pts.front().second / 1e9, "GB/s",
                 it->second.source});
    f.push_back({"page-cache read, tensors >= " + mib(pts.back().first) + " MiB", pts.back().second / 1e9, "GB/s",
                 it->second.source});
  } else {
    f.push_back({"page-cache read", pc.value / 1e9, "GB/s", pc.source});
  }
  if (!r.torch_offload && r.page_cache_large_from > 0) {  // copied out of the file's map from this size on
    f.push_back({"page-cache read, tensors >= " +
                     std::to_string(static_cast<long long>(std::lround(r.page_cache_large_from / (1024.0 * 1024.0)))) +
                     " MiB (copied out of the file's map)",
                 r.page_cache_large.value / 1e9, "GB/s", r.page_cache_large.source});
  }
  return f;
}

namespace {

void scenario_json(JsonWriter& w, const SimScenario& s, const Evaluation& ev) {
  w.begin_object();
  w.key("id");
  w.value(s.base.id);
  w.key("title");
  w.value(s.title);
  w.key("file");
  w.value(s.base.file);
  w.key("model");
  w.value(ev.tree->model_name.empty() ? ev.tree->model_type : ev.tree->model_name);
  if (ev.tree->quantization || !s.quantization_note.empty()) {
    w.key("quantization");
    w.value(s.quantization_note.empty() ? quant_summary(*ev.tree->quantization) : s.quantization_note);
  }
  if (!ev.tree->gguf_file_type.empty()) {
    w.key("gguf");
    w.value(ev.tree->gguf_file_type);
  }
  w.key("hardware");
  w.value(s.hardware.describe());
  w.key("workload");
  w.begin_object();
  w.key("batch");
  w.value(s.workload.batch);
  w.key("prompt");
  w.value(s.workload.prompt);
  w.key("new_tokens");
  w.value(s.workload.new_tokens);
  w.key("dtype");
  w.value(std::string(dtype_name(s.workload.dtype)));
  w.end_object();
  w.key("max_memory");
  w.raw(max_memory_to_json(ev.max_memory));
  w.key("max_memory_derived");
  w.value(ev.max_memory_derived);
  w.key("calibration");
  if (ev.rates.calibration_name.empty()) {
    w.null();
  } else {
    w.value(ev.rates.calibration_name);
  }
  w.end_object();
}

}  // namespace

std::string evaluation_json(const SimScenario& s, const Evaluation& ev) {
  JsonWriter w;
  w.begin_object();
  w.key("scenario");
  scenario_json(w, s, ev);
  w.key("figures");
  w.begin_array();
  for (const auto& f : figures(ev)) {
    w.begin_object();
    w.key("name");
    w.value(f.name);
    w.key("value");
    w.value(f.value);
    w.key("unit");
    w.value(f.unit);
    w.key("source");
    w.value(source_name(f.source));
    w.end_object();
  }
  w.end_array();
  w.key("results");
  w.begin_array();
  for (const auto& r : ev.rows) {
    const Prediction& p = r.pred;
    w.begin_object();
    w.key("strategy");
    w.value(r.strategy);
    w.key("semantics");
    w.value(r.semantics);
    if (!r.runtime.empty()) {
      w.key("runtime");
      w.value(r.runtime);
    }
    w.key("feasible");
    w.value(p.feasible);
    if (!p.feasible) {
      w.key("reason");
      w.value(p.oom);
    }
    w.key("device_map");
    if (r.error.empty()) {
      w.raw(device_map_to_json(r.map));
    } else {
      w.null();
    }
    w.key("memory_bytes");
    w.begin_object();
    for (const auto& [d, b] : p.memory) {
      w.key(d.str());
      w.value(static_cast<int64_t>(b));
    }
    w.end_object();
    w.key("prefill_s");
    w.value(p.prefill_s);
    w.key("decode_token_s");
    w.value(p.decode_token_s);
    w.key("tokens_per_s");
    w.value(p.tokens_per_s);
    w.key("total_s");
    w.value(p.total_s);
    w.key("transfer_bytes_per_token");
    w.value(p.transfer_bytes_per_token);
    w.key("offloaded_fraction");
    w.value(p.offloaded_fraction);
    w.key("bottleneck");
    w.value(resource_name(p.bottleneck));
    w.key("decode_breakdown_s");
    w.begin_object();
    for (int i = 0; i < static_cast<int>(Resource::kCount); ++i) {
      w.key(resource_name(static_cast<Resource>(i)));
      w.value(p.decode.s[i]);
    }
    w.end_object();
    if (!r.same_as.empty()) {
      w.key("same_as");
      w.value(r.same_as);
    }
    w.end_object();
  }
  w.end_array();
  w.key("recommendation");
  if (ev.recommended < 0) {
    w.null();
  } else {
    const ResultRow& b = ev.rows[ev.recommended];
    w.begin_object();
    w.key("strategy");
    w.value(b.strategy);
    w.key("semantics");
    w.value(b.semantics);
    w.key("decode_token_s");
    w.value(b.pred.decode_token_s);
    w.key("total_s");
    w.value(b.pred.total_s);
    w.key("device_map");
    w.raw(device_map_to_json(b.map));
    w.key("how_to_run");
    w.value(ev.how_to_run);
    w.end_object();
  }
  w.key("break_even_offloaded_fraction");
  w.value(ev.break_even_fraction);
  w.key("verdict");
  w.value(ev.verdict);
  w.end_object();
  return w.str() + "\n";
}

std::string evaluation_table(const SimScenario& s, const Evaluation& ev) {
  std::ostringstream o;
  o << "scenario:   " << s.base.id << (s.title.empty() ? std::string() : std::string(" - ").append(s.title)) << "\n";
  o << "model:      " << (ev.tree->model_name.empty() ? ev.tree->model_type : ev.tree->model_name) << ", "
    << dtype_name(s.workload.dtype) << "\n";
  if (ev.tree->quantization) o << "quantized:  " << quant_summary(*ev.tree->quantization) << "\n";
  if (!ev.tree->gguf_file_type.empty())
    o << "gguf:       " << ev.tree->gguf_file_type << " (llama.cpp; each tensor at llama-quantize's type)\n";
  if (!s.quantization_note.empty()) o << "quantized:  " << s.quantization_note << "\n";
  o << "hardware:   " << s.hardware.describe() << "\n";
  o << "workload:   batch " << s.workload.batch << ", prompt " << s.workload.prompt << ", " << s.workload.new_tokens
    << " new tokens\n";
  o << "max_memory: " << max_memory_to_json(ev.max_memory)
    << (ev.max_memory_derived ? " (derived from the hardware)" : "") << "\n";
  o << "figures:    "
    << (ev.rates.calibration_name.empty() ? "datasheet" : "calibrated by " + ev.rates.calibration_name) << "\n";
  if (!s.runtimes.empty()) {
    o << "runtimes:   ";
    const Calibration* cal = s.calibration ? &*s.calibration : nullptr;
    for (size_t i = 0; i < s.runtimes.size(); ++i) {
      const Runtime r = s.runtimes[i];
      o << (i ? "; " : "") << runtime_name(r) << " ("
        << (r == Runtime::kDmap            ? "its own executor"
            : profile_for(cal, r).measured ? "profile measured on this machine"
                                           : "profile estimated, not measured")
        << ")";
    }
    o << "\n";
  }
  o << "\n";
  char line[512];
  // With runtimes named, the semantics column carries the runtime too ("accelerate/transformers").
  const bool named = !s.runtimes.empty();
  auto sem_cell = [&](const ResultRow& r) { return r.runtime.empty() ? r.semantics : r.semantics + "/" + r.runtime; };
  const int sem_width = named ? 24 : 18;
  std::snprintf(line, sizeof line, "%-3s %-16s %-*s %-4s %10s %11s %9s %10s %9s %-11s %s\n", "#", "strategy", sem_width,
                named ? "semantics/runtime" : "semantics", "fits", "prefill", "per token", "tok/s", "total",
                "moved/tok", "bottleneck", "memory GiB");
  o << line;
  int rank = 0;
  for (int i : ev.ranking) {
    const ResultRow& r = ev.rows[i];
    const Prediction& p = r.pred;
    ++rank;
    if (!r.error.empty()) {
      std::snprintf(line, sizeof line, "%-3d %-16s %-*s %-4s %s\n", rank, r.strategy.c_str(), sem_width,
                    sem_cell(r).c_str(), "no", ((r.strategy == "optimal" ? "" : "planner raised: ") + r.error).c_str());
      o << line;
      continue;
    }
    char tps[32];
    std::snprintf(tps, sizeof tps, "%.2f", p.tokens_per_s);
    std::snprintf(line, sizeof line, "%-3d %-16s %-*s %-4s %10s %11s %9s %10s %9s %-11s %s\n", rank, r.strategy.c_str(),
                  sem_width, sem_cell(r).c_str(), fits_label(p), format_seconds(p.prefill_s).c_str(),
                  format_seconds(p.decode_token_s).c_str(), tps, format_seconds(p.total_s).c_str(),
                  format_bytes_human(p.transfer_bytes_per_token).c_str(), resource_name(p.bottleneck).c_str(),
                  memory_cell(p).c_str());
    o << line;
  }
  // The rows that do not fit, then those their runtime cannot run, each under its own heading.
  for (const bool cannot_run : {false, true}) {
    bool any = false;
    for (const auto& r : ev.rows) {
      if (r.pred.feasible || !r.error.empty() || r.pred.cannot_run != cannot_run) continue;
      if (!any) o << (cannot_run ? "\ncannot run:\n" : "\nout of memory:\n");
      any = true;
      o << "  " << r.strategy << " (" << semantics_label(r) << "): " << r.pred.oom << "\n";
    }
  }
  o << "\n" << ev.verdict << "\n";
  if (!ev.how_to_run.empty()) o << "run it: " << ev.how_to_run << "\n";
  return o.str();
}

std::string evaluation_markdown(const SimScenario& s, const Evaluation& ev) {
  std::ostringstream o;
  o << "| # | strategy | semantics | fits | prefill | per token | tokens/s | total | moved/token | bottleneck | memory "
       "(GiB) |\n";
  o << "|---|---|---|---|---|---|---|---|---|---|---|\n";
  int rank = 0;
  for (int i : ev.ranking) {
    const ResultRow& r = ev.rows[i];
    const Prediction& p = r.pred;
    ++rank;
    char tps[32];
    std::snprintf(tps, sizeof tps, "%.2f", p.tokens_per_s);
    if (!r.error.empty()) {
      o << "| " << rank << " | " << r.strategy << " | - | no | " << (r.strategy == "optimal" ? "" : "planner raised: ")
        << r.error << " |||||||\n";
      continue;
    }
    o << "| " << rank << " | " << r.strategy << " | " << semantics_label(r) << " | "
      << (p.feasible ? "yes" : "**" + std::string(fits_label(p)) + "**") << " | " << format_seconds(p.prefill_s)
      << " | " << format_seconds(p.decode_token_s) << " | " << tps << " | " << format_seconds(p.total_s) << " | "
      << format_bytes_human(p.transfer_bytes_per_token) << " | " << resource_name(p.bottleneck) << " | "
      << memory_cell(p) << " |\n";
  }
  (void)s;
  o << "\n" << ev.verdict << "\n";
  return o.str();
}

std::string golden_json(const SimScenario& s, const Evaluation& ev) {
  JsonWriter w(true);
  w.begin_object();
  w.key("scenario");
  w.value(s.base.id);
  w.key("tolerance");
  w.value(0.01);
  w.key("recommendation");
  if (ev.recommended < 0) {
    w.null();
  } else {
    w.begin_object();
    w.key("strategy");
    w.value(ev.rows[ev.recommended].strategy);
    w.key("semantics");
    w.value(ev.rows[ev.recommended].semantics);
    w.key("device_map");
    w.raw(device_map_to_json(ev.rows[ev.recommended].map));
    w.end_object();
  }
  w.key("ranking");
  w.begin_array();
  auto row_key = [](const ResultRow& r) {
    return r.strategy + "/" + r.semantics + (r.runtime.empty() ? "" : "/" + r.runtime);
  };
  for (int i : ev.ranking) w.value(row_key(ev.rows[i]));
  w.end_array();
  w.key("results");
  w.begin_array();
  for (const auto& r : ev.rows) {
    w.begin_object();
    w.key("row");
    w.value(row_key(r));
    w.key("feasible");
    w.value(r.pred.feasible);
    w.key("prefill_s");
    w.value(r.pred.prefill_s);
    w.key("decode_token_s");
    w.value(r.pred.decode_token_s);
    w.key("total_s");
    w.value(r.pred.total_s);
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.str() + "\n";
}

std::string compare_golden(const SimScenario& s, const Evaluation& ev, const std::string& golden_file) {
  const YAML::Node fresh = load_yaml_string(golden_json(s, ev), "<fresh evaluation>");
  const YAML::Node gold = load_yaml_file(golden_file);
  std::ostringstream d;
  const double tol = gold["tolerance"].IsDefined() ? gold["tolerance"].as<double>() : 0.01;
  auto str = [](const YAML::Node& n) {
    if (!n.IsDefined() || n.IsNull()) return std::string("null");
    YAML::Emitter e;
    e << YAML::Flow << n;
    return std::string(e.c_str());
  };
  if (str(gold["recommendation"]) != str(fresh["recommendation"])) {
    d << "recommendation changed: " << str(gold["recommendation"]) << " -> " << str(fresh["recommendation"]) << "\n";
  }
  if (str(gold["ranking"]) != str(fresh["ranking"])) {
    d << "ranking changed: " << str(gold["ranking"]) << " -> " << str(fresh["ranking"]) << "\n";
  }
  const YAML::Node gr = gold["results"], fr = fresh["results"];
  if (!gr.IsSequence() || gr.size() != fr.size()) {
    d << "number of results changed\n";
    return d.str();
  }
  for (size_t i = 0; i < gr.size(); ++i) {
    const std::string row = gr[i]["row"].as<std::string>();
    if (row != fr[i]["row"].as<std::string>()) {
      d << "result " << i << " is " << fr[i]["row"].as<std::string>() << ", was " << row << "\n";
      continue;
    }
    if (gr[i]["feasible"].as<bool>() != fr[i]["feasible"].as<bool>()) d << row << ": feasibility changed\n";
    for (const char* k : {"prefill_s", "decode_token_s", "total_s"}) {
      const double a = gr[i][k].as<double>(), b = fr[i][k].as<double>();
      if (std::fabs(a - b) > tol * std::max(std::fabs(a), 1e-12)) {
        d << row << ": " << k << " " << a << " -> " << b << " (beyond " << tol * 100 << "%)\n";
      }
    }
  }
  return d.str();
}

}  // namespace dmap::sim
