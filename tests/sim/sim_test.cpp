// Unit tests of the simulator library: the cost formulas against hand-derived numbers, the
// execution semantics, OOM reporting, the optimal DP against brute force, monotonicity in
// GPU memory, the verdict, calibration and scenario input errors.
//
// Hardware is written inline with round numbers (achievable fractions 1.0, so achieved rates
// equal the datasheet ones) unless a test is about the presets.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/device_map.h"
#include "core/error.h"
#include "core/model_spec.h"
#include "core/module_tree.h"
#include "core/yaml_io.h"
#include "sim/calibration.h"
#include "sim/cost_model.h"
#include "sim/graph.h"
#include "sim/hardware.h"
#include "sim/optimal.h"
#include "sim/recommend.h"
#include "sim/render.h"
#include "sim/sim_scenario.h"
#include "sim/simulate.h"
#include "strategies/plan.h"

#include "tests/sim/fixtures.h"

using namespace dmap;
using namespace dmap::sim;
using namespace dmap::sim::testing;

// ---------------------------------------------------------------------------------------------
// 1. Cost formulas
// ---------------------------------------------------------------------------------------------

TEST_CASE("sliding-window KV caches: the prompt after prefill, the window in decode", "[unit][sim]") {
  const auto tree = std::make_unique<ModuleTree>(build_module_tree(
      model_spec_from_node(load_yaml_string(std::string(kTinyLlama) + "sliding_window: 64\n", "m.yaml"), "m.yaml")));
  CHECK(tree->dims.layer_window.empty() == false);  // llama: no sliding window in transformers
  CHECK(tree->dims.layer_window[0] == 0);
  std::string mistral = kTinyLlama;
  mistral.replace(mistral.find("llama"), 5, "mistral");
  const auto mt = std::make_unique<ModuleTree>(
      build_module_tree(model_spec_from_node(load_yaml_string(mistral + "sliding_window: 64\n", "m.yaml"), "m.yaml")));
  const ModelGraph g = build_graph(*mt, DType::kFloat16);
  const Op& att = find_op(g, "model.layers.0.self_attn", OpKind::kAttention);
  CHECK(att.window == 64);
  CHECK(g.kv_tokens(att, 500, true) == 500);
  CHECK(g.kv_tokens(att, 500, false) == 64);
  CHECK(g.kv_tokens(att, 30, false) == 30);
}

TEST_CASE("the tiny llama has the expected placement chain and weight bytes", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  std::vector<std::string> names;
  for (const ChainUnit& u : g.chain) names.push_back(tree->node(u.node).name);
  CHECK(names == std::vector<std::string>{"model.embed_tokens", "model.layers.0", "model.layers.1", "model.layers.2",
                                          "model.layers.3", "model.norm", "model.rotary_emb", "lm_head"});
  CHECK(g.weight_bytes_total() == static_cast<Bytes>(kTinyBytes16));
  CHECK(g.kv_bytes_per_token(1) == 2 * 2 * 64 * 2);  // K and V x 2 KV heads x 64 x 2 bytes
  CHECK(g.kv_bytes_per_token(3) == 3 * 512);
  int layers = 0;
  for (const ChainUnit& u : g.chain) layers += u.is_layer ? 1 : 0;
  CHECK(layers == 4);
  // float32 doubles every byte.
  CHECK(build_graph(*tree, DType::kFloat32).weight_bytes_total() == static_cast<Bytes>(kTinyParams * 4));
}

TEST_CASE("matmul cost: hand-derived FLOPs, bytes and roofline time", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Hardware hw = round_machine(1 * kGiB);
  const Priced p(g, hw, workload(1, 512, 8));
  const Op& gate = find_op(g, "model.layers.0.mlp.gate_proj", OpKind::kMatmul);
  REQUIRE(gate.in == 256);
  REQUIRE(gate.out == 512);
  REQUIRE_FALSE(gate.bias);
  REQUIRE(gate.kernels == 1);

  // Decode, batch 1: M = 1.
  double flops = 0, bytes = 0;
  p.cm.op_work(gate, Phase::decode_at(600), flops, bytes);
  const double K = 256, N = 512;
  CHECK(flops == 2 * K * N);                // 262,144
  CHECK(bytes == K * N * 2 + (K + N) * 2);  // 263,680
  const OpTime t = p.cm.op(gate, ExecDevice::on_gpu(0), Phase::decode_at(600));
  CHECK(t.compute_s == Approx(262144 / 1e13).epsilon(1e-12));
  CHECK(t.memory_s == Approx(263680 / 100e9).epsilon(1e-12));
  CHECK_FALSE(t.compute_bound());
  CHECK(t.time() == Approx(263680 / 100e9 + 5e-6).epsilon(1e-12));
  // The same op on the CPU: 20 GB/s, 200 GFLOP/s, 10 us dispatch.
  const OpTime c = p.cm.op(gate, ExecDevice::cpu(), Phase::decode_at(600));
  CHECK(c.time() == Approx(std::max(262144 / 2e11, 263680 / 20e9) + 10e-6).epsilon(1e-12));

  // Prefill of 512 tokens: M = 512, compute bound on the GPU.
  p.cm.op_work(gate, Phase::prefill_of(512), flops, bytes);
  CHECK(flops == 2 * 512 * K * N);
  CHECK(bytes == K * N * 2 + 512 * (K + N) * 2);
  const OpTime tp = p.cm.op(gate, ExecDevice::on_gpu(0), Phase::prefill_of(512));
  CHECK(tp.compute_bound());
  CHECK(tp.time() == Approx(2 * 512 * K * N / 1e13 + 5e-6).epsilon(1e-12));

  // Batch 4 decode: M = 4.
  const Priced p4(g, hw, workload(4, 512, 8));
  p4.cm.op_work(gate, Phase::decode_at(600), flops, bytes);
  CHECK(flops == 2 * 4 * K * N);
  CHECK(bytes == K * N * 2 + 4 * (K + N) * 2);
}

TEST_CASE("matmul with bias adds N elements of weight traffic", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Priced p(g, round_machine(1 * kGiB), workload(1, 16, 4));
  Op op = find_op(g, "model.layers.0.mlp.gate_proj", OpKind::kMatmul);
  op.bias = true;
  double flops = 0, bytes = 0;
  p.cm.op_work(op, Phase::decode_at(20), flops, bytes);
  CHECK(bytes == 256.0 * 512 * 2 + 512 * 2 + (256 + 512) * 2);
}

TEST_CASE("attention cost in decode grows with the context as derived by hand", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  REQUIRE(g.heads == 4);
  REQUIRE(g.kv_heads == 2);
  REQUIRE(g.head_dim == 64);
  const Priced p(g, round_machine(1 * kGiB), workload(1, 512, 8));
  const Op& att = find_op(g, "model.layers.0.self_attn", OpKind::kAttention);
  for (int64_t c : {1, 100, 600, 4000}) {
    double flops = 0, bytes = 0;
    p.cm.op_work(att, Phase::decode_at(c), flops, bytes);
    // 4 FLOPs per (head, dim, key): 4 x 1 x 4 x 64 x c.
    CHECK(flops == 1024.0 * static_cast<double>(c));
    // q in + out: 2 x 4 x 64 x 2 = 1024; K and V read: 2 x 2 x 64 x 2 x c = 512c;
    // K and V written: 512; rotary on q and k: 2 x (4 + 2) x 64 x 2 = 1536.
    CHECK(bytes == 1024 + 512.0 * static_cast<double>(c) + 512 + 1536);
    const OpTime t = p.cm.op(att, ExecDevice::on_gpu(0), Phase::decode_at(c));
    CHECK(t.time() == Approx(std::max(flops / 1e13, bytes / 100e9) + att.kernels * 5e-6).epsilon(1e-12));
  }
  // Batch 2 doubles both.
  const Priced p2(g, round_machine(1 * kGiB), workload(2, 512, 8));
  double flops = 0, bytes = 0;
  p2.cm.op_work(att, Phase::decode_at(600), flops, bytes);
  CHECK(flops == 2 * 1024.0 * 600);
  CHECK(bytes == 2 * (1024 + 512.0 * 600 + 512 + 1536));
  // Causal prefill of P = 8: P(P+1)/2 = 36 (query, key) pairs per head.
  const Priced pp(g, round_machine(1 * kGiB), workload(1, 8, 2));
  pp.cm.op_work(att, Phase::prefill_of(8), flops, bytes);
  CHECK(flops == 4.0 * 4 * 64 * 36);
  CHECK(bytes == 8 * 1024 + 8 * 512 + 8 * 512 + 8 * 1536);
}

TEST_CASE("prefill runs the LM head on the last position only", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Hardware hw = round_machine(1 * kGiB);
  Rates rates = make_rates(hw, nullptr);
  // A GPU rate that depends on M: 1 TFLOP/s at M = 1 up to 100 TFLOP/s at M = 512.
  rates.gpus[0].flops[DType::kFloat16] = RateCurve{{{1.0, 1e12}, {512.0, 1e14}}, Source::kCalibrated};
  const Priced p(g, std::move(rates), workload(3, 512, 8));
  const Op& head = find_op(g, "lm_head", OpKind::kMatmul);
  REQUIRE(head.head);
  REQUIRE(head.in == 256);
  REQUIRE(head.out == 1000);
  double flops = 0, bytes = 0;
  p.cm.op_work(head, Phase::prefill_of(512), flops, bytes);
  CHECK(flops == 2.0 * 3 * 256 * 1000);  // M = batch = 3, not 3 x 512
  CHECK(bytes == 256.0 * 1000 * 2 + 3 * (256 + 1000) * 2);
  // Its rate is the one at M = batch.
  const OpTime th = p.cm.op(head, ExecDevice::on_gpu(0), Phase::prefill_of(512));
  const double rate3 = 1e12 + (std::log(3.0) / std::log(512.0)) * (1e14 - 1e12);
  CHECK(th.compute_s == Approx(flops / rate3).epsilon(1e-9));
  // A body matmul in prefill has M = 3 x 512 (beyond the last point: clamped at 100 TFLOP/s).
  const Op& q = find_op(g, "model.layers.0.self_attn.q_proj", OpKind::kMatmul);
  REQUIRE_FALSE(q.head);
  p.cm.op_work(q, Phase::prefill_of(512), flops, bytes);
  CHECK(flops == 2.0 * 3 * 512 * 256 * 256);
  const OpTime tq = p.cm.op(q, ExecDevice::on_gpu(0), Phase::prefill_of(512));
  CHECK(tq.compute_s == Approx(flops / 1e14).epsilon(1e-9));
  // In decode the head runs every position of the step (M = batch).
  p.cm.op_work(head, Phase::decode_at(600), flops, bytes);
  CHECK(flops == 2.0 * 3 * 256 * 1000);
}

TEST_CASE("copies and disk reads: bytes / bandwidth + latency", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Priced p(g, round_machine(1 * kGiB), workload(2, 16, 4));
  CHECK(p.cm.h2d(1e6, true) == Approx(1e6 / 10e9 + 10e-6).epsilon(1e-12));
  CHECK(p.cm.h2d(1e6, false) == Approx(1e6 / 5e9 + 10e-6).epsilon(1e-12));
  CHECK(p.cm.d2h(3e6, false) == Approx(3e6 / 5e9 + 10e-6).epsilon(1e-12));
  CHECK(p.cm.h2d(0, false) == Approx(10e-6).epsilon(1e-12));
  // Cold: the disk at 2 GB/s + 100 us; warm: the page cache at half the host bandwidth, no latency.
  CHECK(p.cm.disk_read(4e6, false) == Approx(4e6 / 2e9 + 100e-6).epsilon(1e-12));
  CHECK(p.cm.disk_read(4e6, true) == Approx(4e6 / 10e9).epsilon(1e-12));
  CHECK(p.cm.disk_read(4e6, true) < p.cm.disk_read(4e6, false));
  // Activations of one step: batch x tokens x hidden x 2 bytes.
  CHECK(p.cm.activation_bytes(Phase::decode_at(17)) == 2.0 * 256 * 2);
  CHECK(p.cm.activation_bytes(Phase::prefill_of(16)) == 2.0 * 16 * 256 * 2);
  CHECK(p.cm.activation_copy(ExecDevice::cpu(), ExecDevice::on_gpu(0), Phase::decode_at(17)) ==
        Approx(1024 / 5e9 + 10e-6).epsilon(1e-12));
  CHECK(p.cm.activation_copy(ExecDevice::on_gpu(0), ExecDevice::on_gpu(0), Phase::decode_at(17)) == 0);
  // Workspace: M x (3 hidden + (H + 2 KV) head_dim + 3 inter) x 2 bytes = M x 2816 x 2.
  CHECK(p.cm.workspace_bytes(Phase::decode_at(17)) == 2 * 2816 * 2);
  CHECK(p.cm.workspace_bytes(Phase::prefill_of(16)) == 2 * 16 * 2816 * 2);
  CHECK(p.cm.logits_bytes() == 2 * 1000 * 4);
  // stream_tensor: accelerate pays the pageable copy plus the hook; prefetch the pinned copy.
  const StreamCost acc = stream_tensor(p.cm, 1e6, false, false, ExecDevice::on_gpu(0), Semantics::kAccelerate);
  CHECK(acc.total() == Approx(1e6 / 5e9 + 10e-6 + 40e-6).epsilon(1e-12));
  const StreamCost pre = stream_tensor(p.cm, 1e6, true, false, ExecDevice::on_gpu(0), Semantics::kPrefetch);
  CHECK(pre.total() == Approx(1e6 / 10e9 + 10e-6 + 1e6 / 2e9 + 100e-6).epsilon(1e-12));
  const StreamCost inplace = stream_tensor(p.cm, 1e6, true, true, ExecDevice::cpu(), Semantics::kInPlace);
  CHECK(inplace.total() == Approx(1e6 / 10e9).epsilon(1e-12));
}

TEST_CASE("decode samples cover every decode step", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Hardware hw = round_machine(1 * kGiB);
  {
    const Priced p(g, hw, workload(1, 32, 4));
    const auto& s = p.cm.decode_samples();
    REQUIRE(s.size() == 3);
    for (int k = 0; k < 3; ++k) {
      CHECK(s[k].context == 33 + k);
      CHECK(s[k].steps == 1.0);
    }
  }
  {
    const Priced p(g, hw, workload(1, 32, 100));
    const auto& s = p.cm.decode_samples();
    REQUIRE(s.size() == static_cast<size_t>(CostModel::kDecodeSamples));
    double steps = 0;
    for (size_t k = 0; k < s.size(); ++k) {
      steps += s[k].steps;
      CHECK(s[k].context > 32);
      CHECK(s[k].context <= 32 + 99);
      if (k) CHECK(s[k].context > s[k - 1].context);
    }
    CHECK(steps == Approx(99));
  }
}

// ---------------------------------------------------------------------------------------------
// 2. A GPU-resident model decodes at the memory roofline
// ---------------------------------------------------------------------------------------------

TEST_CASE("a GPU-resident 8B model decodes at weight bytes / GPU bandwidth", "[unit][sim]") {
  const auto tree = preset_tree("llama31_8b");
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  // Llama-3.1-8B: 32 layers of 218,112,000 parameters, embedding and head 128256 x 4096 each,
  // final norm 4096: 8,030,261,248 parameters.
  const double params = 32.0 * 218112000 + 2.0 * 128256 * 4096 + 4096;
  REQUIRE(g.weight_bytes_total() == static_cast<Bytes>(params * 2));
  Hardware hw = round_machine(80 * kGiB, 0);
  hw.gpus[0] = make_gpu(80 * kGiB, 2e12, 1e18, 0.0, 0);
  hw.host.dispatch_overhead = fig(0);
  const Priced p(g, hw, workload(1, 512, 128));
  const Prediction pr = simulate(p.cm, hw, strategies::whole_model_map(Device::gpu(0)), Semantics::kAccelerate);
  REQUIRE(pr.feasible);
  CHECK(pr.oom.empty());
  CHECK(pr.offloaded_fraction == 0);
  CHECK(pr.transfer_bytes_per_token == 0);
  CHECK(pr.bottleneck == Resource::kGpuMemory);
  // Decode reads every weight once except the embedding table (one row per token).
  const double streamed = (params - 128256.0 * 4096) * 2;
  const double roofline = streamed / 2e12;
  CHECK(pr.decode_token_s >= roofline);
  CHECK(pr.decode_token_s <= roofline * 1.02);  // KV cache and activations add well under 2%
  CHECK(pr.tokens_per_s == Approx(1.0 / pr.decode_token_s));
  // Only GPU memory time is charged.
  CHECK(pr.decode[Resource::kGpuMemory] == Approx(pr.decode_token_s));
  CHECK(pr.decode[Resource::kH2d] == 0);
  CHECK(pr.decode[Resource::kCpuMemory] == 0);
  // Total = prefill + 127 decode steps of roughly the mean.
  CHECK(pr.total_s == Approx(pr.prefill_s + 127 * pr.decode_token_s).epsilon(1e-9));
  // The GPU memory the prediction reports: weights + KV cache at the final context + workspace.
  const double kv = 2.0 * 8 * 128 * 2 * 32 * (512 + 127);
  REQUIRE(!pr.memory.empty());
  CHECK(pr.memory[0].first == Device::gpu(0));
  CHECK(static_cast<double>(pr.memory[0].second) > params * 2 + kv);
  CHECK(static_cast<double>(pr.memory[0].second) < params * 2 + kv + 64.0 * kMiB);
}

