// The device operators of exec/device/runtime.h computed on the host, on memory in the model's
// storage dtype: what the emulated device runs for each launch. Each follows its CUDA kernel
// (exec/cuda/kernels.cu) — float32 arithmetic, the same rounding points — and the matrix
// products are the CPU executor's own kernel (cpu::linear), so a placement on the emulated
// device gives the CPU executor's tokens.
//
// Example:
//   host_ops::rmsnorm(DType::kBFloat16, x, w, M, H, 1e-5f, cpu::NormMode::kLlama, y);
#pragma once

#include <cstdint>

#include "exec/cpu/kernels.h"

namespace dmap::exec::host_ops {

using cpu::load;
using cpu::round_to;
using cpu::store;

void gemm(DType t, const void* x, int64_t M, int64_t K, const void* W, int64_t N, void* y, bool accumulate,
          int threads);
void embed(DType t, const void* table, const int32_t* ids, int64_t M, int64_t H, float scale, void* out);
void rmsnorm(DType t, const void* x, const void* w, int64_t M, int64_t H, float eps, cpu::NormMode mode, void* y);
void broadcast_rows(DType t, const void* b, int64_t M, int64_t N, void* y);
void rope(DType t, void* q, void* k, int64_t M, int64_t T, int64_t heads, int64_t kv_heads, int64_t d, int64_t rotary,
          const float* cos, const float* sin, bool fp32);
void gated_act(DType t, void* g, const void* u, int64_t n, bool gelu);
void add_residual(DType t, void* x, const void* h, int64_t n);
void kv_store(DType t, const void* k, const void* v, void* kc, void* vc, int64_t B, int64_t T, int64_t KV, int64_t d,
              int64_t S, int64_t start);
void attention(DType t, const void* q, const void* kc, const void* vc, void* out, int64_t B, int64_t T, int64_t H,
               int64_t KV, int64_t d, int64_t S, int64_t start, int64_t window, float scale, float softcap);
void softcap(DType t, void* x, int64_t n, float cap);
// The sparse MoE block through exec/cpu/moe.h.
void moe_route(DType t, const void* logits, int64_t M, int64_t E, int64_t K, bool norm_topk, bool fp32_weights,
               int32_t* pick, float* weight, int32_t* counts);
void moe_experts(DType t, const void* x, int64_t M, int64_t H, int64_t I, int64_t E, int64_t K, const int32_t* pick,
                 const float* weight, bool fp32_weights, const void* gate_up, const void* down, void* out, int threads);
void to_float(DType t, const void* x, float* y, int64_t n);

}  // namespace dmap::exec::host_ops
