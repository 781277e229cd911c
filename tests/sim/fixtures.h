// Shared fixtures of the simulator tests: a tiny Llama, round-number hardware, the cost model
// of one (graph, hardware, workload), scratch folders.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>

#include "core/model_spec.h"
#include "core/module_tree.h"
#include "core/yaml_io.h"
#include "sim/calibration.h"
#include "sim/cost_model.h"
#include "sim/graph.h"
#include "sim/hardware.h"

namespace dmap::sim::testing {

namespace fs = std::filesystem;

inline const std::string kConfigs = std::string(DMAP_SOURCE_DIR) + "/configs";
inline const std::string kHardwareDir = kConfigs + "/hardware";
constexpr Bytes kMiB = 1024LL * 1024;
constexpr Bytes kGiB = 1024LL * 1024 * 1024;

// A small Llama: hidden 256, MLP 512, 4 layers, 4 heads of 64, 2 KV heads, vocab 1000.
// Parameters per layer: q 256x256 + k 256x128 + v 256x128 + o 256x256 + gate/up/down 3x256x512
// + two norms 2x256 = 590,336. Whole model: embed 256,000 + 4 layers + norm 256 + lm_head
// 256,000 = 2,873,600 parameters = 5,747,200 bytes in float16.
inline constexpr const char* kTinyLlama = R"(model_type: llama
vocab_size: 1000
hidden_size: 256
intermediate_size: 512
num_hidden_layers: 4
num_attention_heads: 4
num_key_value_heads: 2
tie_word_embeddings: false
max_position_embeddings: 8192
)";
constexpr double kTinyLayerParams = 590336;
constexpr double kTinyParams = 2873600;
constexpr double kTinyBytes16 = kTinyParams * 2;

inline std::unique_ptr<ModuleTree> tiny_tree() {
  return std::make_unique<ModuleTree>(
      build_module_tree(model_spec_from_node(load_yaml_string(kTinyLlama, "tiny.yaml"), "tiny.yaml")));
}

inline std::unique_ptr<ModuleTree> preset_tree(const std::string& name) {
  return std::make_unique<ModuleTree>(build_module_tree(load_model_spec(kConfigs + "/models/" + name + ".yaml")));
}

inline Figure fig(double v) { return {v, Source::kDatasheet}; }

inline GpuSpec make_gpu(Bytes memory, double bandwidth, double flops, double launch_s, Bytes context) {
  GpuSpec g;
  g.id = "inline";
  g.name = "test GPU";
  g.memory = memory;
  g.memory_bandwidth = fig(bandwidth);
  g.peak_flops[DType::kFloat16] = fig(flops);
  g.peak_flops[DType::kBFloat16] = fig(flops);
  g.peak_flops[DType::kFloat32] = fig(flops / 2);
  g.launch_overhead = fig(launch_s);
  g.runtime_context = context;
  g.achievable_memory = 1.0;
  g.achievable_compute = 1.0;
  return g;
}

inline HostSpec make_host(Bytes ram, double bandwidth, double flops, double dispatch_s, double hook_s) {
  HostSpec h;
  h.id = "inline";
  h.name = "test host";
  h.cores = 8;
  h.memory_bandwidth = fig(bandwidth);
  h.ram = ram;
  h.reserved_ram = 0;
  h.peak_flops[DType::kFloat32] = fig(flops);
  h.peak_flops[DType::kFloat16] = fig(flops);
  h.peak_flops[DType::kBFloat16] = fig(flops);
  h.dispatch_overhead = fig(dispatch_s);
  h.offload_tensor_overhead = fig(hook_s);
  h.achievable_memory = 1.0;
  h.achievable_compute = 1.0;
  return h;
}

inline LinkSpec make_link(double pinned, double pageable, double latency_s) {
  LinkSpec l;
  l.id = "inline";
  l.name = "test link";
  l.h2d_pinned = l.d2h_pinned = fig(pinned);
  l.h2d_pageable = l.d2h_pageable = fig(pageable);
  l.copy_latency = fig(latency_s);
  return l;
}

inline DiskSpec make_disk(double bandwidth, double latency_s) {
  DiskSpec d;
  d.id = "inline";
  d.name = "test disk";
  d.read_bandwidth = fig(bandwidth);
  d.read_latency = fig(latency_s);
  return d;
}

// Round-number machine: GPU 100 GB/s, 10 TFLOP/s, 5 us launches; host 20 GB/s, 200 GFLOP/s,
// 10 us dispatch, 40 us hook; link 10 GB/s pinned / 5 GB/s pageable, 10 us; disk 2 GB/s, 100 us.
inline Hardware round_machine(Bytes gpu_memory, Bytes gpu_context = 1 * kMiB, Bytes ram = 64 * kGiB) {
  Hardware hw;
  hw.host = make_host(ram, 20e9, 2e11, 10e-6, 40e-6);
  hw.gpus.push_back(make_gpu(gpu_memory, 100e9, 1e13, 5e-6, gpu_context));
  hw.link = make_link(10e9, 5e9, 10e-6);
  hw.disk = make_disk(2e9, 100e-6);
  return hw;
}

// Rates and the cost model for one (graph, hardware, workload); not copyable (the cost model
// refers to the rates member).
struct Priced {
  Rates rates;
  CostModel cm;
  Priced(const ModelGraph& g, const Hardware& hw, const Workload& w)
      : rates(make_rates(hw, nullptr)), cm(g, rates, w) {}
  Priced(const ModelGraph& g, Rates r, const Workload& w) : rates(std::move(r)), cm(g, rates, w) {}
  Priced(const Priced&) = delete;
  Priced& operator=(const Priced&) = delete;
};

inline Workload workload(int64_t batch, int64_t prompt, int64_t new_tokens, DType dtype = DType::kFloat16) {
  Workload w;
  w.batch = batch;
  w.prompt = prompt;
  w.new_tokens = new_tokens;
  w.dtype = dtype;
  return w;
}

const Op& find_op(const ModelGraph& g, const std::string& node_name, OpKind kind) {
  for (const Op& op : g.ops) {
    if (op.kind == kind && g.tree->node(op.node).name == node_name) return op;
  }
  FAIL("no " << op_kind_name(kind) << " op on " << node_name);
  return g.ops.front();
}

inline bool rel_close(double a, double b, double rel) {
  return std::fabs(a - b) <= rel * std::max(std::fabs(a), std::fabs(b));
}

// A scratch folder for YAML files, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("dmap_sim_test_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    const fs::path p = path / name;
    std::ofstream(p) << text;
    return p.string();
  }
};

}  // namespace dmap::sim::testing