// ---------------------------------------------------------------------------------------------
// 3. Execution semantics
// ---------------------------------------------------------------------------------------------

namespace {

// embed + layers 0-1 on GPU 0, layers 2-3 + norm + rotary + head on the CPU.
DeviceMap half_offloaded() {
  DeviceMap dm;
  dm.assign("model.embed_tokens", Device::gpu(0));
  dm.assign("model.layers.0", Device::gpu(0));
  dm.assign("model.layers.1", Device::gpu(0));
  dm.assign("model.layers.2", Device::cpu());
  dm.assign("model.layers.3", Device::cpu());
  dm.assign("model.norm", Device::cpu());
  dm.assign("model.rotary_emb", Device::cpu());
  dm.assign("lm_head", Device::cpu());
  return dm;
}
// Offloaded: 2 layers + the final norm + the head.
constexpr double kHalfOffloadedBytes = (2 * kTinyLayerParams + 256 + 256000) * 2;  // 2,873,856
constexpr int kHalfOffloadedTensors = 2 * 9 + 1 + 1;  // 7 linears + 2 norms per layer, norm, head

Hardware with_link(Hardware hw, double pinned, double pageable) {
  hw.link.h2d_pinned = hw.link.d2h_pinned = fig(pinned);
  hw.link.h2d_pageable = hw.link.d2h_pageable = fig(pageable);
  return hw;
}

}  // namespace

TEST_CASE("accelerate streams every offloaded weight over the link each token", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Hardware hw = round_machine(1 * kGiB);
  const Priced p(g, hw, workload(1, 16, 8));
  const Prediction acc = simulate(p.cm, hw, half_offloaded(), Semantics::kAccelerate);
  const Prediction gpu = simulate(p.cm, hw, strategies::whole_model_map(Device::gpu(0)), Semantics::kAccelerate);
  REQUIRE(acc.feasible);
  REQUIRE(gpu.feasible);
  CHECK(acc.transfer_bytes_per_token == Approx(kHalfOffloadedBytes).epsilon(1e-12));
  CHECK(acc.offloaded_fraction == Approx(kHalfOffloadedBytes / kTinyBytes16).epsilon(1e-12));
  CHECK(gpu.transfer_bytes_per_token == 0);
  // Everything computes on GPU 0 in both, so the difference is exactly the copies: pageable
  // bandwidth + per-copy latency + accelerate's hook, per tensor.
  const double copies = kHalfOffloadedBytes / 5e9 + kHalfOffloadedTensors * (10e-6 + 40e-6);
  CHECK(acc.decode_token_s - gpu.decode_token_s == Approx(copies).epsilon(1e-9));
  CHECK(acc.prefill_s - gpu.prefill_s == Approx(copies).epsilon(1e-9));
  CHECK(acc.decode[Resource::kH2d] == Approx(copies).epsilon(1e-9));
  CHECK(acc.decode[Resource::kCpuMemory] == 0);  // no CPU compute under accelerate
}

TEST_CASE("accelerate decode time never improves on a slower link", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const DeviceMap dm = half_offloaded();
  double prev_decode = std::numeric_limits<double>::infinity(), prev_total = prev_decode;
  double slowest = 0, fastest = 0;
  for (double gbs : {0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0}) {
    const Hardware hw = with_link(round_machine(1 * kGiB), 2 * gbs * 1e9, gbs * 1e9);
    const Priced p(g, hw, workload(1, 16, 8));
    const Prediction pr = simulate(p.cm, hw, dm, Semantics::kAccelerate);
    REQUIRE(pr.feasible);
    CHECK(pr.decode_token_s < prev_decode);  // strictly faster as the link gets faster
    CHECK(pr.total_s < prev_total);
    CHECK(pr.transfer_bytes_per_token == Approx(kHalfOffloadedBytes).epsilon(1e-12));
    if (slowest == 0) slowest = pr.decode_token_s;
    fastest = pr.decode_token_s;
    prev_decode = pr.decode_token_s;
    prev_total = pr.total_s;
  }
  // 0.25 GB/s vs 64 GB/s: the copy time shrinks 256x.
  CHECK(slowest - fastest == Approx(kHalfOffloadedBytes / 0.25e9 - kHalfOffloadedBytes / 64e9).epsilon(1e-9));
}

TEST_CASE("prefetch is never slower than accelerate for the same map", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  std::vector<std::string> names;
  for (const ChainUnit& u : g.chain) names.push_back(tree->node(u.node).name);
  for (double gbs : {0.5, 5.0, 50.0}) {
    const Hardware hw = with_link(round_machine(1 * kGiB), 2 * gbs * 1e9, gbs * 1e9);
    const Priced p(g, hw, workload(1, 64, 16));
    // Offload the last k units (k = 1..7), to cpu or to disk.
    for (int k = 1; k < static_cast<int>(names.size()); ++k) {
      for (Device off : {Device::cpu(), Device::disk()}) {
        DeviceMap dm;
        for (size_t i = 0; i < names.size(); ++i) {
          dm.assign(names[i], static_cast<int>(i) < static_cast<int>(names.size()) - k ? Device::gpu(0) : off);
        }
        const Prediction acc = simulate(p.cm, hw, dm, Semantics::kAccelerate);
        const Prediction pre = simulate(p.cm, hw, dm, Semantics::kPrefetch);
        INFO("link " << gbs << " GB/s, offloaded units " << k << ", to " << off.str());
        REQUIRE(acc.feasible);
        REQUIRE(pre.feasible);
        CHECK(pre.decode_token_s <= acc.decode_token_s);
        CHECK(pre.prefill_s <= acc.prefill_s);
        CHECK(pre.total_s <= acc.total_s);
        CHECK(pre.transfer_bytes_per_token == Approx(acc.transfer_bytes_per_token));
      }
    }
  }
}

TEST_CASE("prefetch hides a copy behind the previous entry's compute", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  // A fast link: every layer's copy is shorter than the previous layer's compute (dispatch bound).
  const Hardware hw = with_link(round_machine(1 * kGiB), 1000e9, 500e9);
  const Priced p(g, hw, workload(1, 16, 8));
  DeviceMap dm;
  dm.assign("model.embed_tokens", Device::gpu(0));
  dm.assign("model.layers.0", Device::gpu(0));
  dm.assign("model.layers.1", Device::cpu());  // streamed; previous entry = layer 0
  dm.assign("model.layers.2", Device::gpu(0));
  dm.assign("model.layers.3", Device::gpu(0));
  dm.assign("model.norm", Device::gpu(0));
  dm.assign("model.rotary_emb", Device::gpu(0));
  dm.assign("lm_head", Device::gpu(0));
  const Prediction gpu = simulate(p.cm, hw, strategies::whole_model_map(Device::gpu(0)), Semantics::kAccelerate);
  const Prediction pre = simulate(p.cm, hw, dm, Semantics::kPrefetch);
  const Prediction acc = simulate(p.cm, hw, dm, Semantics::kAccelerate);
  // Layer 1's copy: 9 tensors, 1,180,672 bytes at 1000 GB/s + 9 x 10 us = 91 us < layer 0's
  // 43 kernels x 5 us: fully hidden.
  CHECK(pre.decode_token_s == Approx(gpu.decode_token_s).epsilon(1e-12));
  CHECK(acc.decode_token_s - gpu.decode_token_s ==
        Approx(kTinyLayerParams * 2 / 500e9 + 9 * (10e-6 + 40e-6)).epsilon(1e-9));
}

TEST_CASE("the simulated timeline lays out exactly the priced time, op by op, per device", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Hardware hw = with_link(round_machine(1 * kGiB), 20e9, 10e9);
  const Priced p(g, hw, workload(1, 16, 8));
  DeviceMap dm;  // embed and layers 0-1 on the GPU, layer 2 on the CPU, layer 3 on disk
  dm.assign("model.embed_tokens", Device::gpu(0));
  dm.assign("model.layers.0", Device::gpu(0));
  dm.assign("model.layers.1", Device::gpu(0));
  dm.assign("model.layers.2", Device::cpu());
  dm.assign("model.layers.3", Device::disk());
  dm.assign("model.norm", Device::gpu(0));
  dm.assign("model.rotary_emb", Device::gpu(0));
  dm.assign("lm_head", Device::gpu(0));
  auto end_of = [](const std::vector<TimelineSpan>& v) {
    double e = 0;
    for (const auto& s : v) e = std::max(e, s.start_s + s.dur_s);
    return e;
  };
  auto busy = [](const std::vector<TimelineSpan>& v, const std::string& lane) {
    double t = 0;
    for (const auto& s : v) t += s.lane == lane ? s.dur_s : 0;
    return t;
  };
  auto lane_overlaps = [](std::vector<TimelineSpan> v, const std::string& lane) {
    v.erase(std::remove_if(v.begin(), v.end(), [&](const TimelineSpan& s) { return s.lane != lane; }), v.end());
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.start_s < b.start_s; });
    for (size_t i = 1; i < v.size(); ++i) {
      if (v[i].start_s < v[i - 1].start_s + v[i - 1].dur_s - 1e-15) return true;
    }
    return false;
  };
  for (Semantics sem : {Semantics::kAccelerate, Semantics::kPrefetch, Semantics::kInPlace}) {
    INFO(semantics_name(sem));
    Timeline tl;
    const Prediction pr = simulate(p.cm, hw, dm, sem, &tl);
    const Prediction plain = simulate(p.cm, hw, dm, sem);
    CHECK(pr.decode_token_s == plain.decode_token_s);  // recording changes nothing
    REQUIRE(!tl.prefill.empty());
    REQUIRE(!tl.decode.empty());
    CHECK(end_of(tl.prefill) == Approx(pr.prefill_s).epsilon(1e-9));
    CHECK(!lane_overlaps(tl.decode, "cuda:0"));
    CHECK(!lane_overlaps(tl.decode, "cpu"));
    // Layer 3's tensors are read from disk in every semantics (from the page cache in decode).
    CHECK(busy(tl.prefill, "disk") > 0);
    if (sem == Semantics::kInPlace) {
      CHECK(busy(tl.decode, "cpu") > 0);  // layers 2 and 3 compute on the CPU
      for (const auto& s : tl.decode) CHECK(s.what.rfind("weights", 0) == std::string::npos);
    } else {
      CHECK(busy(tl.decode, "cpu") == 0);  // everything computes on the GPU
      CHECK(busy(tl.decode, "link") > 0);
    }
    if (sem == Semantics::kPrefetch) {
      // Copies overlap compute: the lanes hold more busy time than the step lasts.
      double all = 0;
      for (const auto& s : tl.decode) all += s.dur_s;
      CHECK(all > end_of(tl.decode) * (1 + 1e-9));
    } else {
      double all = 0;
      for (const auto& s : tl.decode) all += s.dur_s;
      CHECK(all == Approx(end_of(tl.decode)).epsilon(1e-9));  // nothing overlaps
    }
  }
}

TEST_CASE("in-place moves only activations across the link", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Hardware hw = round_machine(1 * kGiB);
  const Priced p(g, hw, workload(1, 16, 8));
  const Prediction inplace = simulate(p.cm, hw, half_offloaded(), Semantics::kInPlace);
  const Prediction acc = simulate(p.cm, hw, half_offloaded(), Semantics::kAccelerate);
  REQUIRE(inplace.feasible);
  // One GPU -> CPU hand-over of one token's hidden state (256 x 2 bytes).
  CHECK(inplace.transfer_bytes_per_token == Approx(512));
  CHECK(inplace.transfer_bytes_per_token < 0.001 * kHalfOffloadedBytes);
  CHECK(inplace.decode[Resource::kCpuMemory] + inplace.decode[Resource::kCpuCompute] > 0);
  CHECK(inplace.offloaded_fraction == Approx(acc.offloaded_fraction));
  // Alternating devices: embed gpu, L0 cpu, L1 gpu, L2 cpu, L3.. gpu: four hand-overs.
  DeviceMap alt;
  alt.assign("model.embed_tokens", Device::gpu(0));
  alt.assign("model.layers.0", Device::cpu());
  alt.assign("model.layers.1", Device::gpu(0));
  alt.assign("model.layers.2", Device::cpu());
  alt.assign("model.layers.3", Device::gpu(0));
  alt.assign("model.norm", Device::gpu(0));
  alt.assign("model.rotary_emb", Device::gpu(0));
  alt.assign("lm_head", Device::gpu(0));
  const Prediction a = simulate(p.cm, hw, alt, Semantics::kInPlace);
  CHECK(a.transfer_bytes_per_token == Approx(4 * 512));
  // CPU-only: nothing crosses.
  const Prediction cpu = simulate(p.cm, hw, strategies::whole_model_map(Device::cpu()), Semantics::kCpu);
  REQUIRE(cpu.feasible);
  CHECK(cpu.transfer_bytes_per_token == 0);
  CHECK(cpu.offloaded_fraction == 0);  // no GPU in the placement
  CHECK(cpu.decode[Resource::kGpuMemory] + cpu.decode[Resource::kGpuCompute] == 0);
}

TEST_CASE("disk-offloaded weights are read cold in prefill and warm in decode when RAM holds them", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  DeviceMap dm = half_offloaded();
  dm.assign("lm_head", Device::disk());
  Hardware hw = round_machine(1 * kGiB);
  const Priced p(g, hw, workload(1, 16, 8));
  const Prediction warm = simulate(p.cm, hw, dm, Semantics::kInPlace);
  hw.page_cache = false;
  const Prediction cold = simulate(p.cm, hw, dm, Semantics::kInPlace);
  // The head's 512,000 bytes: from the page cache at 10 GB/s, or from the disk at 2 GB/s + 100 us.
  CHECK(cold.decode_token_s - warm.decode_token_s == Approx(512000 / 2e9 + 100e-6 - 512000 / 10e9).epsilon(1e-9));
  CHECK(cold.prefill_s == Approx(warm.prefill_s).epsilon(1e-12));
  CHECK(warm.transfer_bytes_per_token == Approx(512 + 512000));
  CHECK(page_cache_holds(round_machine(1 * kGiB), 0, 1 * kGiB));
  CHECK_FALSE(page_cache_holds(round_machine(1 * kGiB, 0, 2 * kGiB), 1 * kGiB + 1, 1 * kGiB));
}

// ---------------------------------------------------------------------------------------------
// 4. OOM reporting
// ---------------------------------------------------------------------------------------------

