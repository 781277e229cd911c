// The GPU trace model on the committed fixture (tests/data/traces/): raw file parsing and exact
// round trip, per-module aggregates against hand sums, the Chrome/Perfetto export's structure,
// and the errors bad input gets. Runs everywhere (no GPU, no CUPTI needed).
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "core/error.h"
#include "core/json_parse.h"
#include "trace/gpu_trace.h"

using namespace dmap;
using namespace dmap::trace;

namespace {

const std::string kFixture = std::string(DMAP_SOURCE_DIR) + "/tests/data/traces/synthetic_2layer.gpu.json";
constexpr int64_t kBase = 1715000000000000000;  // the fixture's time base (make_synthetic_trace.py)
constexpr uint32_t kThread = 2747271232u;
constexpr int64_t kMiB = 1 << 20;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// 1-based line of the first occurrence of `needle` in `text`.
int line_of(const std::string& text, const std::string& needle) {
  const size_t at = text.find(needle);
  REQUIRE(at != std::string::npos);
  int line = 1;
  for (size_t i = 0; i < at; ++i) line += text[i] == '\n';
  return line;
}

std::string replace_once(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  text.replace(at, from.size(), to);
  return text;
}

const ModuleAggregate& row(const std::vector<ModuleAggregate>& rows, const std::string& module,
                           const std::string& phase) {
  for (const auto& r : rows) {
    if (r.module == module && r.phase == phase) return r;
  }
  FAIL("no aggregate row for " << module << " / " << phase);
  return rows.front();
}

// Expects parse_gpu_trace to reject `text`: the error names the file, the line (0 = do not
// check) and contains `what`.
void expect_input_error(const std::string& text, int line, const std::string& what) {
  try {
    parse_gpu_trace(text, "bad.gpu.json");
    FAIL("accepted: " << what);
  } catch (const InputError& e) {
    INFO(e.what());
    CHECK(e.file() == "bad.gpu.json");
    CHECK(std::string(e.what()).find("bad.gpu.json") == 0);
    if (line > 0) CHECK(e.line() == line);
    CHECK(e.message().find(what) != std::string::npos);
  }
}

double num(const JsonValue& v) { return v.is_int() ? static_cast<double>(v.i) : v.d; }

}  // namespace

TEST_CASE("the fixture parses: counts per kind, a copy's fields, modules and host ranges", "[unit][trace]") {
  const GpuTrace t = parse_gpu_trace(read_file(kFixture), kFixture);
  std::map<ActivityKind, int> count;
  for (const auto& a : t.activities) ++count[a.kind];
  CHECK(t.activities.size() == 51);
  CHECK(count[ActivityKind::kKernel] == 15);  // 5 per forward
  CHECK(count[ActivityKind::kMemcpy] == 9);   // prefill 4, decode 3 + 2
  CHECK(count[ActivityKind::kMemset] == 1);
  CHECK(count[ActivityKind::kRuntime] == 26);
  CHECK(t.externals.size() == 13);
  CHECK(t.correlation_to_external.size() == 25);  // every runtime call but the input-ids copy
  CHECK(t.host_ranges.size() == 3);
  CHECK(t.dropped_records == 0);
  CHECK(t.provenance.source == "synthetic");
  CHECK(t.provenance.devices.at(0) == "NVIDIA H200");

  // The first accelerate-style weight copy of layer 1 in prefill (correlation 6).
  const GpuActivity* copy = nullptr;
  for (const auto& a : t.activities) {
    if (a.kind == ActivityKind::kMemcpy && a.correlation == 6) copy = &a;
  }
  REQUIRE(copy != nullptr);
  CHECK(copy->bytes == 32 * kMiB);
  CHECK(copy->copy_kind == "HtoD");
  CHECK(copy->src_kind == "pageable");
  CHECK(copy->dst_kind == "device");
  CHECK(copy->stream == 7);
  CHECK(copy->start_ns == kBase + 135000);
  CHECK(copy->end_ns == kBase + 135000 + 2097152);
  const ExternalRange* m = t.module_of(*copy);
  REQUIRE(m != nullptr);
  CHECK(m->module == "model.layers.1");
  CHECK(m->step == -1);

  // The prefetch copy: pinned, on the copy stream, attributed to layer 1 of decode step 1.
  const GpuActivity* prefetch = nullptr;
  for (const auto& a : t.activities) {
    if (a.kind == ActivityKind::kMemcpy && a.src_kind == "pinned") prefetch = &a;
  }
  REQUIRE(prefetch != nullptr);
  CHECK(prefetch->stream == 13);
  CHECK(prefetch->bytes == 96 * kMiB);
  REQUIRE(t.module_of(*prefetch) != nullptr);
  CHECK(t.module_of(*prefetch)->step == 1);

  const HostRange& h = t.host_ranges.front();
  CHECK(h.module == "lm_head");
  CHECK(h.step == -1);
  CHECK(h.end_ns - h.start_ns == 700000);
  CHECK(h.thread_id == kThread);
}

