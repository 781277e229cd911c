// The GPU orchestration (exec/device/device_model.h) on the emulated device, in every CI run:
//   tokens: every family (the MoE ones too), and each semantics with cpu and disk layers on
//           one and two emulated GPUs, against the CPU executor;
//   copies: host-to-device bytes and copies per forward, as each semantics promises;
//   timeline: prefetch overlaps the next unit's copy with this unit's compute, accelerate never;
//   detector: deliberately broken orderings, and direct misuse of the runtime, are caught.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

#include <unistd.h>

#include "exec/device/device_model.h"
#include "exec/device/emulated.h"
#include "exec/run.h"
#include "tests/exec/executor_fixtures.h"

using namespace dmap;
using namespace dmap::exec;
using namespace dmap::exec::testing;
using Kind = TimelineRecord::Kind;

namespace {

std::shared_ptr<EmulatedDevice> emulated(int devices, EmulatedConfig c = {}) {
  c.devices = devices;
  c.threads = 2;
  return std::make_shared<EmulatedDevice>(c);
}

std::vector<Device> all_on(const ExecConfig& cfg, Device d) {
  return std::vector<Device>(static_cast<size_t>(cfg.layers) + 3, d);
}

// The offloaded tensors of a placement (stored off-GPU) and their bytes.
std::map<std::string, uint64_t> offloaded(const Placement& p, const ModelWeights& w) {
  std::map<std::string, uint64_t> out;
  for (const auto& [n, d] : p.tensor_home)
    if (!d.is_gpu()) out[n] = weight_bytes(w.get(n).w);
  return out;
}

bool overlaps(const TimelineRecord& a, const TimelineRecord& b) { return a.start_s < b.end_s && b.start_s < a.end_s; }

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("dmap_device_test_" + std::to_string(::getpid()));
  ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST_CASE("every family gives the CPU executor's tokens on one emulated GPU", "[device]") {
  for (const char* family : {"llama", "mistral", "qwen2", "gemma", "qwen3", "olmo2", "phi3", "gemma2", "gemma3_text",
                             "qwen3_moe", "mixtral"})
    for (const char* dtype : {"_float32", "_bfloat16"}) {
      const std::string name = std::string(family) + dtype;
      INFO(name);
      Loaded l = load(name);
      RunOptions opt{.batch = 1, .max_seq = 32, .threads = 2};
      CpuModel cpu(l.cfg, *l.w, opt);
      DeviceModel gpu(emulated(1), l.cfg, *l.w,
                      placement(l.cfg, *l.w, all_on(l.cfg, Device::gpu(0)), Semantics::kAccelerate), opt);
      const bool f32 = name.find("float32") != std::string::npos;
      compare(run(gpu, kPrompt, 6), run(cpu, kPrompt, 6), f32 ? 1e-5 : 2e-2);
      CHECK(gpu.h2d_weight_bytes() == 0);
      // Sparse layers: the device's expert counts are the CPU executor's.
      const ExpertCounts a = gpu.expert_counts(), b = cpu.expert_counts();
      CHECK(a.prefill_forwards == b.prefill_forwards);
      CHECK(a.decode_forwards == b.decode_forwards);
      CHECK(a.decode_rows == b.decode_rows);
      if (f32) {  // bfloat16 routing may break a near-tie the other way on other products
        CHECK(a.prefill_touched == b.prefill_touched);
        CHECK(a.decode_touched == b.decode_touched);
      }
      CHECK((a.decode_forwards > 0) == has_moe(l.cfg));
    }
  // Two sequences in a batch, and float16 weights.
  Loaded l = load("qwen2_bfloat16");
  RunOptions opt2{.batch = 2, .max_seq = 32, .threads = 2};
  CpuModel cpu2(l.cfg, *l.w, opt2);
  DeviceModel gpu2(emulated(1), l.cfg, *l.w,
                   placement(l.cfg, *l.w, all_on(l.cfg, Device::gpu(0)), Semantics::kPrefetch), opt2);
  compare(run(gpu2, kTwoPrompts, 4), run(cpu2, kTwoPrompts, 4), 2e-2);
  Loaded f = load("llama_float32");
  const ModelWeights w16 = ModelWeights::random(f.cfg, DType::kFloat16, 7);
  RunOptions opt{.batch = 1, .max_seq = 32, .threads = 2};
  CpuModel cpu16(f.cfg, w16, opt);
  DeviceModel gpu16(emulated(1), f.cfg, w16,
                    placement(f.cfg, w16, all_on(f.cfg, Device::gpu(0)), Semantics::kAccelerate), opt);
  compare(run(gpu16, kPrompt, 4), run(cpu16, kPrompt, 4), 5e-3);
}

TEST_CASE("accelerate, prefetch and in-place with cpu and disk layers, on one and two emulated GPUs", "[device]") {
  // untied and tied heads; q/k norms, fused projections, sandwich norms with soft-capping; sparse
  // MoE layers (qwen3_moe: a sparse and a dense layer; mixtral: all sparse)
  for (const char* name : {"llama_float32", "qwen2_bfloat16", "qwen3_float32", "phi3_bfloat16", "gemma2_float32",
                           "qwen3_moe_bfloat16", "mixtral_float32"}) {
    for (int gpus : {1, 2}) {
      INFO(name << " on " << gpus << " emulated GPU(s)");
      Loaded l = load(name);
      const size_t L = static_cast<size_t>(l.cfg.layers);
      REQUIRE(L >= 2);
      const bool f32 = std::string(name).find("float32") != std::string::npos;
      RunOptions opt{.batch = 2, .max_seq = 32, .threads = 2};
      CpuModel cpu_model(l.cfg, *l.w, opt);
      const Run want = run(cpu_model, kTwoPrompts, 4);
      // embed on GPU 0, layer 0 on cpu, the last layer on disk, the norm on the last GPU, the
      // head on cpu.
      std::vector<Device> units(L + 3, Device::gpu(0));
      units[1] = Device::cpu();
      units[L] = Device::disk();
      units[L + 1] = Device::gpu(gpus - 1);
      units[L + 2] = Device::cpu();
      TempDir off;
      std::vector<std::string> disk_tensors;
      for (const auto& n : l.w->names())
        if (n.rfind("model.layers." + std::to_string(L - 1) + ".", 0) == 0) disk_tensors.push_back(n);
      ModelWeights& w = *l.w;
      w.offload_to_disk(disk_tensors, off.path.string());
      const Placement base = placement(l.cfg, w, units, Semantics::kAccelerate);
      const auto streamed = offloaded(base, w);
      uint64_t offloaded_bytes = 0, layer0 = 0, disk_layer = 0, disk_norms = 0;
      for (const auto& [n, b] : streamed) {
        offloaded_bytes += b;
        if (n.rfind("model.layers.0.", 0) == 0) layer0 += b;
        if (base.tensor_home.at(n).kind != Device::Kind::kDisk) continue;
        disk_layer += b;
        if (n.size() > 11 && n.compare(n.size() - 11, 11, "norm.weight") == 0) disk_norms += b;
      }
      for (Semantics s : {Semantics::kAccelerate, Semantics::kPrefetch, Semantics::kInPlace}) {
        INFO(semantics_name(s));
        Placement p = base;
        p.semantics = s;
        auto rt = emulated(gpus);
        DeviceModel m(rt, l.cfg, w, p, opt);
        rt->clear_timeline();  // set-up's uploads
        const Run got = run(m, kTwoPrompts, 4);
        compare(got, want, f32 ? 1e-5 : 2e-2);
        const uint64_t forwards = got.logits.size();
        // Weight copies host -> device, per tensor.
        std::map<std::string, int> copies;
        uint64_t weight_bytes_copied = 0;
        bool all_pinned = true, none_pinned = true;
        for (const auto& r : rt->timeline()) {
          if (r.kind != Kind::kH2D || !streamed.count(r.what)) continue;
          ++copies[r.what];
          weight_bytes_copied += r.bytes;
          all_pinned &= r.pinned;
          none_pinned &= !r.pinned;
        }
        CHECK(weight_bytes_copied == m.h2d_weight_bytes());
        if (s == Semantics::kAccelerate) {
          // Every offloaded tensor once per forward, each in its own copy, from pageable memory.
          CHECK(m.h2d_weight_bytes() == forwards * offloaded_bytes);
          for (const auto& [n, b] : streamed) CHECK(copies[n] == static_cast<int>(forwards));
          CHECK(none_pinned);
        }
        if (s == Semantics::kPrefetch) {
          // Per unit from pinned memory; the next forward's first streamed unit (layer 0) is
          // copied behind each forward.
          CHECK(m.h2d_weight_bytes() == forwards * offloaded_bytes + layer0);
          CHECK(all_pinned);
        }
        if (s == Semantics::kInPlace) {
          CHECK(m.h2d_weight_bytes() == 0);
          CHECK(m.execution_device(1) == -1);
        } else {
          CHECK(m.execution_device(1) == 0);
        }
        CHECK(m.execution_device(L + 1) == gpus - 1);
        // The CPU backend (in-place) converts norm gains to float32 once, so reads only the
        // disk layer's matrices (and biases) per forward.
        CHECK(m.disk_bytes_read() == forwards * (s == Semantics::kInPlace ? disk_layer - disk_norms : disk_layer));
        // Activations cross between the GPUs by peer copies exactly when there are two.
        const bool peer = std::any_of(rt->timeline().begin(), rt->timeline().end(),
                                      [](const TimelineRecord& r) { return r.kind == Kind::kPeer; });
        CHECK(peer == (gpus == 2 && s != Semantics::kInPlace));
        for (const auto& t : m.module_times()) CHECK(t.prefill_s > 0);
      }
    }
  }
}

namespace {

// A 6-layer model (the llama fixture's shapes, random weights) with every layer offloaded to
// the CPU and the rest on GPU 0; slow kernels and a slow link, so that compute and copies both
// take visible model time.
struct Streamed {
  ExecConfig cfg;
  ModelWeights w;
  Placement p;
  static Streamed make(Semantics s) {
    ExecConfig cfg = load("llama_float32").cfg;
    cfg.layers = 6;
    ModelWeights w = ModelWeights::random(cfg, DType::kFloat32, 11);
    std::vector<Device> units = all_on(cfg, Device::gpu(0));
    for (size_t u = 1; u <= 6; ++u) units[u] = Device::cpu();
    Placement p = placement(cfg, w, units, s);
    return {cfg, std::move(w), std::move(p)};
  }
};

EmulatedConfig slow() {
  EmulatedConfig c;
  c.flops = 2e8;
  c.memory_GBps = 5;
  c.h2d_pinned_GBps = 0.2;
  c.h2d_pageable_GBps = 0.1;
  return c;
}

}  // namespace

TEST_CASE("prefetch's timeline overlaps the next unit's copy with this unit's compute; accelerate's never",
          "[device]") {
  RunOptions opt{.batch = 1, .max_seq = 32, .threads = 2};
  double decode_ms[2] = {0, 0};
  for (Semantics s : {Semantics::kPrefetch, Semantics::kAccelerate}) {
    INFO(semantics_name(s));
    Streamed m = Streamed::make(s);
    auto rt = emulated(1, slow());
    DeviceModel model(rt, m.cfg, m.w, m.p, opt);
    rt->clear_timeline();
    const Run r = run(model, kPrompt, 3);
    REQUIRE(r.tokens.size() == 4);
    const auto& tl = rt->timeline();
    // Per (step, layer): the kernels' span and the weight copies' span.
    struct Span {
      double k0 = 1e30, k1 = -1, c0 = 1e30, c1 = -1;
    };
    std::map<std::pair<int, std::string>, Span> spans;
    for (const auto& e : tl) {
      if (e.module.rfind("model.layers.", 0) != 0) continue;
      if (e.kind == Kind::kKernel) {
        Span& sp = spans[{e.step, e.module}];
        sp.k0 = std::min(sp.k0, e.start_s);
        sp.k1 = std::max(sp.k1, e.end_s);
      }
      if (e.kind == Kind::kH2D) {
        // The layer a weight copy belongs to, from the tensor it copies.
        const std::string layer = e.what.substr(0, e.what.find('.', std::string("model.layers.").size()));
        Span& sp = spans[{e.step, layer}];
        sp.c0 = std::min(sp.c0, e.start_s);
        sp.c1 = std::max(sp.c1, e.end_s);
      }
    }
    int overlapping = 0, pairs = 0;
    for (int step = -1; step < 3; ++step)
      for (int l = 0; l + 1 < 6; ++l) {
        const Span& cur = spans[{step, "model.layers." + std::to_string(l)}];
        const Span& next = spans[{step, "model.layers." + std::to_string(l + 1)}];
        REQUIRE(cur.k1 > 0);
        REQUIRE(next.c1 > 0);
        ++pairs;
        if (next.c0 < cur.k1 && cur.k0 < next.c1) ++overlapping;
      }
    if (s == Semantics::kPrefetch) {
      CHECK(overlapping == pairs);
    } else {
      CHECK(overlapping == 0);
      // No copy overlaps any kernel: accelerate's copies block the compute stream.
      for (const auto& c : tl)
        if (c.kind == Kind::kH2D)
          for (const auto& k : tl)
            if (k.kind == Kind::kKernel && k.device == c.device) CHECK_FALSE(overlaps(c, k));
    }
    double decode = 0;
    for (const auto& t : model.module_times())
      for (double d : t.decode_s) decode += d;
    decode_ms[s == Semantics::kPrefetch ? 0 : 1] = decode * 1e3;
  }
  // On the model clock, hiding the copies behind compute makes prefetch's decode faster.
  CHECK(decode_ms[0] < decode_ms[1]);
}

TEST_CASE("the emulated device catches broken stream orderings in the orchestration", "[device]") {
  RunOptions opt{.batch = 1, .max_seq = 32, .threads = 2};
  for (DeviceModel::Fault f : {DeviceModel::Fault::kNoCopyWait, DeviceModel::Fault::kNoSlotWait}) {
    Streamed m = Streamed::make(Semantics::kPrefetch);
    auto rt = emulated(1, slow());
    DeviceModel model(rt, m.cfg, m.w, m.p, opt);
    model.set_fault(f);
    try {
      run(model, kPrompt, 2);
      FAIL("a broken ordering ran without an error");
    } catch (const StreamOrderError& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find("stream order violated") != std::string::npos);
      CHECK(msg.find("prefetch buffer") != std::string::npos);  // the buffer
      CHECK(msg.find("'model.layers.") != std::string::npos);   // the tensor a copy carried
      CHECK(msg.find("cuda:0 copy") != std::string::npos);      // the streams
      CHECK(msg.find("cuda:0 compute") != std::string::npos);
      CHECK(msg.find("(prefill)") != std::string::npos);  // the step
      // A kernel reads the slot before its copy is ordered; or a copy overwrites a slot a kernel reads.
      if (f == DeviceModel::Fault::kNoCopyWait)
        CHECK(msg.find("on stream 'cuda:0 compute' at model.layers.0 (prefill) reads") != std::string::npos);
      if (f == DeviceModel::Fault::kNoSlotWait) CHECK(msg.find("copy_h2d of 'model.layers.") != std::string::npos);
    }
  }
  // The same placement without a fault runs clean (the detector does not cry wolf).
  Streamed m = Streamed::make(Semantics::kPrefetch);
  DeviceModel model(emulated(1, slow()), m.cfg, m.w, m.p, opt);
  CHECK_NOTHROW(run(model, kPrompt, 2));
}