TEST_CASE("OOM: the KV cache outgrows the GPU at a context computed by hand", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Workload w = workload(1, 16, 2000);  // final context 16 + 1999 = 2015
  const double context_bytes = 1.0 * kMiB;
  const double fixed = context_bytes + kTinyBytes16;  // runtime context + weights
  const double ws_decode = 2816 * 2;                  // one token's workspace
  const double logits = 1000 * 4;                     // float32 logits
  const double kv_per_token = 4 * 512;                // 4 layers x K and V
  const auto run = [&](double memory) {
    const Hardware hw = round_machine(static_cast<Bytes>(memory), static_cast<Bytes>(context_bytes));
    const Priced p(g, hw, w);
    REQUIRE(p.cm.workspace_bytes(Phase::decode_at(100)) == static_cast<Bytes>(ws_decode));
    return simulate(p.cm, hw, strategies::whole_model_map(Device::gpu(0)), Semantics::kAccelerate);
  };
  SECTION("exactly enough for the final context fits") {
    const double need = fixed + ws_decode + logits + kv_per_token * 2015;
    const Prediction ok = run(need);
    CHECK(ok.feasible);
    CHECK(ok.oom.empty());
    REQUIRE(!ok.memory.empty());
    CHECK(static_cast<double>(ok.memory[0].second) == need);
    const Prediction short_by_one = run(need - 1);
    CHECK_FALSE(short_by_one.feasible);
    CHECK_THAT(short_by_one.oom, Catch::Contains("while decoding at context 2015 (new token 2000 of 2000)"));
  }
  SECTION("room for 1000 tokens of KV cache runs out at context 1001") {
    const double memory = fixed + ws_decode + logits + kv_per_token * 1000 + 100;
    const Prediction p = run(memory);
    CHECK_FALSE(p.feasible);
    // Room after weights and workspace: 1000 tokens (+100 bytes); context 1001 is the first that
    // does not fit, which is generated token 1001 - 16 + 1 = 986.
    const int64_t c = static_cast<int64_t>(std::floor((memory - fixed - ws_decode - logits) / kv_per_token)) + 1;
    REQUIRE(c == 1001);
    CHECK_THAT(p.oom, Catch::Contains("GPU 0 runs out of memory while decoding at context 1001"));
    CHECK_THAT(p.oom, Catch::Contains("(new token 986 of 2000)"));
    CHECK_THAT(p.oom, !Catch::Contains("cannot even hold"));
  }
  SECTION("a GPU smaller than the weights cannot even hold them") {
    const Prediction p = run(fixed - 1);
    CHECK_FALSE(p.feasible);
    CHECK_THAT(p.oom, Catch::Contains("GPU 0 cannot even hold"));
  }
  SECTION("room for the weights but not the prefill workspace runs out in prefill") {
    const Prediction p = run(fixed + 1000);
    CHECK_FALSE(p.feasible);
    CHECK_THAT(p.oom, Catch::Contains("runs out of memory in prefill (context 16)"));
  }
  SECTION("other programs' memory is taken off the GPU") {
    const double need = fixed + ws_decode + logits + kv_per_token * 2015;
    Hardware hw = round_machine(static_cast<Bytes>(need) + 10 * kMiB, static_cast<Bytes>(context_bytes));
    const Priced p(g, hw, w);
    CHECK(simulate(p.cm, hw, strategies::whole_model_map(Device::gpu(0)), Semantics::kAccelerate).feasible);
    hw.gpu_memory_in_use[0] = 10 * kMiB + 1;
    const Prediction busy = simulate(p.cm, hw, strategies::whole_model_map(Device::gpu(0)), Semantics::kAccelerate);
    CHECK_FALSE(busy.feasible);
    CHECK_THAT(busy.oom, Catch::Contains("while decoding at context 2015"));
  }
}

TEST_CASE("OOM: host RAM that cannot hold the CPU-mapped weights", "[unit][sim]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Hardware hw = round_machine(1 * kGiB, 1 * kMiB, 4 * kMiB);  // 4 MiB of RAM < 5.7 MB of weights
  const Priced p(g, hw, workload(1, 16, 8));
  const Prediction cpu = simulate(p.cm, hw, strategies::whole_model_map(Device::cpu()), Semantics::kCpu);
  CHECK_FALSE(cpu.feasible);
  CHECK_THAT(cpu.oom, Catch::Contains("host RAM cannot even hold"));
  // Half of it fits.
  CHECK(simulate(p.cm, hw, half_offloaded(), Semantics::kInPlace).feasible);
}

// ---------------------------------------------------------------------------------------------
// 7. Verdict
// ---------------------------------------------------------------------------------------------

TEST_CASE("verdict: CPU-only beats auto when most of the model crosses a slow link", "[unit][sim][verdict]") {
  TempDir tmp;
  const std::string path = tmp.write("fp32_pcie3.yaml", R"(id: fp32_pcie3
model: llama31_8b
hardware: {host: server_ddr5_12ch, gpus: [rtx3060_12gb], link: pcie3_x16, disk: nvme_gen4}
workload: {batch: 1, prompt: 512, new_tokens: 128, dtype: float32}
strategies: [auto, cpu, optimal]
semantics: [accelerate, prefetch, in-place]
)");
  const SimScenario s = load_sim_scenario(path, kConfigs);
  CHECK(s.workload.dtype == DType::kFloat32);
  const Evaluation ev = evaluate(s);
  REQUIRE(ev.auto_row >= 0);
  REQUIRE(ev.cpu_row >= 0);
  REQUIRE(ev.optimal_row >= 0);
  const ResultRow& au = ev.rows[ev.auto_row];
  const ResultRow& cpu = ev.rows[ev.cpu_row];
  REQUIRE(au.error.empty());
  CHECK(au.semantics == "accelerate");
  REQUIRE(au.pred.feasible);
  REQUIRE(cpu.pred.feasible);
  CHECK(au.pred.offloaded_fraction > 0.5);
  CHECK(cpu.pred.decode_token_s < au.pred.decode_token_s);
  CHECK_THAT(ev.verdict, Catch::Contains("CPU-only decodes"));
  CHECK_THAT(ev.verdict, Catch::Contains("faster than device_map='auto'"));
  // The optimum is at least as good as CPU-only (CPU-only is in its search space).
  REQUIRE(ev.rows[ev.optimal_row].pred.feasible);
  CHECK(ev.rows[ev.optimal_row].pred.total_s <= cpu.pred.total_s * (1 + 1e-9));
  // Ranking: the recommendation is the fastest feasible row.
  REQUIRE(ev.recommended >= 0);
  for (const ResultRow& r : ev.rows) {
    if (r.pred.feasible) CHECK(ev.rows[ev.recommended].pred.total_s <= r.pred.total_s * (1 + 1e-8));
  }
  // Break-even: 7 GB/s pageable / (460.8 x 0.8) GB/s.
  CHECK(ev.break_even_fraction == Approx(7.0 / (460.8 * 0.8)).epsilon(1e-9));
}

TEST_CASE("verdict: auto keeps the model on a big GPU", "[unit][sim][verdict]") {
  TempDir tmp;
  const std::string path = tmp.write("h200.yaml", R"(id: h200
model: llama31_8b
hardware: {host: desktop_ddr4_dual, gpus: [h200], link: pcie5_x16, disk: nvme_gen4}
workload: {batch: 1, prompt: 512, new_tokens: 128, dtype: float16}
strategies: [auto, cpu, optimal]
)");
  const Evaluation ev = evaluate(load_sim_scenario(path, kConfigs));
  REQUIRE(ev.auto_row >= 0);
  const ResultRow& au = ev.rows[ev.auto_row];
  REQUIRE(au.pred.feasible);
  CHECK(au.pred.offloaded_fraction == 0);
  CHECK_THAT(ev.verdict, Catch::Contains("keeps the whole model on the GPU"));
  CHECK_THAT(ev.verdict, !Catch::Contains("CPU-only decodes"));
  REQUIRE(ev.cpu_row >= 0);
  CHECK(au.pred.decode_token_s < ev.rows[ev.cpu_row].pred.decode_token_s);
  REQUIRE(ev.optimal);
  CHECK(ev.optimal->label == "gpu");
  // auto's row and the optimum price the same all-GPU placement alike.
  CHECK(ev.rows[ev.optimal_row].pred.decode_token_s == Approx(au.pred.decode_token_s).epsilon(1e-6));
}

TEST_CASE("the shipped default scenario evaluates and recommends a feasible placement", "[unit][sim][verdict]") {
  const SimScenario s = load_sim_scenario(kConfigs + "/scenarios/llama31_8b_fp16_rtx3060.yaml", kConfigs);
  CHECK(s.hardware.gpus.size() == 1);
  CHECK(s.workload.prompt == 512);
  CHECK(s.workload.new_tokens == 128);
  const Evaluation ev = evaluate(s);
  REQUIRE(ev.recommended >= 0);
  CHECK(ev.rows[ev.recommended].pred.feasible);
  CHECK_FALSE(ev.verdict.empty());
  CHECK_FALSE(ev.how_to_run.empty());
  REQUIRE(ev.optimal_row >= 0);
  REQUIRE(ev.auto_row >= 0);
  // The optimum is never worse than auto under accelerate.
  if (ev.rows[ev.auto_row].pred.feasible) {
    CHECK(ev.rows[ev.optimal_row].pred.total_s <= ev.rows[ev.auto_row].pred.total_s * (1 + 1e-6));
  }
}

// ---------------------------------------------------------------------------------------------
// 8. Bad input and calibrations
// ---------------------------------------------------------------------------------------------

namespace {

// Runs `f`, expecting an InputError naming `file` at `line`.
template <typename F>
void expect_input_error(F f, const std::string& file, int line, const std::string& part) {
  try {
    f();
    FAIL("no InputError (expected: " << part << ")");
  } catch (const InputError& e) {
    INFO(e.what());
    CHECK_THAT(e.file(), Catch::Contains(fs::path(file).filename().string()));
    CHECK(e.line() == line);
    CHECK_THAT(std::string(e.what()), Catch::Contains(part));
  }
}

const char* kTinyModelBlock = R"(model:
  model_type: llama
  vocab_size: 1000
  hidden_size: 256
  intermediate_size: 512
  num_hidden_layers: 4
  num_attention_heads: 4
  num_key_value_heads: 2
  tie_word_embeddings: false
  max_position_embeddings: 8192
)";  // lines 2-11 when it follows an `id:` line

}  // namespace

TEST_CASE("scenario input errors name the file and line", "[unit][sim][input]") {
  TempDir tmp;
  const std::string head = std::string("id: bad\n") + kTinyModelBlock;  // 11 lines
  SECTION("unknown GPU preset") {
    const std::string path = tmp.write("gpu.yaml", head + R"(hardware:
  host: desktop_ddr4_dual
  gpus: [rtx3060_12gb,
         rtx9999]
  link: pcie3_x16
  disk: nvme_gen4
workload: {batch: 1, prompt: 16, new_tokens: 4}
)");
    expect_input_error([&] { load_sim_scenario(path, kConfigs); }, path, 15, "unknown gpu preset 'rtx9999'");
  }
  SECTION("layer_types that do not list every layer") {
    const std::string path = tmp.write("windows.yaml", R"(model_type: mistral
vocab_size: 1000
hidden_size: 256
intermediate_size: 512
num_hidden_layers: 4
num_attention_heads: 4
num_key_value_heads: 2
sliding_window: 64
layer_types: [sliding_attention, full_attention, sliding_attention]
)");
    expect_input_error([&] { build_module_tree(load_model_spec(path)); }, path, 9,
                       "layer_types lists 3 layers, the model has 4");
  }
  SECTION("missing workload.prompt") {
    const std::string path = tmp.write("prompt.yaml", head + R"(hardware: {host: desktop_ddr4_dual, disk: nvme_gen4}
workload:
  batch: 1
  new_tokens: 4
)");
    expect_input_error([&] { load_sim_scenario(path, kConfigs); }, path, 14, "missing 'prompt'");
  }
  SECTION("zero and negative new_tokens") {
    for (const char* v : {"0", "-3"}) {
      const std::string path = tmp.write("tokens.yaml", head + R"(hardware: {host: desktop_ddr4_dual, disk: nvme_gen4}
workload:
  prompt: 16
  new_tokens: )" + v + "\n");
      expect_input_error([&] { load_sim_scenario(path, kConfigs); }, path, 15, "workload.new_tokens");
    }
  }
  SECTION("unknown scenario key") {
    const std::string path = tmp.write("key.yaml", head + R"(hardware: {host: desktop_ddr4_dual, disk: nvme_gen4}
workload: {prompt: 16, new_tokens: 4}
sematics: [accelerate]
)");
    expect_input_error([&] { load_sim_scenario(path, kConfigs); }, path, 14,
                       "scenario: unknown key 'sematics' (did you mean 'semantics'?)");
  }
  SECTION("unknown workload key") {
    const std::string path = tmp.write("wkey.yaml", head + R"(hardware: {host: desktop_ddr4_dual, disk: nvme_gen4}
workload:
  prompt: 16
  new_token: 4
)");
    expect_input_error([&] { load_sim_scenario(path, kConfigs); }, path, 15, "unknown key 'new_token'");
  }
  SECTION("a GPU preset where a host is expected") {
    const std::string path = tmp.write("kind.yaml", head + R"(hardware: {host: rtx3060_12gb, disk: nvme_gen4}
workload: {prompt: 16, new_tokens: 4}
)");
    expect_input_error([&] { load_sim_scenario(path, kConfigs); }, path, 12, "not a host");
  }
  SECTION("a workload longer than the model's positions") {
    const std::string path = tmp.write("long.yaml", head + R"(hardware: {host: desktop_ddr4_dual, disk: nvme_gen4}
workload: {prompt: 8000, new_tokens: 500}
)");
    expect_input_error([&] { load_sim_scenario(path, kConfigs); }, path, 13, "exceeds the model's 8192 positions");
  }
}

TEST_CASE("a scenario whose hand-written map does not cover the model fails evaluation", "[unit][sim][input]") {
  TempDir tmp;
  const std::string path = tmp.write(
      "partial.yaml", std::string("id: partial\n") + kTinyModelBlock +
                          R"(hardware: {host: desktop_ddr4_dual, gpus: [rtx3060_12gb], link: pcie3_x16, disk: nvme_gen4}
workload: {prompt: 16, new_tokens: 4}
strategies: [partial]
device_maps:
  partial:
    model.embed_tokens: 0
    model.layers.0: 0
    model.layers.1: cpu
)");
  const SimScenario s = load_sim_scenario(path, kConfigs);
  try {
    evaluate(s);
    FAIL("evaluate() accepted a map that leaves layers 2-3, the norm and the head unplaced");
  } catch (const InputError& e) {
    CHECK_THAT(e.file(), Catch::Contains("partial.yaml"));
    CHECK_THAT(std::string(e.what()), Catch::Contains("device map gives no device for: model.layers.2."));
  }
}

TEST_CASE("the uncovered hand-written map error points at a line", "[unit][sim][input]") {
  // InputError's contract: file and line where known. The map's YAML node has a line (the
  // `partial:` key, line 16), but evaluate() validates the map with only "file: device_maps.NAME".
  TempDir tmp;
  const std::string path = tmp.write(
      "partial.yaml", std::string("id: partial\n") + kTinyModelBlock +
                          R"(hardware: {host: desktop_ddr4_dual, gpus: [rtx3060_12gb], link: pcie3_x16, disk: nvme_gen4}
workload: {prompt: 16, new_tokens: 4}
strategies: [partial]
device_maps:
  partial:
    model.embed_tokens: 0
)");
  const SimScenario s = load_sim_scenario(path, kConfigs);
  try {
    evaluate(s);
    FAIL("no InputError");
  } catch (const InputError& e) {
    INFO(e.what());
    CHECK(e.line() > 0);
  }
}