TEST_CASE("raw file round trip is exact", "[unit][trace]") {
  const std::string text = read_file(kFixture);
  const GpuTrace t = parse_gpu_trace(text, kFixture);
  // The fixture is written in the writer's own layout: byte for byte.
  CHECK(gpu_trace_json(t) == text);
  CHECK(parse_gpu_trace(gpu_trace_json(t), "again") == t);

  // Odd names, empty sections, a runtime-only trace, large values.
  GpuTrace u;
  u.provenance.source = "cupti";
  u.provenance.note = "quote \" backslash \\ tab\t and ünïcødé";
  u.dropped_records = 17;
  u.externals[7] = {7, "model.layers.\"0\"", 3};
  u.correlation_to_external[4294967295u] = 7;
  GpuActivity k;
  k.kind = ActivityKind::kKernel;
  k.name = "void gemm<__half, 128>(int, float const*)";
  k.start_ns = 9000000000000000000;
  k.end_ns = 9000000000000000001;
  k.correlation = 4294967295u;
  k.device = 3;
  k.context = 9;
  k.stream = 4000000000u;
  k.grid = {2147483647, 1, 1};
  k.block = {1024, 1, 1};
  k.shared_bytes = 232448;
  u.activities.push_back(k);
  GpuActivity ms;
  ms.kind = ActivityKind::kMemset;
  ms.bytes = 0;
  ms.dst_kind = "managed";
  u.activities.push_back(ms);
  const GpuTrace back = parse_gpu_trace(gpu_trace_json(u), "u");
  CHECK(back == u);
  CHECK(back.activities[0].name == k.name);
  CHECK(back.provenance.note == u.provenance.note);
  CHECK(parse_gpu_trace(gpu_trace_json(GpuTrace{}), "empty") == GpuTrace{});
}