TEST_CASE("the emulated runtime's ordering rules, call by call", "[device]") {
  EmulatedDevice rt(EmulatedConfig{.devices = 2});
  const int a = rt.create_stream(0, "a"), b = rt.create_stream(0, "b"), other = rt.create_stream(1, "c");
  const int e = rt.create_event(0, false);
  std::vector<float> host(64, 1.0f), back(64, 0.0f);
  void* buf = rt.alloc_device(0, 256, "weights");
  void* out = rt.alloc_device(0, 256, "output");
  float* pinned = static_cast<float*>(rt.alloc_pinned(256, "staging"));

  SECTION("a read ordered by an event is fine; without the wait it throws") {
    rt.copy_h2d(buf, host.data(), 256, a, "w");
    rt.record(e, a);
    rt.wait(b, e);
    CHECK_NOTHROW(rt.copy_d2d(out, buf, 256, b, "o"));
    // Writing buf again on `a` while `b`'s read of it is not ordered before: a write after read.
    CHECK_THROWS_WITH(rt.copy_h2d(buf, host.data(), 256, a, "w2"), Catch::Contains("reads with no event wait"));
    void* fresh = rt.alloc_device(0, 256, "fresh");
    rt.copy_h2d(fresh, host.data(), 256, a, "w3");
    CHECK_THROWS_WITH(rt.copy_d2d(out, fresh, 256, b, "o"), Catch::Contains("copy_h2d of 'w3' on stream 'cuda:0 a'") &&
                                                                Catch::Contains("writes with no event wait"));
    rt.device_sync(0);
    rt.free_device(fresh);
  }
  SECTION("a host write to pinned memory that a queued copy still reads") {
    rt.copy_h2d(buf, pinned, 256, a, "w");
    CHECK_THROWS_AS(rt.host_access(pinned, 256, true, "refill"), StreamOrderError);
  }
  SECTION("after a stream sync the host may refill it") {
    rt.copy_h2d(buf, pinned, 256, a, "w");
    rt.stream_sync(a);
    CHECK_NOTHROW(rt.host_access(pinned, 256, true, "refill"));
  }
  SECTION("freeing a buffer queued work still reads") {
    rt.copy_d2h(back.data(), buf, 256, a, "read back");
    CHECK_THROWS_WITH(rt.free_device(buf), Catch::Contains("free of 'weights'"));
    rt.stream_sync(a);
  }
  SECTION("use after free, and memory of another device") {
    void* gone = rt.alloc_device(0, 64, "gone");
    rt.free_device(gone);
    CHECK_THROWS_WITH(rt.copy_h2d(gone, host.data(), 64, a, "late"), Catch::Contains("not memory allocated on cuda:0"));
    CHECK_THROWS_WITH(rt.copy_h2d(buf, host.data(), 64, other, "wrong"), Catch::Contains("lives on cuda:0"));
  }
  SECTION("out of memory names the allocation and the bytes") {
    EmulatedDevice small(EmulatedConfig{.devices = 1, .memory_bytes = 1000});
    void* p = small.alloc_device(0, 600, "first");
    CHECK_THROWS_WITH(small.alloc_device(0, 600, "KV cache of model.layers.3"),
                      Catch::Contains("KV cache of model.layers.3 asked for") && Catch::Contains("(600 bytes)"));
    small.free_device(p);
    CHECK(small.peak_device_bytes(0) == 600);
  }
  SECTION("events carry the model clock") {
    // 1 MB pinned at 25 GB/s: 2 us latency + 40 us; the copy starts one launch after t0.
    const int t0 = rt.create_event(0, true), t1 = rt.create_event(0, true);
    void* big = rt.alloc_device(0, 1000000, "big");
    void* src = rt.alloc_pinned(1000000, "big staging");
    rt.record(t0, a);
    rt.copy_h2d(big, src, 1000000, a, "w");
    rt.record(t1, a);
    CHECK_THROWS_AS(rt.elapsed_ms(t0, t1), StreamOrderError);  // not complete yet
    rt.event_sync(t1);
    CHECK(rt.elapsed_ms(t0, t1) == Approx((5e-6 + 2e-6 + 40e-6) * 1e3));
    CHECK(rt.timeline().back().pinned);
    rt.free_device(big);
    rt.free_pinned(src);
  }
  rt.device_sync(0);
  rt.device_sync(1);
  rt.free_device(buf);
  rt.free_device(out);
  rt.free_pinned(pinned);
}