TEST_CASE("calibration files: errors name the file and line; figures replace the datasheet", "[unit][sim][input]") {
  TempDir tmp;
  SECTION("unknown key") {
    const std::string path = tmp.write("cal_key.yaml", R"(kind: calibration
name: test
host:
  memory_bandwidth_gbs: 38.5
  memory_bandwith_gbs: 40
)");
    expect_input_error([&] { load_calibration(path); }, path, 5, "unknown key 'memory_bandwith_gbs'");
  }
  SECTION("negative bandwidth") {
    const std::string path = tmp.write("cal_neg.yaml", R"(kind: calibration
name: test
link:
  h2d_pinned_gbs: 20
  h2d_pageable_gbs: -5
)");
    expect_input_error([&] { load_calibration(path); }, path, 5, "must be positive");
  }
  SECTION("missing kind") {
    const std::string path = tmp.write("cal_kind.yaml", "name: test\nhost: {memory_bandwidth_gbs: 30}\n");
    expect_input_error([&] { load_calibration(path); }, path, 1, "kind: calibration");
  }
  SECTION("non-increasing M points") {
    const std::string path = tmp.write("cal_m.yaml", R"(kind: calibration
gpus:
  all:
    matmul_tflops: {float16: [[16, 10], [4, 20]]}
)");
    expect_input_error([&] { load_calibration(path); }, path, 4, "M values must increase");
  }
  SECTION("a page-cache rate per dtype") {
    const std::string path = tmp.write("cal_pc.yaml", R"(kind: calibration
host:
  page_cache_read_gbs: {float32: 8, bfloat16: 12}
)");
    const Calibration cal = load_calibration(path);
    const Hardware hw = round_machine(1 * kGiB);
    const Rates r = make_rates(hw, &cal);
    CHECK(r.page_cache_for(DType::kFloat32).value == Approx(8e9));
    CHECK(r.page_cache_for(DType::kBFloat16).value == Approx(12e9));
    CHECK(r.page_cache_for(DType::kFloat16).value == Approx(8e9));  // not given: the slowest
    CHECK(r.page_cache_for(DType::kBFloat16).source == Source::kCalibrated);
    const auto tree = tiny_tree();
    for (DType d : {DType::kFloat32, DType::kBFloat16}) {
      const ModelGraph g = build_graph(*tree, d);
      Workload w = workload(1, 16, 4);
      w.dtype = d;
      const CostModel cm(g, r, w);
      CHECK(cm.disk_read(24e6, true) == Approx(24e6 / (d == DType::kFloat32 ? 8e9 : 12e9)));
    }
    const std::string bad =
        tmp.write("cal_pc_bad.yaml", "kind: calibration\nhost:\n  page_cache_read_gbs: {float32: 0}\n");
    expect_input_error(
        [&] {
          const Calibration bc = load_calibration(bad);
          make_rates(hw, &bc);
        },
        bad, 3, "positive");
  }
  SECTION("a page-cache curve by tensor size") {
    const std::string path = tmp.write("cal_pcc.yaml", R"(kind: calibration
host:
  page_cache_read_gbs: {float32: [[8, 16], [32, 8]], bfloat16: 12}
)");
    const Calibration cal = load_calibration(path);
    CHECK(calibration_yaml(cal).find("page_cache_read_gbs: {float32: [[8, 16], [32, 8]], bfloat16: 12}") !=
          std::string::npos);
    CHECK(load_calibration(tmp.write("cal_pcc2.yaml", calibration_yaml(cal))).host.page_cache_read_gbs_by_dtype ==
          cal.host.page_cache_read_gbs_by_dtype);
    const Hardware hw = round_machine(1 * kGiB);
    const Rates r = make_rates(hw, &cal);
    const double MiB = 1024.0 * 1024.0;
    // Flat below the smallest size and above the largest, log-linear between (16 MiB: halfway).
    CHECK(r.page_cache_rate(DType::kFloat32, 2 * MiB) == Approx(16e9));
    CHECK(r.page_cache_rate(DType::kFloat32, 16 * MiB) == Approx(12e9));
    CHECK(r.page_cache_rate(DType::kFloat32, 100 * MiB) == Approx(8e9));
    CHECK(r.page_cache_rate(DType::kBFloat16, 16 * MiB) == Approx(12e9));  // a rate: every size
    CHECK(r.min_page_cache_rate(DType::kFloat32) == Approx(8e9));
    CHECK(r.page_cache_for(DType::kFloat32).value == Approx(8e9));  // the largest tensors'
    CHECK(r.page_cache_for(DType::kFloat16).value == Approx(8e9));  // not given: the slowest
    // The cost model prices each tensor at its own size's rate.
    const auto tree = tiny_tree();
    const ModelGraph g = build_graph(*tree, DType::kFloat32);
    Workload w = workload(1, 16, 4);
    w.dtype = DType::kFloat32;
    const CostModel cm(g, r, w);
    CHECK(cm.disk_read(4 * MiB, true) == Approx(4 * MiB / 16e9));
    CHECK(cm.disk_read(64 * MiB, true) == Approx(64 * MiB / 8e9));
    const std::string bad = tmp.write(
        "cal_pcc_bad.yaml", "kind: calibration\nhost:\n  page_cache_read_gbs:\n    float32: [[32, 8], [8, 16]]\n");
    expect_input_error([&] { load_calibration(bad); }, bad, 4, "must increase");
  }
  SECTION("large tensors at a rate of their own: copied out of the file's map from a size on") {
    const std::string path = tmp.write("cal_pcl.yaml", R"(kind: calibration
host:
  page_cache_read_gbs: {float32: [[8, 16], [32, 8]], bfloat16: 12}
  page_cache_large_gbs: 4
  page_cache_large_from_mib: 64
)");
    const Calibration cal = load_calibration(path);
    const Calibration again = load_calibration(tmp.write("cal_pcl2.yaml", calibration_yaml(cal)));
    CHECK(again.host.page_cache_large_gbs == cal.host.page_cache_large_gbs);
    CHECK(again.host.page_cache_large_from_mib == cal.host.page_cache_large_from_mib);
    const Rates r = make_rates(round_machine(1 * kGiB), &cal);
    const double MiB = 1024.0 * 1024.0;
    CHECK(r.page_cache_rate(DType::kFloat32, 63 * MiB) == Approx(8e9));  // the curve, flat past its end
    CHECK(r.page_cache_rate(DType::kFloat32, 64 * MiB) == Approx(4e9));  // from 64 MiB on: every dtype
    CHECK(r.page_cache_rate(DType::kBFloat16, 800 * MiB) == Approx(4e9));
    CHECK(r.page_cache_rate(DType::kBFloat16, 16 * MiB) == Approx(12e9));
    CHECK(r.min_page_cache_rate(DType::kBFloat16) == Approx(4e9));
    // Without it, large tensors keep the curve's last rate.
    const Calibration plain = load_calibration(
        tmp.write("cal_pcl3.yaml", "kind: calibration\nhost:\n  page_cache_read_gbs: {float32: [[8, 16], [32, 8]]}\n"));
    CHECK(make_rates(round_machine(1 * kGiB), &plain).page_cache_rate(DType::kFloat32, 800 * MiB) == Approx(8e9));
    // One key without the other is refused, naming the line.
    const std::string bad = tmp.write(
        "cal_pcl_bad.yaml", "kind: calibration\nhost:\n  memory_bandwidth_gbs: 40\n  page_cache_large_gbs: 4\n");
    expect_input_error([&] { load_calibration(bad); }, bad, 4, "go together");
  }
  SECTION("large tensors cold at a rate of their own: one long stream read ahead of") {
    const std::string path = tmp.write("cal_drl.yaml", R"(kind: calibration
disk:
  read_gbs: {float32: 2.5, bfloat16: 4}
  read_latency_us: 0
  read_large_gbs: 5
  read_large_from_mib: 64
)");
    const Calibration cal = load_calibration(path);
    const Calibration again = load_calibration(tmp.write("cal_drl2.yaml", calibration_yaml(cal)));
    CHECK(again.disk.read_large_gbs == cal.disk.read_large_gbs);
    CHECK(again.disk.read_large_from_mib == cal.disk.read_large_from_mib);
    const Rates r = make_rates(round_machine(1 * kGiB), &cal);
    const double MiB = 1024.0 * 1024.0;
    CHECK(r.disk_read_rate(DType::kFloat32, 63 * MiB) == Approx(2.5e9));
    CHECK(r.disk_read_rate(DType::kFloat32, 64 * MiB) == Approx(5e9));  // from 64 MiB on: every dtype
    CHECK(r.disk_read_rate(DType::kBFloat16, 800 * MiB) == Approx(5e9));
    CHECK(r.disk_read_rate(DType::kBFloat16, 16 * MiB) == Approx(4e9));
    CHECK(r.max_disk_read_rate(DType::kFloat32) == Approx(5e9));
    // The cost model's cold read of one tensor: bytes over the rate for its size.
    const Calibration plain = load_calibration(
        tmp.write("cal_drl3.yaml", "kind: calibration\ndisk:\n  read_gbs: 2.5\n  read_latency_us: 0\n"));
    const Rates rp = make_rates(round_machine(1 * kGiB), &plain);
    CHECK(rp.disk_read_rate(DType::kFloat32, 800 * MiB) == Approx(2.5e9));  // without it: the one rate
    CHECK(rp.max_disk_read_rate(DType::kFloat32) == Approx(2.5e9));
    CHECK(calibration_yaml(plain).find("read_large") == std::string::npos);
    const std::string bad =
        tmp.write("cal_drl_bad.yaml", "kind: calibration\ndisk:\n  read_gbs: 2\n  read_large_from_mib: 64\n");
    expect_input_error([&] { load_calibration(bad); }, bad, 4, "go together");
  }
  SECTION("a cold disk rate per dtype") {
    const std::string path = tmp.write("cal_disk.yaml", R"(kind: calibration
disk:
  read_gbs: {float32: 2.5, bfloat16: 4}
)");
    const Calibration cal = load_calibration(path);
    CHECK(calibration_yaml(cal).find("disk:\n  read_gbs: {") != std::string::npos);
    CHECK(load_calibration(tmp.write("cal_disk2.yaml", calibration_yaml(cal))).disk.read_gbs_by_dtype ==
          cal.disk.read_gbs_by_dtype);
    const Hardware hw = round_machine(1 * kGiB);
    const Rates r = make_rates(hw, &cal);
    CHECK(r.disk_read_for(DType::kFloat32).value == Approx(2.5e9));
    CHECK(r.disk_read_for(DType::kBFloat16).value == Approx(4e9));
    CHECK(r.disk_read_for(DType::kFloat16).value == Approx(2.5e9));  // not given: the slowest
    const auto tree = tiny_tree();
    for (DType d : {DType::kFloat32, DType::kBFloat16}) {
      const ModelGraph g = build_graph(*tree, d);
      Workload w = workload(1, 16, 4);
      w.dtype = d;
      const CostModel cm(g, r, w);
      CHECK(cm.disk_read(24e6, false) == Approx(24e6 / (d == DType::kFloat32 ? 2.5e9 : 4e9) + r.disk_latency.value));
    }
    const std::string bad = tmp.write("cal_disk_bad.yaml", "kind: calibration\ndisk:\n  read_gbs: {bfloat16: 0}\n");
    expect_input_error([&] { load_calibration(bad); }, bad, 3, "positive");
  }
  SECTION("calibrated figures replace datasheet ones and say so") {
    const std::string path = tmp.write("cal_ok.yaml", R"(kind: calibration
name: my-desktop
host:
  memory_bandwidth_gbs: 38.5
  matmul_gflops: {float32: [[1, 40], [16, 300], [256, 900]]}
  attention_overhead_us: 12
  matvec_row_ns: {float16: 10}
  matmul_input_ns: {float16: 3}
gpus:
  0:
    launch_overhead_us: 7.5
    matmul_tflops: {float16: [[1, 10], [100, 100]]}
    attention_tflops: {float16: 2}
    attention_overhead_us: 3
link: {h2d_pageable_gbs: 3}
disk: {read_gbs: 1.5}
)");
    const Calibration cal = load_calibration(path);
    CHECK(cal.name == "my-desktop");
    const Hardware hw = round_machine(1 * kGiB);
    const Rates base = make_rates(hw, nullptr);
    const Rates r = make_rates(hw, &cal);
    CHECK(base.calibration_name.empty());
    CHECK(r.calibration_name == "my-desktop");
    CHECK(base.host.memory_bandwidth.value == 20e9);
    CHECK(base.host.memory_bandwidth.source == Source::kDatasheet);
    CHECK(r.host.memory_bandwidth.value == Approx(38.5e9));
    CHECK(r.host.memory_bandwidth.source == Source::kCalibrated);
    CHECK(r.page_cache_read.value == Approx(38.5e9 / 2));
    CHECK(r.page_cache_read.source == Source::kCalibrated);
    CHECK(r.gpus[0].dispatch.value == Approx(7.5e-6));
    CHECK(r.gpus[0].dispatch.source == Source::kCalibrated);
    CHECK(r.h2d_pageable.value == Approx(3e9));
    CHECK(r.h2d_pageable.source == Source::kCalibrated);
    CHECK(r.disk_read.value == Approx(1.5e9));
    CHECK(r.disk_read.source == Source::kCalibrated);
    // Untouched figures stay datasheet.
    CHECK(r.h2d_pinned.value == 10e9);
    CHECK(r.h2d_pinned.source == Source::kDatasheet);
    CHECK(r.gpus[0].memory_bandwidth.value == 100e9);
    CHECK(r.gpus[0].memory_bandwidth.source == Source::kDatasheet);
    CHECK(r.gpus[0].flops_for(DType::kFloat32).source == Source::kDatasheet);
    // Curves: log-M interpolation between points, clamped at the ends.
    const RateCurve gf = r.gpus[0].flops_for(DType::kFloat16);
    CHECK(gf.source == Source::kCalibrated);
    CHECK(gf.at(1) == Approx(10e12));
    CHECK(gf.at(10) == Approx(55e12));  // halfway in log M
    CHECK(gf.at(100) == Approx(100e12));
    CHECK(gf.at(0.25) == Approx(10e12));  // clamped below
    CHECK(gf.at(1e6) == Approx(100e12));  // clamped above
    const RateCurve hf = r.host.flops_for(DType::kFloat32);
    CHECK(hf.at(4) == Approx(40e9 + 0.5 * 260e9));    // log 4 is halfway from log 1 to log 16
    CHECK(hf.at(64) == Approx(300e9 + 0.5 * 600e9));  // log 64 is halfway from log 16 to log 256
    // The cost model computes with the calibrated figures.
    const auto tree = tiny_tree();
    const ModelGraph g = build_graph(*tree, DType::kFloat16);
    const CostModel cm(g, r, workload(1, 16, 4));
    CHECK(cm.h2d(3e6, false) == Approx(3e6 / 3e9 + 10e-6).epsilon(1e-12));
    const Op& gate = find_op(g, "model.layers.0.mlp.gate_proj", OpKind::kMatmul);
    CHECK(cm.op(gate, ExecDevice::on_gpu(0), Phase::decode_at(20)).overhead_s == Approx(7.5e-6));
    // Attention: its own rate curve and a fixed cost per op on top of the dispatch.
    const Op& att = find_op(g, "model.layers.0.self_attn", OpKind::kAttention);
    const OpTime ta = cm.op(att, ExecDevice::on_gpu(0), Phase::decode_at(300));
    CHECK(ta.overhead_s == Approx(att.kernels * 7.5e-6 + 3e-6));
    CHECK(ta.compute_s == Approx(ta.flops / 2e12));
    CHECK(r.host.attention_overhead.value == Approx(12e-6));
    CHECK(r.host.attention_overhead.source == Source::kCalibrated);
    CHECK(base.host.attention_overhead.value == 0);
    CHECK(cm.op(att, ExecDevice::cpu(), Phase::decode_at(300)).overhead_s ==
          Approx(att.kernels * base.host.dispatch.value + 12e-6));
    // One-row products on the host pay 10 ns per output row (gate_proj: 512 rows); prefill's
    // 16-row products and the GPU (no per-row figure) do not.
    CHECK(cm.op(gate, ExecDevice::cpu(), Phase::decode_at(20)).overhead_s ==
          Approx(gate.kernels * base.host.dispatch.value + 512 * 10e-9));
    // Products of M >= 2 rows pay 3 ns per input element instead (16 rows x 256 inputs); the GPU
    // has no such figure.
    CHECK(cm.op(gate, ExecDevice::cpu(), Phase::prefill_of(16)).overhead_s ==
          Approx(gate.kernels * base.host.dispatch.value + 16 * 256 * 3e-9));
    CHECK(cm.op(gate, ExecDevice::on_gpu(0), Phase::prefill_of(16)).overhead_s == Approx(gate.kernels * 7.5e-6));
    CHECK(r.host.input_cost(DType::kFloat16) == Approx(3e-9));
    CHECK(r.host.input_cost(DType::kBFloat16) == 0);  // neither bfloat16 nor float32 given
    CHECK(cm.op(gate, ExecDevice::cpu(), Phase::decode_at(20)).memory_s ==
          Approx((256.0 * 512 * 2 + 768 * 2) / 38.5e9));
  }
}

TEST_CASE("RateCurve interpolates linearly in log M and clamps at the ends", "[unit][sim]") {
  const RateCurve c{{{1.0, 10.0}, {10.0, 20.0}, {1000.0, 40.0}}, Source::kCalibrated};
  CHECK(c.at(1) == Approx(10));
  CHECK(c.at(std::sqrt(10.0)) == Approx(15));
  CHECK(c.at(10) == Approx(20));
  CHECK(c.at(100) == Approx(30));  // halfway between log 10 and log 1000
  CHECK(c.at(1000) == Approx(40));
  CHECK(c.at(0.01) == Approx(10));
  CHECK(c.at(1e9) == Approx(40));
  const RateCurve k = RateCurve::constant(7, Source::kDatasheet);
  CHECK(k.at(1) == 7);
  CHECK(k.at(12345) == 7);
  // Rates without the workload's dtype fall back to float32.
  DeviceRates d;
  d.flops[DType::kFloat32] = RateCurve::constant(3, Source::kDatasheet);
  CHECK(d.flops_for(DType::kBFloat16).at(1) == 3);
}

TEST_CASE("hardware presets load with their datasheet figures", "[unit][sim]") {
  const GpuSpec g = load_gpu("rtx3060_12gb", kHardwareDir);
  CHECK(g.memory == 12 * kGiB);
  CHECK(g.memory_bandwidth.value == Approx(360e9));
  CHECK(g.peak_flops.at(DType::kFloat16).value == Approx(25.5e12));
  CHECK(g.runtime_context == 500 * kMiB);
  const HostSpec h = load_host("server_ddr5_12ch", kHardwareDir);
  CHECK(h.memory_bandwidth.value == Approx(460.8e9));
  CHECK(h.cores == 64);
  Hardware hw;
  hw.host = h;
  hw.gpus.push_back(g);
  const Rates r = make_rates(hw, nullptr);
  CHECK(r.gpus[0].memory_bandwidth.value == Approx(360e9 * g.achievable_memory));
  CHECK(r.host.memory_bandwidth.value == Approx(460.8e9 * h.achievable_memory));
  CHECK_THROWS_AS(load_gpu("no_such_gpu", kHardwareDir), InputError);
  CHECK_THROWS_AS(load_gpu("server_ddr5_12ch", kHardwareDir), InputError);  // a host, not a GPU
}