TEST_CASE("per-module aggregates equal the sums of the fixture's records", "[unit][trace]") {
  const GpuTrace t = parse_gpu_trace(read_file(kFixture), kFixture);
  const auto rows = module_aggregates(t);
  // 4 modules x 2 phases + the input-ids copy issued outside any module.
  REQUIRE(rows.size() == 9);
  CHECK(rows[0].module == "model.embed_tokens");
  CHECK(rows[0].phase == "prefill");
  CHECK(rows[3].module == "lm_head");
  CHECK(rows[4].phase == "decode");
  CHECK(rows[4].module == "model.embed_tokens");
  CHECK(rows[5].module == "model.layers.0");
  CHECK(rows[6].module == "model.layers.1");  // its first decode record is in step 0
  CHECK(rows[8].module == "");
  CHECK(rows[8].phase == "");

  // Layer 1 in prefill: accelerate semantics, two pageable copies (32 + 64 MiB at 16 B/ns) then
  // attention 50 us + MLP 60 us.
  const auto& l1p = row(rows, "model.layers.1", "prefill");
  CHECK(l1p.steps == 1);
  CHECK(l1p.kernels == 2);
  CHECK(l1p.kernel_ns == 50000 + 60000);
  CHECK(l1p.copies == 2);
  CHECK(l1p.copy_ns == 2097152 + 4194304);
  CHECK(l1p.bytes_htod == 32 * kMiB + 64 * kMiB);
  CHECK(l1p.bytes_pageable == 96 * kMiB);
  CHECK(l1p.bytes_dtoh == 0);
  CHECK(l1p.runtime_calls == 4);  // 2 cudaMemcpy + 2 cudaLaunchKernel
  CHECK(l1p.runtime_ns == (2234152 - 29000) + (6434456 - 2235152) + 4000 + 4000);
  CHECK(l1p.gpu_span_ns == 6551456 - 135000);  // first copy's start .. MLP's end
  CHECK(l1p.host_ns == 0);

  // Layer 1 in decode: step 0 as in prefill (12 + 9 us kernels), step 1 prefetched (one pinned
  // 96 MiB copy at 48 B/ns on stream 13, a cudaStreamWaitEvent, the kernels queued behind it).
  const auto& l1d = row(rows, "model.layers.1", "decode");
  CHECK(l1d.steps == 2);
  CHECK(l1d.kernels == 4);
  CHECK(l1d.kernel_ns == 2 * (12000 + 9000));
  CHECK(l1d.per_step(l1d.kernel_ns) == Approx(21000));
  CHECK(l1d.copies == 3);
  CHECK(l1d.copy_ns == 2097152 + 4194304 + 2097152);
  CHECK(l1d.bytes_htod == 96 * kMiB + 96 * kMiB);
  CHECK(l1d.bytes_pageable == 96 * kMiB);  // only step 0's copies
  CHECK(l1d.runtime_calls == 4 + 4);
  // step 0: first copy 7290456 .. MLP 13617912; step 1: the prefetch push (the copy alone) and
  // the compute push (two kernels back to back, 12 + 9 us).
  CHECK(l1d.gpu_span_ns == (13617912 - 7290456) + 2097152 + (12000 + 9000));

  const auto& l0p = row(rows, "model.layers.0", "prefill");
  CHECK(l0p.memsets == 1);
  CHECK(l0p.memset_bytes == kMiB);
  CHECK(l0p.memset_ns == 4000);
  CHECK(l0p.kernel_ns == 50000 + 60000);
  CHECK(l0p.gpu_span_ns == 135000 - 20000);  // memset start .. MLP end

  // lm_head: computed by the CPU backend after a 4 KiB device->pageable copy of the hidden state.
  const auto& hp = row(rows, "lm_head", "prefill");
  CHECK(hp.host_ranges == 1);
  CHECK(hp.host_ns == 700000);
  CHECK(hp.bytes_dtoh == 4096);
  CHECK(hp.kernels == 0);
  CHECK(hp.gpu_span_ns == 3000);
  const auto& hd = row(rows, "lm_head", "decode");
  CHECK(hd.steps == 2);
  CHECK(hd.host_ranges == 2);
  CHECK(hd.host_ns == 2 * 650000);
  CHECK(hd.per_step(hd.host_ns) == Approx(650000));
  CHECK(hd.copies == 2);
  CHECK(hd.bytes_dtoh == 2 * 4096);
  CHECK(hd.copy_ns == 2 * 3000);
  CHECK(hd.bytes_pageable == 2 * 4096);

  const auto& ed = row(rows, "model.embed_tokens", "decode");
  CHECK(ed.kernels == 2);
  CHECK(ed.kernel_ns == 3000 + 3000);

  const auto& none = rows[8];
  CHECK(none.steps == 0);
  CHECK(none.copies == 1);
  CHECK(none.bytes_htod == 512);
  CHECK(none.runtime_calls == 1);
  CHECK(none.runtime_ns == 8000);

  // Every record lands in exactly one row.
  int64_t kernels = 0, copies = 0, calls = 0, hosts = 0;
  for (const auto& r : rows) {
    kernels += r.kernels;
    copies += r.copies;
    calls += r.runtime_calls;
    hosts += r.host_ranges;
  }
  CHECK(kernels == 15);
  CHECK(copies == 9);
  CHECK(calls == 26);
  CHECK(hosts == 3);
}

