// The CUDA backend's operators, callable from plain C++: matrix products through cuBLAS
// (cublasGemmEx, float32 compute type, no TF32; cuBLAS's default math, which like PyTorch's
// default may reduce split-K partial sums in 16 bits), and dmap's own kernels for the rest of a Llama-family
// layer. Activations and weights share the model's dtype (float32, float16 or bfloat16); every
// kernel computes in float32 and rounds where PyTorch's eager forward materialises a tensor of
// that dtype — the same rounding points as the CPU backend (exec/model.h), so both backends give
// the same tokens.
//
// Layouts (row-major): activations M x width with M = batch * T; KV cache per layer
// batch x kv_heads x max_seq x head_dim; weights out x in, as transformers stores them.
//
// Example:
//   cuda::gemm(blas, DType::kBFloat16, x, M, hidden, W, out_features, y, /*accumulate=*/false);
//   cuda::rmsnorm(DType::kBFloat16, x, gain, M, hidden, 1e-5f, Norm::kLlama, y, stream);
#pragma once

#include <cstddef>
#include <cstdint>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "exec/exec_dtype.h"

namespace dmap::exec::cuda {

// y (M x N) = x (M x K) W^T (W: N x K), plus the old y when `accumulate` (a bias broadcast into y
// first: one rounding, as torch's addmm). On the handle's stream.
void gemm(cublasHandle_t blas, DType t, const void* x, int64_t M, int64_t K, const void* W, int64_t N, void* y,
          bool accumulate);

// out[r] = table[ids[r]] * scale (gemma's sqrt(hidden), rounded to the dtype; 1 otherwise).
void embed(DType t, const void* table, const int32_t* ids, int64_t M, int64_t H, float scale, void* out,
           cudaStream_t s);
// How an RMSNorm applies its gain: llama round(w * round(x * r)); mul-first round(x * r * w)
// (olmo2); gemma round(x * r * (1 + w)).
enum class Norm { kLlama = 0, kMulFirst = 1, kGemma = 2 };
// RMSNorm per row.
void rmsnorm(DType t, const void* x, const void* w, int64_t M, int64_t H, float eps, Norm mode, void* y,
             cudaStream_t s);
// y[m][n] = b[n]: a bias laid down before an accumulating gemm.
void broadcast_rows(DType t, const void* b, int64_t M, int64_t N, void* y, cudaStream_t s);
// Rotary embedding (rotate_half pairs (i, i + rotary/2) of each head's first `rotary` channels) of
// q (M x heads*d) and k (M x kv*d) in place; row r uses row r % T of the cos / sin tables
// (T x rotary/2 float32 on the device); `fp32` (olmo2): float32 terms, the sum rounded once.
void rope(DType t, void* q, void* k, int64_t M, int64_t T, int64_t heads, int64_t kv_heads, int64_t d, int64_t rotary,
          const float* cos, const float* sin, bool fp32, cudaStream_t s);
// x = round(round(tanh(round(x / cap))) * cap): gemma2's logit soft-capping.
void softcap(DType t, void* x, int64_t n, float cap, cudaStream_t s);
// g = round(round(act(g)) * u), act = SiLU, or GELU (tanh) for gemma.
void gated_act(DType t, void* g, const void* u, int64_t n, bool gelu, cudaStream_t s);
// x = round(x + h).
void add_residual(DType t, void* x, const void* h, int64_t n, cudaStream_t s);
// Appends this forward's keys and values (M x kv*d) to the cache at positions start..start+T-1.
void kv_store(DType t, const void* k, const void* v, void* kc, void* vc, int64_t B, int64_t T, int64_t KV, int64_t d,
              int64_t S, int64_t start, cudaStream_t s);
// Causal (optionally sliding-window) attention of q (M x H*d) over the cache -> out (M x H*d):
// scores round(round(q.k) * scale), soft-capped when softcap > 0 (round(round(tanh(round(s /
// cap))) * cap)), float32 softmax, probabilities rounded, float32 sums. One block per (query
// row, head); the scores of a row live in shared memory, so the context is limited by the
// device's shared memory per block (attention_max_context), and T and B by the grid (65535
// each: RuntimeFailure beyond).
void attention(DType t, const void* q, const void* kc, const void* vc, void* out, int64_t B, int64_t T, int64_t H,
               int64_t KV, int64_t d, int64_t S, int64_t start, int64_t window, float scale, float softcap,
               cudaStream_t s);
// Longest context attention() handles on `device` for head size d (opts the kernel in to the
// device's largest shared memory per block).
int64_t attention_max_context(int device, int64_t d);
// A sparse MoE block's router (exec/cpu/moe.h: moe_route): per row of logits (M x E) the top k
// experts of the float32 softmax (descending, ties to the lower expert) -> pick (M x K int32) and
// weight (M x K float32: renormalised over the k when norm_topk, rounded to t unless
// fp32_weights); counts (E int32) are set to the rows routed to each expert. One thread per row;
// K <= 32 (RuntimeFailure beyond).
void moe_route(DType t, const void* logits, int64_t M, int64_t E, int64_t K, bool norm_topk, bool fp32_weights,
               int32_t* pick, float* weight, int32_t* counts, cudaStream_t s);
// Its routed experts (exec/cpu/moe.h: moe_gate_up, moe_down, moe_combine): per (token, rank) row
// [gate | up] = r(x W_gu[e]^T), act = r(r(silu(gate)) * up), y = r(act W_down[e]^T), then out[m] =
// r(sum_k y * w) (each product rounded unless fp32_weights). gate_up: E x 2I x H, down: E x H x I;
// work: moe_work_bytes(M, K, H, I) on the device. A warp per output element reads only the
// experts the rows picked — plain dot products, not a grouped GEMM: right for decode, slow for
// long prefills.
void moe_experts(DType t, const void* x, int64_t M, int64_t H, int64_t I, int64_t K, const int32_t* pick,
                 const float* weight, bool fp32_weights, const void* gate_up, const void* down, void* work, void* out,
                 cudaStream_t s);
// Conversions for logits and the CPU backend's float32 activations.
void to_float(DType t, const void* x, float* y, int64_t n, cudaStream_t s);
void from_float(DType t, const float* x, void* y, int64_t n, cudaStream_t s);

}  // namespace dmap::exec::cuda