// ---------------------------------------------------------------------------------------------
// Mixture of experts
// ---------------------------------------------------------------------------------------------

namespace {
constexpr const char* kTinyMoe = R"(model_type: qwen3_moe
vocab_size: 256
hidden_size: 64
intermediate_size: 96
moe_intermediate_size: 32
num_hidden_layers: 2
num_attention_heads: 4
num_key_value_heads: 2
head_dim: 16
num_experts: 16
num_experts_per_tok: 4
)";
std::unique_ptr<ModuleTree> tiny_moe_tree() {
  return std::make_unique<ModuleTree>(
      build_module_tree(model_spec_from_node(load_yaml_string(kTinyMoe, "m.yaml"), "m.yaml")));
}

// The tiny MoE on GPU 0 but its layer 1, on the CPU, priced at batch 1 (a decode step's token
// runs k = 4 of the 16 experts).
struct Layer1Offloaded {
  std::unique_ptr<ModuleTree> tree = tiny_moe_tree();
  ModelGraph g = build_graph(*tree, DType::kFloat16);
  Hardware hw = round_machine(1 * kGiB);
  Priced p{g, hw, workload(1, 16, 8)};
  DeviceMap map = [] {
    DeviceMap m;
    for (const char* n : {"model.embed_tokens", "model.layers.0"}) m.assign(n, Device::gpu(0));
    m.assign("model.layers.1", Device::cpu());
    for (const char* n : {"model.norm", "model.rotary_emb", "lm_head"}) m.assign(n, Device::gpu(0));
    return m;
  }();
  // Layer 1's experts module: its two 3-D tensors.
  double experts() const {
    return static_cast<double>(g.tensor_bytes[tree->find("model.layers.1.mlp.experts.gate_up_proj")] +
                               g.tensor_bytes[tree->find("model.layers.1.mlp.experts.down_proj")]);
  }
  Prediction run(Semantics s) const {
    const Prediction pr = simulate(p.cm, hw, map, s);
    REQUIRE(pr.feasible);
    return pr;
  }
};
}  // namespace

TEST_CASE("routed experts: uniform-routing touched experts, and their products priced per token", "[unit][sim][moe]") {
  const auto tree = tiny_moe_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  // The router and the experts' two products (gate_up: 64 -> 2 x 32, down: 32 -> 64) and the
  // gated activation over the k experts a token runs.
  const Op& router = find_op(g, "model.layers.0.mlp.gate", OpKind::kMatmul);
  CHECK((router.in == 64 && router.out == 16 && router.experts == 0));
  std::vector<const Op*> products;
  for (const Op& op : g.ops) {
    if (g.tree->node(op.node).name == "model.layers.0.mlp.experts" && op.kind == OpKind::kMatmul)
      products.push_back(&op);
  }
  REQUIRE(products.size() == 2);
  CHECK((products[0]->in == 64 && products[0]->out == 64 && products[0]->experts == 16 && products[0]->active == 4));
  CHECK((products[1]->in == 32 && products[1]->out == 64));
  CHECK(find_op(g, "model.layers.0.mlp.experts", OpKind::kActivation).in == 32 * 4);
  // E (1 - (1 - k/E)^m): one token touches k; many touch them all.
  const Op& gu = *products[0];
  CHECK(touched_experts(gu, 1) == Approx(4));
  CHECK(touched_experts(gu, 2) == Approx(16 * (1 - 0.75 * 0.75)));
  CHECK(touched_experts(gu, 1e6) == Approx(16));
  // Decode at batch 1 reads the k experts' weights (and the token's activations); prefill of 512
  // tokens reads every expert and computes k products per token.
  const Hardware hw = round_machine(1 * kGiB);
  const Priced p(g, hw, workload(1, 512, 8));
  double flops = 0, bytes = 0;
  p.cm.op_work(gu, Phase::decode_at(600), flops, bytes);
  CHECK(flops == Approx(2.0 * 4 * 64 * 64));
  CHECK(bytes == Approx((4.0 * 64 * 64 + 4.0 * (64 + 64)) * 2));
  p.cm.op_work(gu, Phase::prefill_of(512), flops, bytes);
  CHECK(flops == Approx(2.0 * 512 * 4 * 64 * 64));
  CHECK(bytes == Approx((16.0 * 64 * 64 * (1 - 1e-9) + 512.0 * 4 * (64 + 64)) * 2).epsilon(1e-6));
}

TEST_CASE("an offloaded MoE layer streams all its experts under accelerate, only activations in place",
          "[unit][sim][moe]") {
  const Layer1Offloaded f;
  const Prediction acc = f.run(Semantics::kAccelerate);
  const Prediction inplace = f.run(Semantics::kInPlace);
  // transformers v5: the experts module is one set of 3-D tensors, copied whole every forward.
  const double layer1 = f.experts();
  CHECK(acc.transfer_bytes_per_token >= layer1);
  CHECK(inplace.transfer_bytes_per_token < layer1 / 10);
}

TEST_CASE("skewed routing: one spread figure, fitted from counted experts, read from a calibration",
          "[unit][sim][moe]") {
  // Uniform over spread x E experts: spread 1 is uniform routing, k/E the most skewed.
  CHECK(touched_experts(128, 8, 4) == Approx(128 * (1 - std::pow(1 - 8.0 / 128, 4))));
  CHECK(touched_experts(128, 8, 4, 0.5) == Approx(64 * (1 - std::pow(1 - 8.0 / 64, 4))));
  CHECK(touched_experts(128, 8, 4, 0.01) == Approx(8));  // at least k
  CHECK(touched_experts(128, 8, 1, 0.3) == Approx(8));   // one token: k whatever the spread
  // The fit inverts it; one token per forward says nothing.
  for (double spread : {0.1, 0.37, 0.8, 1.0}) {
    const auto back = routing_spread_of(128, 8, 16, touched_experts(128, 8, 16, spread));
    REQUIRE(back);
    CHECK(*back == Approx(spread).epsilon(1e-6));
  }
  CHECK_FALSE(routing_spread_of(128, 8, 1, 8));
  CHECK(*routing_spread_of(8, 2, 32, 2.0) == Approx(0.25));  // the tiny model's decode: all on k
  // In a calibration: moe.routing_spread, in (0, 1]; it prices fewer touched experts.
  const Calibration c = parse_calibration("kind: calibration\nmoe:\n  routing_spread: 0.25\n", "c.yaml");
  REQUIRE(c.moe_routing_spread);
  CHECK(*c.moe_routing_spread == 0.25);
  CHECK(parse_calibration(calibration_yaml(c), "back").moe_routing_spread == c.moe_routing_spread);
  expect_input_error([] { parse_calibration("kind: calibration\nmoe:\n  routing_spread: 1.5\n", "c.yaml"); }, "c.yaml",
                     3, "at most 1");
  expect_input_error([] { parse_calibration("kind: calibration\nmoe:\n  routing_spread: 0\n", "c.yaml"); }, "c.yaml", 3,
                     "positive");
  expect_input_error([] { parse_calibration("kind: calibration\nmoe:\n  spread: 0.5\n", "c.yaml"); }, "c.yaml", 3,
                     "spread");
  const auto tree = tiny_moe_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Hardware hw = round_machine(1 * kGiB);
  const Priced uniform(g, make_rates(hw, nullptr), workload(8, 16, 8));
  const Priced skewed(g, make_rates(hw, &c), workload(8, 16, 8));
  CHECK(skewed.rates.routing_spread.source == Source::kCalibrated);
  const Op& up = find_op(g, "model.layers.0.mlp.experts", OpKind::kMatmul);
  CHECK(uniform.cm.touched(up, 8) == Approx(touched_experts(16, 4, 8)));
  CHECK(skewed.cm.touched(up, 8) == Approx(touched_experts(16, 4, 8, 0.25)));
  // A decode step of 8 sequences reads fewer experts' bytes when routing is skewed.
  CHECK(skewed.cm.op(up, ExecDevice::cpu(), Phase::decode_at(20)).bytes <
        uniform.cm.op(up, ExecDevice::cpu(), Phase::decode_at(20)).bytes);
}

TEST_CASE("one sequence's tokens route alike: the sequence spread, fitted and priced per sequence",
          "[unit][sim][moe]") {
  // q = 1: the tokens of every sequence independent, the single-figure formula for B x T tokens.
  for (double s : {1.0, 0.5}) {
    CHECK(touched_experts(128, 8, 4, 64, s, 1.0) == Approx(touched_experts(128, 8, 256, s)));
    CHECK(touched_experts(128, 8, 1, 64, s, 1.0) == Approx(touched_experts(128, 8, 64, s)));
  }
  // One token per sequence (decode) does not depend on q; a sequence of many tokens touches
  // at most q x E of the experts, and sequences add up independently.
  CHECK(touched_experts(128, 8, 4, 1, 1.0, 0.3) == Approx(touched_experts(128, 8, 4)));
  const double one = touched_experts(128, 8, 1, 64, 1.0, 0.59);
  CHECK(one == Approx(0.59 * 128 * (1 - std::pow(1 - 8 / (0.59 * 128), 64))));
  CHECK(one < 0.59 * 128);
  CHECK(touched_experts(128, 8, 4, 64, 1.0, 0.59) == Approx(128 * (1 - std::pow(1 - one / 128, 4))));
  CHECK(touched_experts(128, 8, 1, 64, 1.0, 0.01) == Approx(8));  // at least k
  // The fit inverts one sequence's count, given the spread; a single token says nothing.
  for (double s : {1.0, 0.6}) {
    for (double q : {0.2, 0.59, 1.0}) {
      const auto back = sequence_spread_of(128, 8, 64, touched_experts(128, 8, 1, 64, s, q), s);
      REQUIRE(back);
      CHECK(*back == Approx(q).epsilon(1e-6));
    }
  }
  CHECK_FALSE(sequence_spread_of(128, 8, 1, 8));
  // Both at once from a probe's three counts (4 sequences' decode, one sequence's prefill, 4
  // sequences' prefill): the figures that made the counts come back; the decode count alone
  // barely tells the spread (29.1 uniform vs 28.8 at s = 0.88), the union of prefills does.
  for (double s : {1.0, 0.9, 0.6}) {
    for (double q : {0.3, 0.59, 1.0}) {
      const std::vector<TouchedCount> counts = {{4, 1, touched_experts(128, 8, 4, 1, s, q)},
                                                {1, 64, touched_experts(128, 8, 1, 64, s, q)},
                                                {4, 64, touched_experts(128, 8, 4, 64, s, q)}};
      const RoutingSpreads r = routing_spreads_of(128, 8, counts);
      INFO("s " << s << " q " << q);
      CHECK(r.spread == Approx(s).margin(2e-3));
      CHECK(r.sequence_spread == Approx(q).margin(2e-3));
      CHECK(r.rms_log_error < 1e-4);
    }
  }
  // Counts no figures reproduce: the best compromise, its error said; nothing to fit: 1, 1.
  const RoutingSpreads mixed = routing_spreads_of(128, 8, {{1, 64, 71.5}, {1, 64, 80.0}});
  CHECK(mixed.rms_log_error == Approx(std::log(80.0 / 71.5) / 2).epsilon(0.02));
  const RoutingSpreads none = routing_spreads_of(128, 8, {{1, 1, 8.0}});
  CHECK(none.spread == 1);
  CHECK(none.sequence_spread == 1);
  // In a calibration: moe.sequence_spread in (0, 1], written back.
  const Calibration c = parse_calibration("kind: calibration\nmoe:\n  sequence_spread: 0.5\n", "c.yaml");
  REQUIRE(c.moe_sequence_spread);
  CHECK(*c.moe_sequence_spread == 0.5);
  CHECK_FALSE(c.moe_routing_spread);
  CHECK(parse_calibration(calibration_yaml(c), "back").moe_sequence_spread == c.moe_sequence_spread);
  expect_input_error([] { parse_calibration("kind: calibration\nmoe:\n  sequence_spread: 2\n", "c.yaml"); }, "c.yaml",
                     3, "at most 1");
  // Priced per sequence: the prefill of 2 sequences of 16 tokens reads the experts of
  // touched(2 sequences, 16 tokens), fewer than 32 independent tokens' when q < 1; decode alike.
  const auto tree = tiny_moe_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Hardware hw = round_machine(1 * kGiB);
  const Priced uniform(g, make_rates(hw, nullptr), workload(2, 16, 8));
  const Priced alike(g, make_rates(hw, &c), workload(2, 16, 8));
  CHECK(alike.rates.sequence_spread.source == Source::kCalibrated);
  const Op& up = find_op(g, "model.layers.0.mlp.experts", OpKind::kMatmul);
  CHECK(uniform.cm.touched(up, 32) == Approx(touched_experts(16, 4, 32)));
  CHECK(alike.cm.touched(up, 32) == Approx(touched_experts(16, 4, 2, 16, 1.0, 0.5)));
  CHECK(alike.cm.touched(up, 32) < uniform.cm.touched(up, 32));
  CHECK(alike.cm.touched(up, 2) == Approx(uniform.cm.touched(up, 2)));
  CHECK(alike.cm.op(up, ExecDevice::cpu(), Phase::prefill_of(16)).bytes <
        uniform.cm.op(up, ExecDevice::cpu(), Phase::prefill_of(16)).bytes);
}

TEST_CASE("routed prefetch (dmap's proposal): only the experts the router picked cross, after the router",
          "[unit][sim][moe]") {
  const Layer1Offloaded f;
  const Prediction pre = f.run(Semantics::kPrefetch);
  const Prediction routed = f.run(Semantics::kRoutedPrefetch);
  const double experts = f.experts();
  // Per token the rest of the layer still crosses whole, the experts module a quarter of it.
  CHECK(pre.transfer_bytes_per_token - routed.transfer_bytes_per_token == Approx(experts * 12 / 16).epsilon(1e-9));
  // The picked experts' copies (one per expert and tensor) are not hidden behind earlier work:
  // at least 4 x 2 pinned copies each decode step.
  const double one = experts / 2 / 16;
  CHECK(routed.decode_token_s >= 8 * f.p.cm.h2d(one, true));
  // Prefill (16 tokens) touches E(1 - (1 - k/E)^16) = 15.85 of the 16: about what prefetch moves.
  CHECK(sim::touched_experts(16, 4, 16) == Approx(16 * (1 - std::pow(0.75, 16))));
  // dmap run refuses it (no executor implements it); the names parse.
  CHECK(parse_semantics("routed-prefetch") == Semantics::kRoutedPrefetch);
  CHECK(semantics_name(Semantics::kRoutedPrefetch) == "routed-prefetch");
  // In a scenario: a row beside prefetch for MoE models only, never the recommendation, named in the verdict.
  const SimScenario s = load_sim_scenario(kConfigs + "/scenarios/qwen3_30b_a3b_bf16_rtx3060.yaml", kConfigs);
  const Evaluation ev = evaluate(s);
  int rows = 0;
  for (const ResultRow& r : ev.rows) rows += r.semantics == "routed-prefetch" ? 1 : 0;
  CHECK(rows > 0);
  REQUIRE(ev.recommended >= 0);
  CHECK(ev.rows[ev.recommended].semantics != "routed-prefetch");
  CHECK_THAT(ev.verdict, Catch::Contains("routed prefetch (no runtime does it yet"));
  const SimScenario dense = load_sim_scenario(kConfigs + "/scenarios/llama31_8b_fp16_rtx3060.yaml", kConfigs);
  for (const ResultRow& r : evaluate(dense).rows) CHECK(r.semantics != "routed-prefetch");
}

TEST_CASE("experts kept on the CPU under GPU layers: llama.cpp's --cpu-moe, --n-cpu-moe N or an -ot pattern",
          "[unit][sim][moe]") {
  TempDir dir;
  // Tiny MoE on a big GPU: only the experts go to the CPU (in place), as a hand-written map.
  auto scenario = [&](const std::vector<int>& cpu_experts) {
    std::string y = "id: moe_flags\nmodel:\n";
    std::istringstream lines(kTinyMoe);
    for (std::string l; std::getline(lines, l);) y += "  " + l + "\n";
    y += "hardware: {host: desktop_ddr5_dual, gpus: [rtx3060_12gb], link: pcie4_x16, disk: nvme_gen4}\n"
         "workload: {batch: 1, prompt: 16, new_tokens: 4, dtype: bfloat16}\n"
         "semantics: [in-place]\nstrategies: [split]\ndevice_maps:\n  split:\n    model.embed_tokens: 0\n";
    for (int l = 0; l < 2; ++l) {
      const bool cpu = std::find(cpu_experts.begin(), cpu_experts.end(), l) != cpu_experts.end();
      for (const char* part : {"self_attn", "mlp.gate", "input_layernorm", "post_attention_layernorm"}) {
        y += "    model.layers." + std::to_string(l) + "." + part + ": 0\n";
      }
      y += "    model.layers." + std::to_string(l) + ".mlp.experts: " + (cpu ? "cpu" : "0") + "\n";
    }
    y += "    model.norm: 0\n    model.rotary_emb: 0\n    lm_head: 0\n";
    return evaluate(load_sim_scenario(dir.write("s.yaml", y), kConfigs)).how_to_run;
  };
  CHECK_THAT(scenario({0, 1}), Catch::Contains("-ngl 2 --cpu-moe"));
  CHECK_THAT(scenario({0}), Catch::Contains("-ngl 2 --n-cpu-moe 1"));
  CHECK_THAT(scenario({1}), Catch::Contains("-ngl 2 -ot \"blk\\.(1)\\.ffn_(gate|up|down)_exps=CPU\""));
  // Everything on the GPU: nothing computes on the CPU, so no llama.cpp split is named.
  CHECK_THAT(scenario({}), Catch::StartsWith("from_pretrained(..., device_map="));
}