TEST_CASE("Chrome export: tracks per stream, flows paired, relative times, host ranges", "[unit][trace]") {
  const GpuTrace t = parse_gpu_trace(read_file(kFixture), kFixture);
  const std::string json = chrome_trace(t).json();
  const JsonValue v = parse_json(json, "chrome trace");  // valid JSON
  REQUIRE(v.kind == JsonValue::Kind::kObject);
  REQUIRE(v.keys.front() == "traceEvents");  // Perfetto stops at the first key it does not know
  const JsonValue* events = v.find("traceEvents");
  REQUIRE(events != nullptr);

  std::map<int, std::string> process;
  std::map<std::pair<int, int>, std::string> thread;
  for (const auto& e : events->items) {
    if (e.find("ph")->s != "M") continue;
    const int pid = static_cast<int>(e.find("pid")->i), tid = static_cast<int>(e.find("tid")->i);
    if (e.find("name")->s == "process_name") process[pid] = e.find("args")->find("name")->s;
    if (e.find("name")->s == "thread_name") thread[{pid, tid}] = e.find("args")->find("name")->s;
  }

  std::map<int64_t, int> flow_starts, flow_ends;
  std::map<std::string, int> per_cat;
  double min_ts = 1e300;
  for (const auto& e : events->items) {
    const std::string ph = e.find("ph")->s;
    if (ph == "M") continue;
    const double ts = num(*e.find("ts"));
    CHECK(ts >= 0);
    min_ts = std::min(min_ts, ts);
    const int pid = static_cast<int>(e.find("pid")->i), tid = static_cast<int>(e.find("tid")->i);
    REQUIRE(thread.count({pid, tid}) == 1);  // every event sits on a named track
    const std::string track = thread.at({pid, tid});
    if (ph == "s") {
      ++flow_starts[e.find("id")->i];
      CHECK(process.at(pid).rfind("host", 0) == 0);  // flows start at runtime calls on the host
      continue;
    }
    if (ph == "f") {
      ++flow_ends[e.find("id")->i];
      REQUIRE(e.find("bp") != nullptr);
      CHECK(e.find("bp")->s == "e");
      CHECK(process.at(pid).rfind("GPU 0", 0) == 0);
      continue;
    }
    REQUIRE(ph == "X");
    CHECK(num(*e.find("dur")) >= 0);
    const std::string cat = e.find("cat")->s;
    ++per_cat[cat];
    if (cat == "kernel" || cat == "memcpy" || cat == "memset") {
      CHECK(process.at(pid) == "GPU 0 (NVIDIA H200)");
      const std::string stream = e.find("args")->find("stream")->s;
      CHECK(track == std::string("stream ") + stream);  // on its own stream's track
    } else if (cat == "cuda_runtime" || cat == "cpu_module") {
      CHECK(process.at(pid).rfind("host", 0) == 0);
      CHECK(track == std::string("thread ") + std::to_string(kThread));
    } else if (cat == "module") {
      CHECK(process.at(pid) == "GPU 0 (NVIDIA H200)");
      CHECK(track == "modules");
    }
  }
  CHECK(min_ts == 0);  // relative to the earliest record
  CHECK(per_cat["kernel"] == 15);
  CHECK(per_cat["memcpy"] == 9);
  CHECK(per_cat["memset"] == 1);
  CHECK(per_cat["cuda_runtime"] == 26);
  CHECK(per_cat["cpu_module"] == 3);  // the CPU-backend ranges, on the host process
  CHECK(per_cat["module"] == 13);     // one span per push
  // Every GPU record has its launching call: 25 arrows, each start with exactly one finish.
  CHECK(flow_starts.size() == 25);
  CHECK(flow_starts == flow_ends);
  for (const auto& [id, n] : flow_starts) CHECK(n == 1);

  // The copy's name, rate and module arguments; the host process named by its pid.
  bool found_copy = false;
  for (const auto& e : events->items) {
    if (e.find("ph")->s != "X" || e.find("cat")->s != "memcpy") continue;
    const JsonValue* args = e.find("args");
    if (args->find("correlation")->s != "6") continue;
    found_copy = true;
    CHECK(e.find("name")->s == "HtoD 32.00 MiB pageable\u2192device");
    CHECK(args->find("bytes")->s == "33554432");
    CHECK(args->find("GB/s")->s == "16.00");
    CHECK(args->find("module")->s == "model.layers.1");
    CHECK(args->find("phase")->s == "prefill");
    CHECK(num(*e.find("ts")) == Approx(135.0));
    CHECK(num(*e.find("dur")) == Approx(2097.152));
  }
  CHECK(found_copy);
  CHECK(std::find_if(process.begin(), process.end(), [](const auto& p) { return p.second == "host (pid 41237)"; }) !=
        process.end());

  // Aggregates and provenance ride along in "otherData".
  const JsonValue* other = v.find("otherData");
  REQUIRE(other != nullptr);
  const JsonValue* dmap_block = other->find("dmap");
  REQUIRE(dmap_block != nullptr);
  CHECK(dmap_block->find("module_aggregates")->items.size() == module_aggregates(t).size());
  CHECK(dmap_block->find("provenance")->find("source")->s == "synthetic");
  CHECK(dmap_block->find("clock_origin_ns")->i == kBase);
}