TEST_CASE("an emulated GPU too small for the placement reports out of memory, not a crash", "[device]") {
  Loaded l = load("llama_float32");
  RunOptions opt{.batch = 1, .max_seq = 32, .threads = 2};
  EmulatedConfig c;
  c.memory_bytes = 100 * 1024;
  const Placement p = placement(l.cfg, *l.w, all_on(l.cfg, Device::gpu(0)), Semantics::kAccelerate);
  CHECK_THROWS_AS(DeviceModel(emulated(1, c), l.cfg, *l.w, p, opt), OutOfDeviceMemory);
  CHECK_THROWS_WITH(DeviceModel(emulated(1, c), l.cfg, *l.w, p, opt), Catch::Contains("cuda:0 is out of memory"));
}

TEST_CASE("run_placement: the shared run loop of dmap run and the profiler", "[device]") {
  Loaded l = load("llama_float32");
  RunOptions opt{.batch = 1, .max_seq = 32, .threads = 2};
  CpuModel cpu(l.cfg, *l.w, opt);
  const Run want = run(cpu, kPrompt, 4);
  std::vector<Device> units = all_on(l.cfg, Device::gpu(0));
  units[1] = Device::cpu();
  const Placement p = placement(l.cfg, *l.w, units, Semantics::kPrefetch);
  struct Counter : ModuleObserver {
    int begins = 0, ends = 0;
    void begin(const std::string&, int) override { ++begins; }
    void end() override { ++ends; }
    void host_range(const std::string&, int, std::chrono::steady_clock::time_point,
                    std::chrono::steady_clock::time_point) override {}
  } counter;
  int before = 0, after = 0;
  RunPlan plan;
  plan.ids = kPrompt;
  plan.prompt_len = static_cast<int64_t>(kPrompt.size());
  plan.new_tokens = 5;
  plan.prefill_reps = 3;
  plan.observer = &counter;
  plan.before_run = [&] { ++before; };
  plan.after_prefill = [&] { ++after; };
  for (Backend b : {Backend::kCpu, Backend::kEmulated}) {
    INFO(backend_name(b));
    const RunOutcome r = run_placement(l.cfg, *l.w, p, b, opt, plan);
    REQUIRE(r.result.tokens.size() == 1);
    std::vector<int32_t> first(want.tokens.begin(), want.tokens.begin() + 5);
    CHECK(r.result.tokens[0] == first);
    CHECK(r.result.decode_s.size() == 4);
    CHECK(r.result.prefill_s > 0);
    CHECK(r.executor->module_times().front().decode_s.size() == 4);
  }
  CHECK(before == 2);
  CHECK(after == 2);
  // The emulated run told the observer about each GPU module (the CPU executor reports none).
  CHECK(counter.begins > 0);
  CHECK(counter.begins == counter.ends);
  // Step timing (the calibration's page cache by tensor): the CPU executor times every layer
  // weight's steps in decode, the same tokens come out; the other executors time none.
  plan.time_steps = true;
  plan.observer = nullptr;
  const RunOutcome timed = run_placement(l.cfg, *l.w, p, Backend::kCpu, opt, plan);
  CHECK(timed.result.tokens[0] == std::vector<int32_t>(want.tokens.begin(), want.tokens.begin() + 5));
  for (const auto& [name, shape] : ModelWeights::expected(l.cfg)) {
    if (name.rfind("model.layers.", 0) != 0) continue;
    INFO(name);
    const auto it = timed.decode_weight_s.find(name);
    REQUIRE(it != timed.decode_weight_s.end());
    CHECK(it->second > 0);
    // No more than a decode step takes (the times are per decode step, prefill excluded).
    CHECK(it->second < *std::max_element(timed.result.decode_s.begin(), timed.result.decode_s.end()));
  }
  CHECK(run_placement(l.cfg, *l.w, p, Backend::kEmulated, opt, plan).decode_weight_s.empty());
}