TEST_CASE("n_cpu_moe: the fastest --n-cpu-moe N that fits, experts of the first N layers in place on the CPU",
          "[unit][sim][moe]") {
  const SimScenario s = load_sim_scenario(kConfigs + "/scenarios/qwen3_30b_a3b_bf16_rtx3060.yaml", kConfigs);
  const Evaluation ev = evaluate(s);
  // The row of a strategy (nullptr when there is none).
  auto row_of = [](const Evaluation& e, const std::string& strategy) -> const ResultRow* {
    for (const ResultRow& r : e.rows) {
      if (r.strategy == strategy) return &r;
    }
    return nullptr;
  };
  const ResultRow* row = row_of(ev, "n_cpu_moe");
  REQUIRE(row != nullptr);
  REQUIRE(row->pred.feasible);
  CHECK(row->semantics == "in-place");
  // The CPU holds only routed experts, of a prefix of the layers.
  std::vector<int> cpu_layers;
  for (const auto& [name, dev] : row->map.items()) {
    if (dev.is_gpu()) continue;
    REQUIRE(name.size() > std::string(".mlp.experts").size());
    CHECK(name.substr(name.size() - 12) == ".mlp.experts");
    cpu_layers.push_back(std::stoi(name.substr(std::string("model.layers.").size())));
  }
  REQUIRE(!cpu_layers.empty());
  for (size_t i = 0; i < cpu_layers.size(); ++i) CHECK(cpu_layers[i] == static_cast<int>(i));
  // One layer fewer on the CPU (its experts back on the GPU) does not fit or is no faster.
  DeviceMap fewer = row->map;
  fewer.assign("model.layers." + std::to_string(cpu_layers.back()) + ".mlp.experts", Device::gpu(0));
  const CostModel cm(*ev.graph, ev.rates, s.workload);
  const Prediction p = simulate(cm, s.hardware, fewer, Semantics::kInPlace);
  CHECK((!p.feasible || p.total_s >= row->pred.total_s));
  // The optimal search holds expert-aware placements: its optimum is no slower, and, with the
  // split layers first, runs as llama.cpp's --n-cpu-moe N too.
  const ResultRow* opt = row_of(ev, "optimal");
  REQUIRE(opt != nullptr);
  CHECK(opt->pred.total_s <= row->pred.total_s * (1 + 1e-9));
  CHECK_THAT(ev.how_to_run, Catch::Contains("--n-cpu-moe "));
  // On two GPUs the layers are split across them in order (llama.cpp's default tensor split).
  const SimScenario two = load_sim_scenario(kConfigs + "/scenarios/mixtral_8x7b_bf16_two_rtx3090.yaml", kConfigs);
  const Evaluation ev2 = evaluate(two);
  const ResultRow* row2 = row_of(ev2, "n_cpu_moe");
  REQUIRE(row2 != nullptr);
  CHECK(row2->pred.feasible);
  int last_gpu = 0;
  bool both = false;
  for (const auto& [name, dev] : row2->map.items()) {
    if (!dev.is_gpu()) continue;
    CHECK(dev.index >= last_gpu);
    last_gpu = dev.index;
    both = both || dev.index == 1;
  }
  CHECK(both);
  // A dense model gets no such row.
  CHECK(row_of(evaluate(load_sim_scenario(kConfigs + "/scenarios/llama31_8b_fp16_rtx3060.yaml", kConfigs)),
               "n_cpu_moe") == nullptr);
}

// ---------------------------------------------------------------------------------------------
// Quantized checkpoints and GGUF files in the simulator
// ---------------------------------------------------------------------------------------------

TEST_CASE("quantized: packed bytes on the device, a preset's dequant figure moves the time", "[unit][sim][quant]") {
  TempDir tmp;
  const char* body = R"(model: llama31_8b_bnb4
workload: {batch: 1, prompt: 512, new_tokens: 16, dtype: bfloat16}
strategies: [auto, cpu]
)";
  const std::string plain = tmp.write(
      "bnb.yaml",
      std::string("id: bnb\nhardware: {host: desktop_ddr5_dual, gpus: [rtx4060], link: pcie4_x8, disk: nvme_gen4}\n") +
          body);
  const Evaluation a = evaluate(load_sim_scenario(plain, kConfigs));
  REQUIRE(a.auto_row >= 0);
  const ResultRow& au = a.rows[a.auto_row];
  REQUIRE(au.pred.feasible);
  // The whole 4-bit model (5.2 GiB as transformers counts it) sits on the 8 GB GPU.
  CHECK(au.map.items().size() == 1);
  // A preset that says the GPU's 4-bit kernel dequantises through memory in decode too (+4 B per
  // weight) makes decode slower, by about the traffic it adds.
  const std::string heavy = tmp.write(
      "bnb_heavy.yaml",
      std::string("id: bnb_heavy\nhardware:\n  host: desktop_ddr5_dual\n  link: pcie4_x8\n  disk: nvme_gen4\n  gpus:\n"
                  "    - {name: slow-dequant 4060, memory: 8GiB, memory_bandwidth_gbs: 272, peak_tflops: {float32: 15, "
                  "bfloat16: 60}, compute_capability: 8.9,\n"
                  "       dequant: {bitsandbytes_4bit: {decode_bytes_per_weight: 4, prefill_bytes_per_weight: 4, "
                  "kernels: 1}}}\n") +
          body);
  const Evaluation b = evaluate(load_sim_scenario(heavy, kConfigs));
  const ResultRow& bu = b.rows[b.auto_row];
  REQUIRE(bu.pred.feasible);
  CHECK(bu.pred.decode_token_s > 1.5 * au.pred.decode_token_s);
}

TEST_CASE("bitsandbytes: transformers refuses an offloaded map, the optimum does not use accelerate",
          "[unit][sim][quant]") {
  TempDir tmp;
  const std::string path = tmp.write("bnb_small.yaml", R"(id: bnb_small
model: llama31_8b_bnb4
hardware: {host: desktop_ddr5_dual, gpus: [rtx3050_laptop_4gb], link: pcie4_x8, disk: nvme_gen4}
workload: {batch: 1, prompt: 128, new_tokens: 16, dtype: bfloat16}
strategies: [auto, cpu, optimal]
)");
  // (a 4 GB GPU cannot hold the 5.2 GiB model: auto offloads)
  std::string why;
  try {
    const Evaluation ev = evaluate(load_sim_scenario(path, kConfigs));
    REQUIRE(ev.auto_row >= 0);
    for (const ResultRow& r : ev.rows) {
      if (r.strategy == "auto" && r.semantics == "accelerate") {
        CHECK_FALSE(r.pred.feasible);
        CHECK(r.pred.oom.find("llm_int8_enable_fp32_cpu_offload") != std::string::npos);
      }
      if (r.strategy == "optimal") CHECK(r.semantics.find("accelerate") == std::string::npos);
    }
  } catch (const InputError& e) {
    why = e.text();
  }
  CHECK(why.empty());
}

TEST_CASE("FP8 checkpoints dequantize on GPUs below compute capability 8.9", "[unit][sim][quant]") {
  TempDir tmp;
  auto scenario = [&](const std::string& gpu) {
    return load_sim_scenario(tmp.write(gpu + ".yaml", "id: fp8_" + gpu + R"(
model: {model_type: llama, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4,
        num_key_value_heads: 2, vocab_size: 256, torch_dtype: bfloat16,
        quantization_config: {quant_method: fp8, weight_block_size: [128, 128]}}
hardware: {host: desktop_ddr5_dual, gpus: [)" + gpu + R"(], link: pcie4_x16, disk: nvme_gen4}
workload: {batch: 1, prompt: 16, new_tokens: 4, dtype: bfloat16}
strategies: [auto]
)"),
                             kConfigs);
  };
  const SimScenario ampere = scenario("rtx3090"), ada = scenario("rtx4090");
  REQUIRE(ampere.base.model.quantization);
  CHECK(ampere.base.model.quantization->dequantize);
  CHECK(ampere.quantization_note.find("8.6") != std::string::npos);
  CHECK_FALSE(ada.base.model.quantization->dequantize);
  const Evaluation a = evaluate(ampere), b = evaluate(ada);
  CHECK(a.tree->node(a.tree->find("model.layers.0.self_attn.q_proj")).class_name == "Linear");
  CHECK(b.tree->node(b.tree->find("model.layers.0.self_attn.q_proj")).class_name == "FP8Linear");
}

TEST_CASE("a GGUF scenario: llama.cpp rows only, the command line names the file", "[unit][sim][gguf]") {
  const Evaluation ev = evaluate(load_sim_scenario(kConfigs + "/scenarios/qwen3_30b_a3b_q4km_rtx3060.yaml", kConfigs));
  for (const ResultRow& r : ev.rows) {
    if (!r.error.empty()) continue;
    CHECK((r.semantics == "in-place" || r.semantics == "cpu"));
  }
  CHECK(ev.how_to_run.rfind("llama-cli -m Qwen3-30B-A3B-Q4_K_M.gguf -ngl ", 0) == 0);
}

TEST_CASE("a calibration saves and loads back to the same rates (typed, no temporary file)", "[unit][sim]") {
  namespace fs = std::filesystem;
  const std::string dir = std::string(DMAP_SOURCE_DIR) + "/configs";
  const Hardware hw = parse_hardware(YAML::Node("h200_vm"), "test", dir + "/hardware");
  auto same = [](const Figure& a, const Figure& b) {
    CHECK(a.source == b.source);
    CHECK(a.value == Approx(b.value).epsilon(1e-5));
  };
  auto same_curves = [](const std::map<DType, RateCurve>& a, const std::map<DType, RateCurve>& b) {
    REQUIRE(a.size() == b.size());
    for (const auto& [d, c] : a) {
      const RateCurve& o = b.at(d);
      REQUIRE(c.points.size() == o.points.size());
      for (size_t i = 0; i < c.points.size(); ++i) {
        CHECK(c.points[i].first == Approx(o.points[i].first).epsilon(1e-5));
        CHECK(c.points[i].second == Approx(o.points[i].second).epsilon(1e-5));
      }
    }
  };
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir + "/calibrations")) {
    if (e.path().extension() != ".yaml") continue;
    INFO(e.path().string());
    ++files;
    const Calibration a = load_calibration(e.path().string());
    const std::string text = calibration_yaml(a);
    const Calibration b = parse_calibration(text, "saved");
    CHECK(calibration_yaml(b) == text);  // saving is a fixed point
    CHECK(b.name == a.name);
    CHECK(b.fit.IsDefined() == a.fit.IsDefined());
    const Rates ra = make_rates(hw, &a), rb = make_rates(hw, &b);
    same(ra.host.memory_bandwidth, rb.host.memory_bandwidth);
    same(ra.host.dispatch, rb.host.dispatch);
    same(ra.page_cache_read, rb.page_cache_read);
    same(ra.disk_read, rb.disk_read);
    same(ra.disk_latency, rb.disk_latency);
    same(ra.host.attention_overhead, rb.host.attention_overhead);
    same_curves(ra.host.flops, rb.host.flops);
    same_curves(ra.host.attention_flops, rb.host.attention_flops);
    CHECK(ra.host.row_cost(DType::kBFloat16) == Approx(rb.host.row_cost(DType::kBFloat16)).epsilon(1e-5));
    CHECK(ra.host.input_cost(DType::kFloat32) == Approx(rb.host.input_cost(DType::kFloat32)).epsilon(1e-5));
  }
  CHECK(files >= 2);
  // A calibration built in memory, GPU and link sections included, loads back as built.
  Calibration c;
  c.name = "built";
  c.host.memory_bandwidth_gbs = 38.5;
  c.host.matvec_row_ns[DType::kFloat32] = 12.25;
  c.host.reference_probe_ms = 31.5;
  c.host.dtype_reference_probe_ms[DType::kBFloat16] = 47.25;
  c.all_gpus = GpuCalibration{};
  c.all_gpus->launch_overhead_us = 0;
  c.gpus[0].memory_bandwidth_gbs = 4100;
  c.gpus[0].matmul_tflops[DType::kBFloat16] = {{1, 30}, {512, 650}};
  c.link.h2d_pinned_gbs = 52;
  c.link.p2p_gbs = 400;
  c.disk.read_latency_us = 0;
  const Calibration back = parse_calibration(calibration_yaml(c), "built");
  CHECK(back.host.memory_bandwidth_gbs == 38.5);
  CHECK(back.host.matvec_row_ns.at(DType::kFloat32) == 12.25);
  CHECK(back.host.reference_probe_ms == 31.5);
  CHECK(back.host.dtype_reference_probe_ms == std::map<DType, double>{{DType::kBFloat16, 47.25}});
  // Runs of a dtype are bracketed by its own probe where there is one, else by the float32 one.
  CHECK(back.host.reference_probe_for(DType::kBFloat16) == 47.25);
  CHECK(back.host.reference_probe_dtype(DType::kBFloat16) == DType::kBFloat16);
  CHECK(back.host.reference_probe_for(DType::kFloat16) == 31.5);
  CHECK(back.host.reference_probe_dtype(DType::kFloat16) == DType::kFloat32);
  CHECK_FALSE(Calibration{}.host.reference_probe_for(DType::kFloat32));
  CHECK_THROWS_WITH(parse_calibration("kind: calibration\nhost:\n  reference_probe_ms: 0\n", "t.yaml"),
                    Catch::Contains("reference_probe_ms"));
  CHECK_THROWS_WITH(
      parse_calibration("kind: calibration\nhost:\n  dtype_reference_probe_ms: {bfloat16: 0}\n", "t.yaml"),
      Catch::Contains("host.dtype_reference_probe_ms: a time must be positive"));
  REQUIRE(back.all_gpus);
  CHECK(back.all_gpus->launch_overhead_us == 0.0);
  CHECK(back.gpus.at(0).memory_bandwidth_gbs == 4100.0);
  CHECK(back.gpus.at(0).matmul_tflops.at(DType::kBFloat16) == CurvePoints{{1, 30}, {512, 650}});
  CHECK(back.link.p2p_gbs == 400.0);
  CHECK(back.disk.read_latency_us == 0.0);
  CHECK_FALSE(back.disk.read_gbs);
  const Rates r = make_rates(hw, &back);
  CHECK(r.gpus.at(0).memory_bandwidth.value == 4100e9);
  CHECK(r.gpus.at(0).dispatch.value == 0.0);
  CHECK(r.gpus.at(0).dispatch.source == Source::kCalibrated);
  CHECK((r.p2p.empty() || r.p2p[0][0] == 400e9));
}

// ---- runtimes (sim/runtime.h) ----------------------------------------------------------------