TEST_CASE("Chrome export: records overlapping without nesting get a second track", "[unit][trace]") {
  GpuTrace t;
  t.externals[1] = {1, "model.layers.0", 0};
  t.externals[2] = {2, "model.layers.1", 0};
  t.correlation_to_external[1] = 1;
  t.correlation_to_external[2] = 2;
  auto kernel = [](uint32_t corr, uint32_t stream, int64_t start, int64_t end) {
    GpuActivity k;
    k.kind = ActivityKind::kKernel;
    k.name = std::string("k") + std::to_string(corr);
    k.correlation = corr;
    k.stream = stream;
    k.start_ns = start;
    k.end_ns = end;
    return k;
  };
  // Layer 0 on stream 1 [1000, 3000], layer 1 on stream 2 [2000, 4000]: the module spans cross.
  t.activities = {kernel(1, 1, 1000, 3000), kernel(2, 2, 2000, 4000)};
  const JsonValue v = parse_json(chrome_trace(t).json(), "chrome trace");
  std::map<std::pair<int64_t, int64_t>, std::string> thread;
  for (const auto& e : v.find("traceEvents")->items) {
    if (e.find("ph")->s == "M" && e.find("name")->s == "thread_name") {
      thread[{e.find("pid")->i, e.find("tid")->i}] = e.find("args")->find("name")->s;
    }
  }
  std::set<std::string> module_tracks;
  for (const auto& e : v.find("traceEvents")->items) {
    if (e.find("ph")->s == "X" && e.find("cat")->s == "module")
      module_tracks.insert(thread.at({e.find("pid")->i, e.find("tid")->i}));
  }
  CHECK(module_tracks == std::set<std::string>{"modules", "modules (2)"});
  CHECK(v.find("otherData") != nullptr);  // no runtime records, no flows: still a valid export
}

TEST_CASE("bad raw files are InputErrors naming the file, the line and what is wrong", "[unit][trace]") {
  const std::string good = read_file(kFixture);

  SECTION("malformed JSON: the line of the syntax error") {
    const std::string rec = "{\"kind\":\"memset\"";
    const int line = line_of(good, rec);
    expect_input_error(replace_once(good, rec, "{\"kind\" \"memset\""), line, "malformed JSON");
    expect_input_error("", 0, "malformed JSON");
    expect_input_error(good.substr(0, good.size() / 2), 0, "malformed JSON");
  }
  SECTION("a missing field") {
    const std::string rec = "\"correlation\":6,\"device\":0,\"context\":1,\"stream\":7,";
    expect_input_error(replace_once(good, rec, "\"correlation\":6,\"device\":0,\"context\":1,"), line_of(good, rec),
                       "missing field \"stream\"");
    expect_input_error(replace_once(good, "\"dropped_records\": 0,\n", ""), 0, "missing field \"dropped_records\"");
  }
  SECTION("a wrong type") {
    const std::string rec = "\"bytes\":512,";
    expect_input_error(replace_once(good, rec, "\"bytes\":\"512\","), line_of(good, rec),
                       "field \"bytes\" must be an integer, got a string");
    const std::string h = "{\"module\":\"lm_head\",\"step\":-1,";
    expect_input_error(replace_once(good, h, "{\"module\":\"lm_head\",\"step\":-1.5,"), line_of(good, h),
                       "field \"step\" must be an integer");
    expect_input_error("[1, 2]", 1, "one JSON object");
  }
  SECTION("end before start") {
    const std::string h = "\"start_ns\":1715000000006557456,\"end_ns\":1715000000007257456";
    expect_input_error(replace_once(good, h, "\"start_ns\":1715000000007257456,\"end_ns\":1715000000006557456"),
                       line_of(good, h), "end_ns 1715000000006557456 is before start_ns 1715000000007257456");
    CHECK_THROWS_WITH(
        parse_gpu_trace(replace_once(good, h, "\"start_ns\":1715000000007257456,\"end_ns\":1715000000006557456"), "x"),
        Catch::Contains("host_ranges[0]"));
  }
  SECTION("unknown kinds, fields, ids and versions") {
    const std::string rec = "{\"kind\":\"memset\"";
    expect_input_error(replace_once(good, rec, "{\"kind\":\"memzap\""), line_of(good, rec), "unknown kind \"memzap\"");
    const std::string ck = "\"copy_kind\":\"DtoH\"";
    expect_input_error(replace_once(good, ck, "\"copy_kind\":\"DeviceToHost\""), line_of(good, ck),
                       "field \"copy_kind\" is \"DeviceToHost\"");
    const std::string sk = "\"src_kind\":\"pinned\"";
    expect_input_error(replace_once(good, sk, "\"src_kind\":\"locked\""), line_of(good, sk), "expected one of");
    expect_input_error(replace_once(good, "[2, 1]", "[2, 99]"), line_of(good, "[2, 1]"),
                       "external id 99 is not in \"modules\"");
    expect_input_error(replace_once(good, "[3, 2]", "[2, 2]"), line_of(good, "[3, 2]"),
                       "correlation id 2 appears twice");
    expect_input_error(replace_once(good, "{\"id\":2,", "{\"id\":1,"), line_of(good, "{\"id\":2,"),
                       "external id 1 appears twice");
    expect_input_error(replace_once(good, "\"kind\":\"kernel\",", "\"kind\":\"kernel\",\"color\":\"red\","),
                       line_of(good, "\"kind\":\"kernel\","), "unknown field \"color\"");
    expect_input_error(replace_once(good, "\"version\": 1", "\"version\": 2"), 1, "unsupported version 2");
    expect_input_error(replace_once(good, "dmap-gpu-trace", "chrome-trace"), 1, "not a dmap GPU trace");
    expect_input_error(replace_once(good, "\"step\":-1}", "\"step\":-2}"), line_of(good, "\"step\":-1}"),
                       "outside [-1,");
    expect_input_error(replace_once(good, "\"dropped_records\": 0", "\"dropped_records\": -1"),
                       line_of(good, "\"dropped_records\""), "field \"dropped_records\" is -1, outside [0,");
  }
}

