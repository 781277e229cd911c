// Google Benchmark for the simulator (issue: "optimal search under 50 ms for an 80-layer model
// on 8 GPUs"; "dmap simulate on the default scenario finishes in well under a second").
//
//   optimal/llama2_70b/8gpu/<gpu>   optimal_search alone (cost tables + 3 DP runs) for
//                                   Llama-2-70B fp16 (83 placement units) on 8 GPUs of the preset
//                                   (t4: 8 x 16 GiB < 128 GiB of weights, offload needed;
//                                   a100_40gb: 8 x 40 GiB, everything fits), 32-core server host
//   optimal/128_layers/8gpu/ram_binds  a 128-layer Llama-2-70B-shaped model (fp16, 254 GiB) on 8 x
//                                   T4 (128 GiB) + 64 GiB of RAM: RAM binds, disk is needed
//   optimal/opt_30b/2x3090/32gb     the shipped hobbyist box (OPT-30B on 2 x 24 GB + 32 GB)
//   simulate/llama2_70b/auto_map    one simulate() of a fixed 80-layer map (offloaded), accelerate
//   evaluate/<scenario>             everything `dmap simulate SCENARIO` computes: load YAML,
//                                   plan every strategy, simulate every semantics, the DP, verdict
//
// Run: build/tests/bench/sim_bench or tests/bench/run_sim_bench.sh (quiet machine, medians).
#include <benchmark/benchmark.h>

#include <string>

#include <yaml-cpp/yaml.h>

#include "core/model_spec.h"
#include "sim/optimal.h"
#include "sim/recommend.h"
#include "sim/sim_scenario.h"
#include "strategies/plan.h"

namespace {

using namespace dmap;
using namespace dmap::sim;

const std::string kConfigs = std::string(DMAP_SOURCE_DIR) + "/configs";

Hardware eight_gpus(const std::string& gpu) {
  Hardware hw;
  hw.host = load_host("server_ddr4_8ch", kConfigs + "/hardware");
  for (int i = 0; i < 8; ++i) hw.gpus.push_back(load_gpu(gpu, kConfigs + "/hardware"));
  hw.link.name = "PCIe 4.0 x16";
  hw.link.h2d_pinned = hw.link.d2h_pinned = {25e9, Source::kDatasheet};
  hw.link.h2d_pageable = hw.link.d2h_pageable = {13e9, Source::kDatasheet};
  hw.link.copy_latency = {10e-6, Source::kDatasheet};
  hw.disk.read_bandwidth = {7e9, Source::kDatasheet};
  hw.disk.read_latency = {80e-6, Source::kDatasheet};
  return hw;
}

void BM_Optimal(benchmark::State& state, const std::string& gpu) {
  const ModuleTree tree = build_module_tree(load_model_spec(kConfigs + "/models/llama2_70b.yaml"));
  const ModelGraph graph = build_graph(tree, DType::kFloat16);
  const Hardware hw = eight_gpus(gpu);
  const Rates rates = make_rates(hw, nullptr);
  const Workload w{1, 512, 128, DType::kFloat16};
  const CostModel cm(graph, rates, w);
  OptimalResult r;
  for (auto _ : state) {
    r = optimal_search(cm, hw);
    benchmark::DoNotOptimize(r.objective_s);
  }
  state.counters["units"] = static_cast<double>(graph.chain.size());
  state.counters["gpu_layers"] = r.gpu_layers;
  state.counters["found"] = r.found;
}

void BM_OptimalRamBinds(benchmark::State& state) {
  YAML::Node cfg = YAML::LoadFile(kConfigs + "/models/llama2_70b.yaml");
  cfg["num_hidden_layers"] = 128;
  const ModuleTree tree = build_module_tree(model_spec_from_node(cfg, "llama_128_layers.yaml"));
  const ModelGraph graph = build_graph(tree, DType::kFloat16);
  Hardware hw = eight_gpus("t4");
  hw.host.ram = 64LL << 30;
  hw.host.reserved_ram = 4LL << 30;
  const Rates rates = make_rates(hw, nullptr);
  const CostModel cm(graph, rates, Workload{1, 512, 128, DType::kFloat16});
  OptimalResult r;
  for (auto _ : state) {
    r = optimal_search(cm, hw);
    benchmark::DoNotOptimize(r.objective_s);
  }
  state.counters["units"] = static_cast<double>(graph.chain.size());
  state.counters["found"] = r.found;
  state.counters["exact"] = r.exact;
  state.counters["labels"] = static_cast<double>(r.stats.labels);
}

void BM_OptimalScenario(benchmark::State& state, const std::string& scenario) {
  const SimScenario s = load_sim_scenario(kConfigs + "/scenarios/" + scenario + ".yaml", kConfigs);
  const ModuleTree tree = build_module_tree(s.base.model);
  const ModelGraph graph = build_graph(tree, s.workload.dtype);
  const Rates rates = make_rates(s.hardware, nullptr);
  const CostModel cm(graph, rates, s.workload);
  OptimalResult r;
  for (auto _ : state) {
    r = optimal_search(cm, s.hardware);
    benchmark::DoNotOptimize(r.objective_s);
  }
  state.counters["exact"] = r.exact;
  state.counters["labels"] = static_cast<double>(r.stats.labels);
}

void BM_Simulate(benchmark::State& state) {
  const ModuleTree tree = build_module_tree(load_model_spec(kConfigs + "/models/llama2_70b.yaml"));
  const ModelGraph graph = build_graph(tree, DType::kFloat16);
  Hardware hw = eight_gpus("a100_80gb");
  hw.gpus.resize(1);
  const Rates rates = make_rates(hw, nullptr);
  const CostModel cm(graph, rates, Workload{1, 512, 128, DType::kFloat16});
  DeviceMap dm;
  dm.assign("model.embed_tokens", Device::gpu(0));
  for (int i = 0; i < 80; ++i) dm.assign("model.layers." + std::to_string(i), i < 44 ? Device::gpu(0) : Device::cpu());
  dm.assign("model.norm", Device::cpu());
  dm.assign("model.rotary_emb", Device::cpu());
  dm.assign("lm_head", Device::cpu());
  for (auto _ : state) {
    Prediction p = simulate(cm, hw, dm, Semantics::kAccelerate);
    benchmark::DoNotOptimize(p.total_s);
  }
}

void BM_Evaluate(benchmark::State& state, const std::string& scenario) {
  const std::string file = kConfigs + "/scenarios/" + scenario + ".yaml";
  for (auto _ : state) {
    const SimScenario s = load_sim_scenario(file, kConfigs);
    const Evaluation ev = evaluate(s);
    benchmark::DoNotOptimize(ev.recommended);
  }
}

BENCHMARK_CAPTURE(BM_Optimal, llama2_70b/8gpu/t4, std::string("t4"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Optimal, llama2_70b/8gpu/a100_40gb, std::string("a100_40gb"))->Unit(benchmark::kMillisecond);
BENCHMARK(BM_OptimalRamBinds)->Name("optimal/128_layers/8gpu/ram_binds")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_OptimalScenario, opt_30b/2x3090/32gb, std::string("opt_30b_two_rtx3090_32gb"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_OptimalScenario, llama31_8b_fp16_rtx3060, std::string("llama31_8b_fp16_rtx3060"))->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Simulate)->Name("simulate/llama2_70b/auto_map")->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Evaluate, llama31_8b_fp16_rtx3060, std::string("llama31_8b_fp16_rtx3060"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Evaluate, llama2_70b_4x_a100_40gb, std::string("llama2_70b_4x_a100_40gb"))->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
