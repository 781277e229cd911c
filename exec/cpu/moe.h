// A sparse mixture-of-experts block on the CPU, as transformers v5 runs qwen3_moe's and mixtral's
// (the router, then the default grouped_mm experts): the reference both the CPU executor
// (exec/cpu_model.h) and the emulated device (exec/device/host_ops.h) run, and the one the CUDA
// kernels follow (exec/cuda/kernels.h: moe_route, moe_experts).
//
// Data flow (M tokens of width H, E experts of intermediate size I, top k = K, R = M * K rows):
//   logits (M x E, the router's product rounded to the activation dtype)
//     --moe_route--> pick, weight (M x K: expert ids; routing weights, renormalised, rounded)
//     --moe_dispatch--> the (token, rank) rows grouped by expert, x gathered in that order
//     --moe_gate_up--> per expert: [gate | up] = x W_gu[e]^T (rounded), act = r(r(silu(gate)) * up)
//     --moe_down--> per expert: y = act W_down[e]^T (rounded)
//     --moe_combine--> out[m] = r(sum_k (y[m, k] * w[m, k])), products rounded unless the weights
//                      are float32 (mixtral), sums in float32 in rank order
//
// Example:
//   moe_route(logits, M, E, K, /*norm_topk=*/true, /*fp32_weights=*/false, DType::kBFloat16, pick, w);
//   MoeScratch s;
//   moe_experts(x, M, H, I, E, K, pick, w, false, gate_up, down, DType::kBFloat16, 2, s, out);
#pragma once

#include <cstdint>
#include <vector>

#include "exec/cpu/kernels.h"

namespace dmap::exec::cpu {

// Top k of softmax(logits) per row (float32; descending, ties to the lower expert), their
// probabilities renormalised over the k when `norm_topk`, then rounded to `act` unless
// `fp32_weights`. Writes pick and weight (M x K); counts (E, optional) += tokens per expert.
void moe_route(const float* logits, int64_t M, int64_t E, int64_t K, bool norm_topk, bool fp32_weights, DType act,
               int32_t* pick, float* weight, int64_t* counts = nullptr);

// Work buffers of one block, reused across calls.
struct MoeScratch {
  std::vector<int64_t> start;  // E + 1: expert e's rows are [start[e], start[e + 1])
  std::vector<int64_t> rows;   // R: the (token * K + rank) row in each grouped position
  std::vector<int64_t> slot;   // R: the grouped position of each (token * K + rank) row (moe_combine)
  std::vector<float> x, gu, act, up, y;
  // Sizes every buffer for R routed rows of E experts (hidden H, expert width I), zero-filled:
  // the pages are touched here rather than in the first forward.
  void reserve(int64_t R, int64_t E, int64_t H, int64_t I);
};

// Groups the R = M * K rows by expert and gathers x (M x H) in that order; returns the number of
// distinct experts touched.
int64_t moe_dispatch(const float* x, int64_t M, int64_t H, int64_t E, int64_t K, const int32_t* pick, MoeScratch& s);
// gate_up: E x 2I x H (rows [gate | up] of each expert); leaves act (R x I) in s.act.
void moe_gate_up(const Weight& gate_up, int64_t E, int64_t I, DType act, int threads, MoeScratch& s);
// down: E x H x I; leaves y (R x H) in s.y.
void moe_down(const Weight& down, int64_t E, int64_t H, DType act, int threads, MoeScratch& s);
// out (M x H) = the weighted sum of each token's K rows of s.y, rounded to `act`; the tokens split
// over up to `threads` threads.
void moe_combine(const float* weight, int64_t M, int64_t H, int64_t K, bool fp32_weights, DType act, MoeScratch& s,
                 float* out, int threads = 1);

// The four above in order; returns the experts touched.
int64_t moe_experts(const float* x, int64_t M, int64_t H, int64_t I, int64_t E, int64_t K, const int32_t* pick,
                    const float* weight, bool fp32_weights, const Weight& gate_up, const Weight& down, DType act,
                    int threads, MoeScratch& s, float* out);

}  // namespace dmap::exec::cpu