TEST_CASE("runtime profiles: names, what each runtime runs, schema and errors", "[unit][sim][runtime]") {
  for (Runtime r : all_runtimes()) REQUIRE(parse_runtime(runtime_name(r)) == r);
  CHECK(parse_runtime("llama_cpp") == Runtime::kLlamaCpp);
  CHECK_FALSE(parse_runtime("vllm"));
  CHECK(runtime_runs(Runtime::kTransformers, Semantics::kAccelerate));
  CHECK_FALSE(runtime_runs(Runtime::kTransformers, Semantics::kInPlace));
  CHECK_FALSE(runtime_runs(Runtime::kTransformers, Semantics::kPrefetch));
  CHECK(runtime_runs(Runtime::kLlamaCpp, Semantics::kInPlace));
  CHECK(runtime_fit_key(Runtime::kLlamaCpp) == "runtime_llama_cpp");  // the keys calibrations carry
  CHECK(runtime_fit_key(Runtime::kTransformers) == "runtime_transformers");
  CHECK_FALSE(runtime_runs(Runtime::kLlamaCpp, Semantics::kAccelerate));
  for (Runtime r : all_runtimes()) CHECK(runtime_runs(r, Semantics::kCpu));
  CHECK(runtime_runs(Runtime::kDmap, Semantics::kPrefetch));

  const std::string text = R"(kind: calibration
host: {memory_bandwidth_gbs: 40}
runtimes:
  transformers:
    source: measured
    version: "torch 1.13.1"
    op_overhead_us: 21.5
    step_overhead_us: 40
    matvec_efficiency: {float32: 0.72, bfloat16: 0.3}
    matmul_efficiency: 0.9
    unsupported_dtypes: {float16: "\"addmm_impl_cpu_\" not implemented for 'Half'"}
  llama.cpp:
    op_overhead_us: 3
    matvec_gbs: {float32: 56.1, bfloat16: 49.3}
    matvec_row_ns: {float32: 6.2, bfloat16: 0}
    load: no-mmap
    mapped_factor: {float32: 2.27, bfloat16: 1.03}
)";
  const Calibration c = parse_calibration(text, "rt.yaml");
  REQUIRE(c.runtimes.size() == 2);
  const RuntimeProfile& t = c.runtimes.at(Runtime::kTransformers);
  CHECK(t.measured);
  CHECK(t.version == "torch 1.13.1");
  CHECK(t.op_overhead_us == 21.5);
  CHECK(t.matvec_for(DType::kBFloat16) == 0.3);
  CHECK(t.matvec_for(DType::kFloat16) == 0.72);             // float32's where the dtype is absent
  CHECK(t.matmul_for(DType::kBFloat16) == 0.9);             // one number: every dtype
  CHECK_FALSE(c.runtimes.at(Runtime::kLlamaCpp).measured);  // no source: an estimate
  const RuntimeProfile& l = c.runtimes.at(Runtime::kLlamaCpp);
  CHECK(l.no_mmap);
  CHECK(l.matvec_gbs.at(DType::kBFloat16) == 49.3);
  CHECK(l.matvec_row_ns.at(DType::kBFloat16) == 0.0);
  CHECK(l.mapped_factor.at(DType::kFloat32) == 2.27);
  CHECK_FALSE(t.no_mmap);
  CHECK(t.unsupported.at(DType::kFloat16) == "\"addmm_impl_cpu_\" not implemented for 'Half'");
  CHECK(l.unsupported.empty());
  const Calibration back = parse_calibration(calibration_yaml(c), "saved");
  CHECK(back.runtimes.at(Runtime::kTransformers).unsupported == t.unsupported);
  CHECK(calibration_yaml(back) == calibration_yaml(c));
  CHECK(back.runtimes.at(Runtime::kLlamaCpp).no_mmap);
  // The load mode per dtype (a fit writes it so): written back as it was read; a dtype it does not
  // name takes the one-word mode; a mode that is neither word, a key that is not a dtype, and a
  // load mode under transformers are errors naming the key.
  Calibration per = c;
  per.runtimes[Runtime::kLlamaCpp].load = {{DType::kFloat32, true}, {DType::kBFloat16, false}};
  const Calibration per_back = parse_calibration(calibration_yaml(per), "saved");
  const RuntimeProfile& pl = per_back.runtimes.at(Runtime::kLlamaCpp);
  CHECK(pl.load == per.runtimes.at(Runtime::kLlamaCpp).load);
  CHECK(pl.no_mmap_in(DType::kFloat32));
  CHECK_FALSE(pl.no_mmap_in(DType::kBFloat16));
  CHECK(pl.no_mmap_in(DType::kFloat16) == pl.no_mmap);
  CHECK(calibration_yaml(per_back).find("load: {float32: no-mmap, bfloat16: mmap}") != std::string::npos);
  auto load_error = [&](const std::string& load, const char* runtime = "\"llama.cpp\"") {
    const std::string y =
        std::string("kind: calibration\nname: x\nruntimes:\n  ") + runtime + ":\n    load: " + load + "\n";
    try {
      parse_calibration(y, "bad.yaml");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(load_error("{float32: maybe}").find("load.float32: mmap or no-mmap, found 'maybe'") != std::string::npos);
  CHECK(load_error("{float33: mmap}").find("'float33' is not a dtype") != std::string::npos);
  CHECK(load_error("{float32: mmap}", "transformers").find("only llama.cpp has a load mode") != std::string::npos);
  CHECK(load_error("{float32: no-mmap}") == "accepted");
  CHECK(back.runtimes.at(Runtime::kLlamaCpp).matvec_gbs == l.matvec_gbs);
  CHECK(back.runtimes.at(Runtime::kLlamaCpp).mapped_factor == l.mapped_factor);
  CHECK(back.runtimes.at(Runtime::kTransformers).matvec_efficiency == t.matvec_efficiency);
  // The measured profile where there is one, else the runtime's estimate.
  CHECK(profile_for(&c, Runtime::kTransformers).measured);
  CHECK_FALSE(profile_for(nullptr, Runtime::kTransformers).measured);
  CHECK(profile_for(nullptr, Runtime::kTransformers).op_overhead_us.has_value());

  auto fails = [](const std::string& body, const std::string& what) {
    INFO(body);
    CHECK_THROWS_WITH(parse_calibration("kind: calibration\nruntimes:\n" + body, "bad.yaml"),
                      Catch::Contains("bad.yaml") && Catch::Contains(what));
  };
  fails("  vllm: {}\n", "unknown runtime 'vllm'");
  fails("  transformers: {op_overhead_us: -1}\n", "op_overhead_us");
  fails("  transformers: {matvec_efficiency: {float32: 0}}\n", "efficiency is a factor");
  fails("  transformers: {matvec_efficiency: {float33: 1}}\n", "unknown dtype");
  fails("  transformers: {source: guessed}\n", "measured or estimate");
  fails("  transformers: {op_overhed_us: 3}\n", "op_overhead_us");  // a typo: did you mean
  fails("  transformers: 3\n", "expected a mapping");
  fails("  llama.cpp: {load: lazy}\n", "mmap or no-mmap");
  fails("  transformers: {load: no-mmap}\n", "only llama.cpp has a load mode");
  fails("  llama.cpp: {matvec_gbs: {float32: 0}}\n", "matvec_gbs.float32: must be a number > 0");
  fails("  llama.cpp: {matvec_row_ns: {float32: -1}}\n", "matvec_row_ns.float32: must be a number >= 0");
  fails("  llama.cpp: {mapped_factor: 2}\n", "mapped_factor: expected a mapping dtype -> number");
  fails("  transformers: {unsupported_dtypes: [float16]}\n", "unsupported_dtypes: expected a mapping");
  fails("  transformers: {unsupported_dtypes: {float17: x}}\n", "'float17' is not a dtype");
}

TEST_CASE("a calibration's fit block is written with numbers in their shortest spelling", "[unit][sim]") {
  Calibration cal;
  cal.name = "t";
  cal.fit = YAML::Node(YAML::NodeType::Map);
  cal.fit["probe_ratio"] = 0.979;  // yaml-cpp keeps 17 digits: 0.97899999999999998
  YAML::Node xs;
  xs.push_back(145.2);
  xs.push_back(1.0 / 3.0);
  xs.SetStyle(YAML::EmitterStyle::Flow);
  cal.fit["block"]["sessions_ms"] = xs;
  cal.fit["block"]["version"] = "llama.cpp v0.4.0";
  cal.fit["block"]["count"] = 956;
  const std::string y = calibration_yaml(cal);
  CHECK(y.find("probe_ratio: 0.979\n") != std::string::npos);
  CHECK(y.find("sessions_ms: [145.2, 0.3333333333333333]") != std::string::npos);
  CHECK(y.find("version: llama.cpp v0.4.0") != std::string::npos);
  CHECK(y.find("count: 956") != std::string::npos);
  CHECK(y.find("9999") == std::string::npos);
  const Calibration back = parse_calibration(y, "saved");
  CHECK(back.fit["probe_ratio"].as<double>() == 0.979);  // the same double
  CHECK(back.fit["block"]["sessions_ms"][1].as<double>() == 1.0 / 3.0);
}

TEST_CASE("a 16-bit dtype the calibration did not time: float32's products, bfloat16's one-row rate",
          "[unit][sim][calibration]") {
  const Hardware hw = round_machine(16 * kGiB);
  Calibration cal;
  cal.host.matmul_gflops[DType::kFloat32] = {{1, 20}, {64, 300}};
  cal.host.matmul_gflops[DType::kBFloat16] = {{1, 40}, {64, 400}};
  cal.host.attention_gflops[DType::kFloat32] = {{1, 10}, {64, 50}};
  const Rates r = make_rates(hw, &cal);
  const RateCurve& f16 = r.host.flops_for(DType::kFloat16);
  CHECK(f16.source == Source::kEstimate);
  CHECK(f16.at(1) == Approx(40e9));    // the same 16-bit weights streamed: bfloat16's
  CHECK(f16.at(64) == Approx(300e9));  // computed in float32: float32's
  CHECK(r.host.attention_flops_for(DType::kFloat16).at(64) == Approx(50e9));
  CHECK(r.host.flops_for(DType::kBFloat16).source == Source::kCalibrated);
  // float32 alone: bfloat16 and float16 both take its curve.
  Calibration only = cal;
  only.host.matmul_gflops.erase(DType::kBFloat16);
  const Rates o = make_rates(hw, &only);
  CHECK(o.host.flops_for(DType::kBFloat16).at(1) == Approx(20e9));
  CHECK(o.host.flops_for(DType::kFloat16).at(64) == Approx(300e9));
  // No calibrated float32: the datasheet's figures stay.
  const Rates d = make_rates(hw, nullptr);
  CHECK(d.host.flops_for(DType::kFloat16).source != Source::kEstimate);
}

TEST_CASE("a runtime's own one-row product terms replace the hardware's", "[unit][sim][runtime]") {
  const Hardware hw = round_machine(16 * kGiB);
  Calibration cal;
  cal.host.matmul_gflops[DType::kFloat32] = {{1, 20}, {64, 300}};
  cal.host.memory_bandwidth_gbs = 400;
  cal.host.matvec_row_ns[DType::kFloat32] = 10;
  const Rates base = make_rates(hw, &cal);
  RuntimeProfile p;
  p.measured = true;
  p.matvec_gbs[DType::kFloat32] = 50;  // 50 GB/s of float32 weights: 25 GFLOP/s
  p.matvec_row_ns[DType::kFloat32] = 2;
  const Rates r = runtime_rates(base, Runtime::kLlamaCpp, p);
  CHECK(r.host.flops_for(DType::kFloat32).at(1) == Approx(25e9));    // not the curve's 20
  CHECK(r.host.flops_for(DType::kFloat32).at(64) == Approx(300e9));  // M >= 2: the curve's
  CHECK(r.host.row_cost(DType::kFloat32) == Approx(2e-9));
  p.matvec_efficiency[DType::kFloat32] = 0.5;  // the whole model's residual on top
  CHECK(runtime_rates(base, Runtime::kLlamaCpp, p).host.flops_for(DType::kFloat32).at(1) == Approx(12.5e9));
  // Without its own terms the runtime keeps the hardware's row cost.
  CHECK(runtime_rates(base, Runtime::kLlamaCpp, RuntimeProfile{}).host.row_cost(DType::kFloat32) == Approx(10e-9));
}

TEST_CASE("the LM head streams at its own calibrated rate, under dmap's executor only", "[unit][sim][calibration]") {
  const Hardware hw = round_machine(16 * kGiB);
  Calibration cal;
  cal.host.matmul_gflops[DType::kFloat32] = {{1, 10}, {64, 300}};  // one-row products: 20 GB/s of float32
  cal.host.memory_bandwidth_gbs = 400;
  cal.host.matvec_row_ns[DType::kFloat32] = 2;
  cal.host.dispatch_overhead_us = 1;
  cal.host.head_matvec_gbs[DType::kFloat32] = 50;
  const Calibration back = parse_calibration(calibration_yaml(cal), "built");
  REQUIRE(back.host.head_matvec_gbs.count(DType::kFloat32) == 1);
  CHECK(back.host.head_matvec_gbs.at(DType::kFloat32) == 50.0);
  CHECK_THROWS_WITH(parse_calibration("kind: calibration\nhost:\n  head_matvec_gbs: {float32: 0}\n", "t.yaml"),
                    Catch::Contains("head_matvec_gbs: a rate must be positive"));
  const Rates r = make_rates(hw, &back);
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat32);
  const Op* head = nullptr;
  for (const Op& op : g.ops) {
    if (op.kind == OpKind::kMatmul && op.head) head = &op;
  }
  REQUIRE(head != nullptr);
  const Op& gate = find_op(g, "model.layers.0.mlp.gate_proj", OpKind::kMatmul);
  const double head_bytes = static_cast<double>(head->in * head->out) * 4.0;
  const double gate_bytes = static_cast<double>(gate.in * gate.out) * 4.0;
  {
    const CostModel cm(g, r, workload(1, 16, 4));
    const OpTime th = cm.op(*head, ExecDevice::cpu(), Phase::decode_at(20));
    CHECK(th.time() == Approx(head_bytes / 50e9 + head->out * 2e-9 + 1e-6));  // the head's rate, row cost, dispatch
    const OpTime tg = cm.op(gate, ExecDevice::cpu(), Phase::decode_at(20));
    CHECK(tg.time() == Approx(gate_bytes / 20e9 + gate.out * 2e-9 + 1e-6));  // the layers' rate
    // A batch of two runs the head as a two-row product: the curve's rate, not the head's.
    const CostModel cm2(g, r, workload(2, 16, 4));
    const OpTime t2 = cm2.op(*head, ExecDevice::cpu(), Phase::decode_at(20));
    CHECK(t2.compute_s == Approx(2.0 * 2 * head->in * head->out / r.host.flops_for(DType::kFloat32).at(2)));
  }
  // Another dtype has no head rate: the curve's (no fallback to float32's head).
  {
    const ModelGraph gb = build_graph(*tree, DType::kBFloat16);
    Workload w = workload(1, 16, 4);
    w.dtype = DType::kBFloat16;
    const CostModel cm(gb, r, w);
    const OpTime th = cm.op(*head, ExecDevice::cpu(), Phase::decode_at(20));
    CHECK(th.compute_s == Approx(2.0 * head->in * head->out / 10e9));
  }
  // Other runtimes' profiles were fitted without it.
  RuntimeProfile p;
  p.measured = true;
  const Rates rt = runtime_rates(r, Runtime::kLlamaCpp, p);
  CHECK(rt.host.head_rate(DType::kFloat32) == 0.0);
  CHECK(runtime_rates(r, Runtime::kDmap, p).host.head_rate(DType::kFloat32) == Approx(50e9));
}