// ---- the emulated device's records ---------------------------------------------------------------

#include "exec/device/device_model.h"
#include "exec/device/emulated.h"
#include "trace/executor_trace.h"
#include "tests/exec/executor_fixtures.h"

TEST_CASE("a prefetch run on the emulated device exports as a GpuTrace, a raw file and a Chrome trace", "[trace]") {
  using namespace dmap::exec;
  using namespace dmap::exec::testing;
  Loaded l = load("llama_float32");
  const size_t L = static_cast<size_t>(l.cfg.layers);
  std::vector<Device> units(L + 3, Device::gpu(0));
  units[1] = Device::cpu();
  units[L + 1] = Device::gpu(1);
  auto rt = std::make_shared<EmulatedDevice>(EmulatedConfig{.devices = 2});
  DeviceModel m(rt, l.cfg, *l.w, placement(l.cfg, *l.w, units, Semantics::kPrefetch),
                {.batch = 1, .max_seq = 16, .threads = 1});
  rt->clear_timeline();
  run(m, kPrompt, 2);
  const dmap::trace::GpuTrace t = dmap::trace::emulated_trace(rt->timeline());
  REQUIRE(t.activities.size() == rt->timeline().size());
  // The raw file round-trips exactly.
  CHECK(dmap::trace::parse_gpu_trace(dmap::trace::gpu_trace_json(t), "emulated.gpu.json") == t);
  // Aggregates: layer 0's weights arrive by pinned HtoD copies in every phase (the next
  // forward's copy issued behind each forward counts in layer 0's row); no layer copies pageable
  // memory (token ids and logits do).
  const auto rows = dmap::trace::module_aggregates(t);
  bool layer0_prefill = false, layer0_decode = false;
  for (const auto& a : rows) {
    if (a.module.rfind("model.layers.", 0) == 0) CHECK(a.bytes_pageable == 0);
    if (a.module != "model.layers.0") continue;
    (a.phase == "prefill" ? layer0_prefill : layer0_decode) = a.bytes_htod > 0 && a.kernels > 0;
  }
  CHECK(layer0_prefill);
  CHECK(layer0_decode);
  // Chrome export: both emulated GPUs, their copy and compute streams, the peer copy to GPU 1.
  const std::string json = dmap::trace::chrome_trace(t).json();
  CHECK(json.find("emulated GPU 0") != std::string::npos);
  CHECK(json.find("emulated GPU 1") != std::string::npos);
  CHECK(json.find("HtoD") != std::string::npos);
  CHECK(json.find("PtoP") != std::string::npos);
  CHECK(json.find("gemm") != std::string::npos);
}