TEST_CASE("a runtime's rates: efficiencies by M, its overheads, a per-forward cost", "[unit][sim][runtime]") {
  const Hardware hw = round_machine(16 * kGiB);
  Calibration cal;
  cal.host.matmul_gflops[DType::kFloat32] = {{1, 20}, {64, 300}};
  cal.host.dispatch_overhead_us = 1;
  cal.host.memory_bandwidth_gbs = 400;  // streams faster than the one-row rate: the curve's rate counts
  const Rates base = make_rates(hw, &cal);
  RuntimeProfile p;
  p.measured = true;
  p.op_overhead_us = 20;
  p.step_overhead_us = 500;
  p.matvec_efficiency[DType::kFloat32] = 0.5;
  p.matmul_efficiency[DType::kFloat32] = 0.25;
  const Rates r = runtime_rates(base, Runtime::kTransformers, p);
  CHECK(r.runtime == Runtime::kTransformers);
  CHECK(r.host.dispatch.value == Approx(20e-6));
  CHECK(r.step_overhead.value == Approx(500e-6));
  CHECK(r.host.flops_for(DType::kFloat32).at(1) == Approx(0.5 * 20e9));
  CHECK(r.host.flops_for(DType::kFloat32).at(64) == Approx(0.25 * 300e9));
  // dmap's own rates are the calibration's.
  const Rates d = runtime_rates(base, Runtime::kDmap, p);
  CHECK(d.host.dispatch.value == Approx(1e-6));
  CHECK(d.step_overhead.value == 0.0);
  // A one-rate curve gets a point for M >= 2: the two efficiencies differ.
  Calibration flat;
  flat.host.matmul_gflops[DType::kFloat32] = {{1, 100}};
  flat.host.memory_bandwidth_gbs = 400;
  const Rates rf = runtime_rates(make_rates(hw, &flat), Runtime::kTransformers, p);
  CHECK(rf.host.flops_for(DType::kFloat32).at(1) == Approx(50e9));
  CHECK(rf.host.flops_for(DType::kFloat32).at(512) == Approx(25e9));
  // Where memory feeds less than the curve says (a datasheet peak), one-row products run at the
  // streaming rate times the efficiency: 20 GB/s of float32 weights, 10 GFLOP/s, halved.
  Calibration slow = flat;
  slow.host.memory_bandwidth_gbs = 20;
  const Rates rsl = runtime_rates(make_rates(hw, &slow), Runtime::kTransformers, p);
  CHECK(rsl.host.flops_for(DType::kFloat32).at(1) == Approx(0.5 * 10e9));
  // accelerate's reads of disk-offloaded weights: in decode a copy at its rate plus the fresh pages
  // (all of a tensor's from glibc's 32 MiB mmap threshold on, the heap's share of a smaller one's);
  // in a cold prefill the copy x its cold scale or the disk, the slower, for the dtypes measured only.
  Calibration paged = cal;
  paged.host.page_cache_read_gbs_by_dtype[DType::kFloat32] = {{4, 16}, {64, 8}};
  paged.disk.read_gbs = 2;
  RuntimeProfile offload = p;
  offload.offload_copy_gbs = 2.0;
  offload.fresh_page_us = 4.096;  // 1 ms per MB of fresh pages: 1 GB/s
  offload.heap_fresh_share = 0.5;
  offload.offload_cold_scale[DType::kFloat32] = 3;
  const Rates pb = make_rates(hw, &paged);
  const Rates po = runtime_rates(pb, Runtime::kTransformers, offload);
  const double mib = 1024.0 * 1024;
  // 16 MiB from the heap, half its pages fresh: 1/2 + 1/2 x 1 (s per GB) -> 1 GB/s.
  CHECK(po.page_cache_rate(DType::kFloat32, 16 * mib) == Approx(1e9));
  CHECK(po.page_cache_rate(DType::kBFloat16, 16 * mib) == Approx(1e9));  // bytes are bytes
  // 32 MiB and more: mapped afresh, every page: 1/2 + 1 -> 2/3 GB/s; the slowest any tensor reads.
  CHECK(po.page_cache_rate(DType::kFloat32, 32 * mib) == Approx(2e9 / 3));
  CHECK(po.page_cache_rate(DType::kFloat32, 64 * mib) == Approx(2e9 / 3));
  CHECK(po.min_page_cache_rate(DType::kFloat32) == Approx(2e9 / 3));
  CHECK(po.torch_offload->fresh_share(32 * mib - 4096) == Approx(0.5));
  CHECK(po.disk_read_for(DType::kFloat32).value == Approx(pb.disk_read_for(DType::kFloat32).value));  // the disk's
  // A dtype's copy scale: its copies (not its fresh pages) take that much longer within a forward.
  RuntimeProfile scaled = offload;
  scaled.offload_copy_scale[DType::kBFloat16] = 2;
  const Rates ps = runtime_rates(pb, Runtime::kTransformers, scaled);
  CHECK(ps.page_cache_rate(DType::kBFloat16, 16 * mib) == Approx(1e9 / 1.5));  // 2 x 1/2 + 1/2 x 1
  CHECK(ps.page_cache_rate(DType::kFloat32, 16 * mib) == Approx(1e9));
  CHECK(ps.min_page_cache_rate(DType::kBFloat16) == Approx(0.5e9));  // 2 x 1/2 + 1
  CHECK(ps.torch_offload->fresh_pages(16 * mib) == Approx(2048));    // half of 4096 pages
  // Without the fresh page's cost the executor's curve stays (a profile fitted without disk runs).
  RuntimeProfile half = offload;
  half.fresh_page_us.reset();
  CHECK(runtime_rates(pb, Runtime::kTransformers, half).page_cache_rate(DType::kFloat32, 4 * mib) == Approx(16e9));
  CHECK(runtime_rates(pb, Runtime::kDmap, offload).page_cache_rate(DType::kFloat32, 4.0 * 1024 * 1024) == Approx(16e9));

  // Simulated: the per-forward cost is added once to the prefill and to every decode step; a
  // slower one-row rate slows decode.
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat32);
  const Workload w = workload(1, 16, 8, DType::kFloat32);
  DeviceMap cpu;
  cpu.assign("", Device::cpu());
  RuntimeProfile only_step;
  only_step.step_overhead_us = 500;
  const Rates rs = runtime_rates(base, Runtime::kTransformers, only_step);
  const CostModel cm0(g, base, w), cm1(g, rs, w);
  const Prediction p0 = simulate(cm0, hw, cpu, Semantics::kCpu), p1 = simulate(cm1, hw, cpu, Semantics::kCpu);
  CHECK(p1.decode_token_s - p0.decode_token_s == Approx(500e-6));
  CHECK(p1.prefill_s - p0.prefill_s == Approx(500e-6));
  CHECK(p1.total_s - p0.total_s == Approx(500e-6 * 8));  // the prefill and 7 decode steps
  const CostModel cm2(g, r, w);
  CHECK(simulate(cm2, hw, cpu, Semantics::kCpu).decode_token_s > p1.decode_token_s);
  // A cold read under PyTorch: the copy out of the file (3 x its 2 GB/s, the kernel reading ahead
  // meanwhile) or the disk (2 GB/s and its latency), the slower, then the copy's fresh pages as warm.
  const CostModel cmo(g, po, w), cmb(g, pb, w);
  CHECK(cmo.disk_read(16 * mib, false) == Approx(3 * 16 * mib / 2e9 + 2048 * 4.096e-6));
  CHECK(cmb.disk_read(16 * mib, false) == Approx(16 * mib / 2e9 + pb.disk_latency.value));
  RuntimeProfile quick = offload;  // a copy faster than the disk: the disk sets the pace
  quick.offload_cold_scale[DType::kFloat32] = 0.5;
  const Rates pq = runtime_rates(pb, Runtime::kTransformers, quick);
  const CostModel cmq(g, pq, w);
  CHECK(cmq.disk_read(16 * mib, false) == Approx(16 * mib / 2e9 + pb.disk_latency.value + 2048 * 4.096e-6));
}

namespace {
bool has_offload_entry(const DeviceMap& dm) {
  for (const auto& [n, d] : dm.items()) {
    if (!d.is_gpu()) return true;
  }
  return false;
}
}  // namespace

TEST_CASE("the verdict prices auto's disk-offloaded layers under transformers on warm pages", "[unit][sim][runtime]") {
  // Llama-3.1-8B fp16 on a 12 GB GPU with 4 GiB of RAM allowed: auto puts layers on disk.
  SimScenario s = load_sim_scenario(kConfigs + "/scenarios/llama31_8b_fp16_rtx3060.yaml", kConfigs);
  s.base.max_memory = parse_max_memory_flag("0=10GiB,cpu=2GiB,disk=100GiB", "test");
  s.runtimes = {Runtime::kTransformers};
  Calibration cal;
  RuntimeProfile& t = cal.runtimes[Runtime::kTransformers];
  t.measured = true;
  t.offload_copy_gbs = 2.5;
  t.fresh_page_us = 7.5;
  t.heap_fresh_share = 0.9;
  s.calibration = cal;
  const Evaluation ev = evaluate(s);
  REQUIRE(ev.auto_row >= 0);
  const ResultRow& au = ev.rows[ev.auto_row];
  bool disk = false;
  for (const auto& [n, d] : au.map.items()) disk = disk || d.kind == Device::Kind::kDisk;
  REQUIRE(disk);
  CHECK_THAT(ev.verdict, Catch::Contains("MALLOC_MMAP_MAX_=0") && Catch::Contains("fresh page costs 7.5 us"));
  // No fresh pages to save (a profile without the page's cost): nothing said.
  s.calibration->runtimes[Runtime::kTransformers].fresh_page_us = 0;
  CHECK_THAT(evaluate(s).verdict, !Catch::Contains("MALLOC_MMAP_MAX_"));
}

TEST_CASE("rows under runtimes: each semantics under the runtimes that run it, the verdict names them",
          "[unit][sim][runtime]") {
  SimScenario s = load_sim_scenario(kConfigs + "/scenarios/llama31_8b_fp16_rtx3060.yaml", kConfigs);
  const Evaluation legacy = evaluate(s);
  for (const ResultRow& r : legacy.rows) CHECK(r.runtime.empty());
  s.runtimes = all_runtimes();
  const Evaluation ev = evaluate(s);
  int cpu_rows = 0;
  double cpu_dmap = 0, cpu_transformers = 0;
  for (const ResultRow& r : ev.rows) {
    INFO(r.strategy << " " << r.semantics << " " << r.runtime);
    REQUIRE_FALSE(r.runtime.empty());
    const auto rt = parse_runtime(r.runtime);
    REQUIRE(rt);
    if (r.strategy == "optimal") continue;
    if (r.semantics == "prefetch") CHECK(*rt == Runtime::kDmap);
    if (r.semantics == "accelerate" && has_offload_entry(r.map)) CHECK(*rt != Runtime::kLlamaCpp);
    if (r.semantics == "in-place") CHECK(*rt != Runtime::kTransformers);
    if (r.strategy == "cpu") {
      ++cpu_rows;
      if (*rt == Runtime::kDmap) cpu_dmap = r.pred.decode_token_s;
      if (*rt == Runtime::kTransformers) cpu_transformers = r.pred.decode_token_s;
    }
  }
  CHECK(cpu_rows == 3);
  // transformers' estimated profile: slower products and more overhead per operator than dmap.
  CHECK(cpu_transformers > cpu_dmap * 1.2);
  CHECK_THAT(ev.verdict, Catch::Contains(" under "));
  // The same placement under two runtimes is two rows, not a duplicate of one another.
  for (const ResultRow& r : ev.rows) {
    if (!r.same_as.empty()) {
      bool found = false;
      for (const ResultRow& q : ev.rows) found = found || (q.strategy == r.same_as && q.runtime == r.runtime);
      CHECK(found);
    }
  }
  // Only dmap listed: the legacy rows, each naming dmap.
  s.runtimes = {Runtime::kDmap};
  const Evaluation only = evaluate(s);
  REQUIRE(only.rows.size() == legacy.rows.size());
  for (size_t i = 0; i < only.rows.size(); ++i) {
    CHECK(only.rows[i].runtime == "dmap");
    CHECK(only.rows[i].pred.total_s == Approx(legacy.rows[i].pred.total_s));
  }
}

TEST_CASE("a runtime that cannot compute in the dtype on this CPU: its CPU rows cannot run, others can",
          "[unit][sim][runtime]") {
  SimScenario s = load_sim_scenario(kConfigs + "/scenarios/llama31_8b_fp16_rtx3060.yaml", kConfigs);
  REQUIRE(s.workload.dtype == DType::kFloat16);
  s.runtimes = all_runtimes();
  Calibration cal;
  cal.runtimes[Runtime::kTransformers] = estimated_profile(Runtime::kTransformers);
  cal.runtimes[Runtime::kTransformers].unsupported[DType::kFloat16] = "\"addmm_impl_cpu_\" not implemented for 'Half'";
  s.calibration = cal;
  const Evaluation ev = evaluate(s);
  int refused = 0, gpu_rows = 0;
  for (const ResultRow& r : ev.rows) {
    INFO(r.strategy << " " << r.semantics << " " << r.runtime);
    if (r.strategy == "cpu" && r.runtime == "transformers") {
      ++refused;
      CHECK_FALSE(r.pred.feasible);
      CHECK(r.pred.cannot_run);  // not memory
      CHECK(std::string(fits_label(r.pred)) == "no");
      CHECK_THAT(r.pred.oom, Catch::Contains("transformers cannot compute in float16 on this CPU") &&
                                 Catch::Contains("addmm_impl_cpu_"));
    } else if (r.strategy == "cpu") {
      CHECK(r.pred.feasible);  // dmap and llama.cpp compute float16 on the CPU
    } else if (r.runtime == "transformers" && r.error.empty() &&
               r.pred.oom.find("cannot compute") == std::string::npos) {
      ++gpu_rows;  // its GPU placements still run (the GPU computes)
    }
  }
  CHECK(refused == 1);
  CHECK(gpu_rows > 0);
  // The table lists it under its own heading, not under "out of memory:".
  const std::string table = evaluation_table(s, ev);
  const size_t cannot = table.find("\ncannot run:\n"), why = table.find("transformers cannot compute in float16");
  REQUIRE(cannot != std::string::npos);
  CHECK(why > cannot);
  const size_t oom = table.find("\nout of memory:\n");
  CHECK((oom == std::string::npos || oom < cannot));
  for (const ResultRow& r : ev.rows) {
    if (!r.pred.feasible && !r.pred.cannot_run) CHECK(std::string(fits_label(r.pred)) == "OOM");
  }
  // bfloat16 is not refused.
  s.workload.dtype = DType::kBFloat16;
  for (const ResultRow& r : evaluate(s).rows) {
    if (r.strategy == "cpu") CHECK(r.pred.feasible);
  }
}

TEST_CASE("llama.cpp's command line says --no-mmap where the calibration measured the mapped file slower",
          "[unit][sim][runtime]") {
  SimScenario s = load_sim_scenario(kConfigs + "/scenarios/llama31_8b_fp16_rtx3060.yaml", kConfigs);
  s.runtimes = {Runtime::kLlamaCpp};
  Calibration cal;
  RuntimeProfile p = estimated_profile(Runtime::kLlamaCpp);
  p.mapped_factor = {{DType::kFloat32, 2.27}, {DType::kBFloat16, 1.03}};
  cal.runtimes[Runtime::kLlamaCpp] = p;
  s.calibration = cal;
  const Evaluation mapped = evaluate(s);
  CHECK_THAT(mapped.how_to_run, !Catch::Contains("--no-mmap"));
  cal.runtimes[Runtime::kLlamaCpp].no_mmap = true;
  s.calibration = cal;
  const Evaluation read_in = evaluate(s);
  CHECK_THAT(read_in.how_to_run, Catch::Contains("--no-mmap (this machine's calibration measured the mapped file "
                                                 "decoding 2.3x slower)"));
  // The same prediction: the profile's figures are the load mode's already.
  CHECK(read_in.rows.front().pred.total_s == Approx(mapped.rows.front().pred.total_s));
  // Per dtype: the scenario's float16 mapped as fast -> no advice, whatever the other dtypes';
  // float16 read in -> advised with float16's own factor.
  cal.runtimes[Runtime::kLlamaCpp].load = {{DType::kFloat32, true}, {DType::kFloat16, false}};
  s.calibration = cal;
  CHECK_THAT(evaluate(s).how_to_run, !Catch::Contains("--no-mmap"));
  cal.runtimes[Runtime::kLlamaCpp].load[DType::kFloat16] = true;
  cal.runtimes[Runtime::kLlamaCpp].no_mmap = false;
  cal.runtimes[Runtime::kLlamaCpp].mapped_factor[DType::kFloat16] = 1.4;
  s.calibration = cal;
  CHECK_THAT(evaluate(s).how_to_run, Catch::Contains("decoding 1.4x slower"));
}

TEST_CASE("a scenario's runtimes: parsed in a fixed order; an unknown one names the file and line",
          "[unit][sim][runtime]") {
  namespace fs = std::filesystem;
  const std::string src = kConfigs + "/scenarios/llama31_8b_fp16_rtx3060.yaml";
  std::ifstream in(src);
  std::stringstream text;
  text << in.rdbuf();
  const fs::path dir = fs::temp_directory_path() / ("dmap_rt_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto write = [&](const std::string& extra) {
    const fs::path p = dir / "s.yaml";
    std::ofstream(p) << text.str() << "\n" << extra;
    return p.string();
  };
  const SimScenario s = load_sim_scenario(write("runtimes: [dmap, llama.cpp, transformers]\n"), kConfigs);
  CHECK(s.runtimes == all_runtimes());
  CHECK_THROWS_WITH(load_sim_scenario(write("runtimes: [transformers, vllm]\n"), kConfigs),
                    Catch::Contains("s.yaml") && Catch::Contains("unknown 'vllm'"));
  CHECK_THROWS_WITH(load_sim_scenario(write("runtimes: transformers\n"), kConfigs), Catch::Contains("expected a list"));
  fs::remove_all(dir);
}

TEST_CASE("the verdict compares auto and CPU-only under one runtime", "[unit][sim][runtime]") {
  SimScenario s = load_sim_scenario(kConfigs + "/scenarios/llama31_8b_fp16_rtx3060.yaml", kConfigs);
  s.runtimes = {Runtime::kLlamaCpp, Runtime::kDmap};  // auto's accelerate rows: dmap's alone
  const Evaluation ev = evaluate(s);
  REQUIRE(ev.auto_row >= 0);
  REQUIRE(ev.cpu_row >= 0);
  CHECK(ev.rows[ev.auto_row].runtime == "dmap");
  CHECK(ev.rows[ev.cpu_row].runtime == "dmap");
  CHECK(ev.rows[ev.cpu_row].strategy == "cpu");
  CHECK_THAT(ev.verdict, !Catch::Contains("CPU-only under llama.cpp"));
}
