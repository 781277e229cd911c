// The CUDA backend's kernels (see kernels.h for what each computes).
#include "exec/cuda/kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <string>

#include "exec/cuda/runtime.h"

namespace dmap::exec::cuda {

namespace {

__device__ __forceinline__ float tof(float v) { return v; }
__device__ __forceinline__ float tof(__half v) { return __half2float(v); }
__device__ __forceinline__ float tof(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T fromf(float v);
template <>
__device__ __forceinline__ float fromf<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half fromf<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 fromf<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Rounds a float32 to T and back: where PyTorch would hold a tensor of dtype T.
template <class T>
__device__ __forceinline__ float rnd(float v) {
  return tof(fromf<T>(v));
}

// A product and a sum rounded separately (no FMA contraction) where the CPU backend and PyTorch's
// elementwise kernels round between them (norm scaling, RoPE, gating, residuals); reductions
// (sums of squares, dot products, softmax sums) may contract.
__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add(float a, float b) { return __fadd_rn(a, b); }

constexpr int kThreads = 256;

int blocks_for(int64_t n, int threads = kThreads) {
  return static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 1 << 20));
}

struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
  static constexpr float kIdentity = 0.0f;
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
  static constexpr float kIdentity = -INFINITY;
};

template <class Op>
__device__ __forceinline__ float warp_reduce(float v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Block-wide reduction; `red` holds one float per warp. Every thread gets the result.
template <class Op>
__device__ float block_reduce(float v, float* red, Op op) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_reduce(v, op);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  return warp_reduce(lane < warps ? red[lane] : Op::kIdentity, op);
}
__device__ __forceinline__ float warp_sum(float v) { return warp_reduce(v, SumOp{}); }
__device__ float block_sum(float v, float* red) { return block_reduce(v, red, SumOp{}); }
__device__ float block_max(float v, float* red) { return block_reduce(v, red, MaxOp{}); }

template <class T>
__global__ void embed_kernel(const T* table, const int32_t* ids, int64_t H, float scale, bool scaled, T* out) {
  const int64_t r = blockIdx.x;
  const T* src = table + static_cast<int64_t>(ids[r]) * H;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
    out[r * H + i] = scaled ? fromf<T>(mul(tof(src[i]), scale)) : src[i];
  }
}

template <class T>
__global__ void rmsnorm_kernel(const T* x, const T* w, int64_t H, float eps, int mode, T* y) {
  __shared__ float red[32];
  const int64_t r = blockIdx.x;
  const T* xr = x + r * H;
  T* yr = y + r * H;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
    const float v = tof(xr[i]);
    ss += v * v;
  }
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(H) + eps);
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
    const float v = mul(tof(xr[i]), inv);
    if (mode == 2) {  // gemma: (1 + w), multiplied in float32
      yr[i] = fromf<T>(mul(v, add(1.0f, tof(w[i]))));
    } else if (mode == 1) {  // olmo2: w multiplied in float32, then cast
      yr[i] = fromf<T>(mul(v, tof(w[i])));
    } else {  // llama: cast, then times the gain
      yr[i] = fromf<T>(mul(tof(w[i]), rnd<T>(v)));
    }
  }
}

template <class T>
__global__ void broadcast_rows_kernel(const T* b, int64_t M, int64_t N, T* y) {
  const int64_t n = M * N;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = b[i % N];
  }
}

// One block per row; rotate_half pairs (i, i + rotary/2) of each head's first `rotary` channels,
// cos and sin from the forward's tables (row r % T).
template <class T>
__global__ void rope_kernel(T* q, T* k, int64_t T_len, int heads, int kv_heads, int d, int rotary, const float* cos,
                            const float* sin, bool fp32) {
  const int64_t r = blockIdx.x;
  const int half = rotary / 2;
  const float* cs = cos + (r % T_len) * half;
  const float* sn = sin + (r % T_len) * half;
  const int pairs = (heads + kv_heads) * half;
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    const int head = p / half, i = p % half;
    T* a = head < heads ? q + (r * heads + head) * d : k + (r * kv_heads + (head - heads)) * d;
    const float c = cs[i], s = sn[i];
    const float x1 = tof(a[i]), x2 = tof(a[i + half]);
    if (fp32) {  // olmo2: float32 terms, the sum rounded once
      a[i] = fromf<T>(add(mul(x1, c), mul(-x2, s)));
      a[i + half] = fromf<T>(add(mul(x2, c), mul(x1, s)));
    } else {
      a[i] = fromf<T>(add(rnd<T>(mul(x1, c)), rnd<T>(mul(-x2, s))));
      a[i + half] = fromf<T>(add(rnd<T>(mul(x2, c)), rnd<T>(mul(x1, s))));
    }
  }
}

template <class T>
__global__ void gated_act_kernel(T* g, const T* u, int64_t n, bool gelu) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float a = tof(g[i]);
    float act;
    if (gelu) {
      act = 0.5f * a * (1.0f + tanhf(0.7978845608028654f * (a + 0.044715f * a * a * a)));
    } else {
      act = a / (1.0f + expf(-a));
    }
    g[i] = fromf<T>(mul(rnd<T>(act), tof(u[i])));
  }
}

template <class T>
__global__ void add_residual_kernel(T* x, const T* h, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] = fromf<T>(add(tof(x[i]), tof(h[i])));
  }
}

// Soft-capping (gemma2's logits): round(round(tanh(round(x / cap))) * cap).
template <class T>
__global__ void softcap_kernel(T* x, int64_t n, float cap) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] = fromf<T>(mul(rnd<T>(tanhf(rnd<T>(__fdiv_rn(tof(x[i]), cap)))), cap));
  }
}

// grid (T, B); threads over kv_heads * d.
template <class T>
__global__ void kv_store_kernel(const T* k, const T* v, T* kc, T* vc, int64_t T_len, int KV, int d, int64_t S,
                                int64_t start) {
  const int64_t t = blockIdx.x, b = blockIdx.y;
  const int64_t row = b * T_len + t;
  for (int e = threadIdx.x; e < KV * d; e += blockDim.x) {
    const int g = e / d, i = e % d;
    const int64_t dst = ((b * KV + g) * S + start + t) * d + i;
    kc[dst] = k[(row * KV + g) * d + i];
    vc[dst] = v[(row * KV + g) * d + i];
  }
}

constexpr int kAttnThreads = 128;
constexpr int kAttnWarps = kAttnThreads / 32;

// grid (H, T, B). Shared memory: the query row (d floats), the scores of every visible key
// (up to start + T floats) and the reduction slots.
template <class T>
__global__ void __launch_bounds__(kAttnThreads)
    attention_kernel(const T* q, const T* kc, const T* vc, T* out, int64_t T_len, int H, int KV, int d, int64_t S,
                     int64_t start, int64_t window, float scale, float softcap) {
  extern __shared__ float smem[];
  float* qs = smem;
  float* red = smem + d;
  float* sc = red + 32;
  const int h = blockIdx.x;
  const int64_t t = blockIdx.y, b = blockIdx.z;
  const int group = H / KV, g = h / group;
  const int64_t pos = start + t;
  const int64_t first = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
  const int64_t n = pos - first + 1;
  const T* qr = q + ((b * T_len + t) * H + h) * d;
  const T* K = kc + (b * KV + g) * S * d;
  const T* V = vc + (b * KV + g) * S * d;
  for (int i = threadIdx.x; i < d; i += blockDim.x) qs[i] = tof(qr[i]);
  __syncthreads();

  // Scores: one warp per key, four keys in flight per warp.
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t j0 = warp * 4; j0 < n; j0 += kAttnWarps * 4) {
    float dot[4] = {0, 0, 0, 0};
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      if (j0 + u < n) {
        const T* kr = K + (first + j0 + u) * d;
        for (int i = lane; i < d; i += 32) dot[u] += qs[i] * tof(kr[i]);
      }
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const float s = warp_sum(dot[u]);
      if (lane == 0 && j0 + u < n) {
        float v = rnd<T>(mul(rnd<T>(s), scale));
        if (softcap > 0) v = rnd<T>(mul(rnd<T>(tanhf(rnd<T>(__fdiv_rn(v, softcap)))), softcap));
        sc[j0 + u] = v;
      }
    }
  }
  __syncthreads();

  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, sc[j]);
  mx = block_max(mx, red);
  float sum = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const float e = expf(sc[j] - mx);
    sc[j] = e;
    sum += e;
  }
  sum = block_sum(sum, red);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sc[j] = rnd<T>(sc[j] / sum);
  __syncthreads();

  T* o = out + ((b * T_len + t) * H + h) * d;
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    float acc = 0;
    const T* vcol = V + first * d + i;
#pragma unroll 8
    for (int64_t j = 0; j < n; ++j) acc += sc[j] * tof(vcol[j * d]);
    o[i] = fromf<T>(acc);
  }
}

size_t attention_shared(int64_t context, int64_t d) { return sizeof(float) * static_cast<size_t>(d + 32 + context); }

template <class T>
__global__ void to_float_kernel(const T* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = tof(x[i]);
  }
}

template <class T>
__global__ void from_float_kernel(const float* x, T* y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = fromf<T>(x[i]);
  }
}

// ---- mixture of experts ----

constexpr int kMoeMaxK = 32;

// One thread per row: softmax statistics, then K passes picking the most probable expert not yet
// picked (strictly greater: ties go to the lower expert).
template <class T>
__global__ void moe_route_kernel(const T* logits, int64_t M, int E, int K, bool norm_topk, bool fp32_weights,
                                 int32_t* pick, float* weight, int32_t* counts) {
  const int64_t m = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (m >= M) return;
  const T* lg = logits + m * E;
  float mx = -INFINITY;
  for (int e = 0; e < E; ++e) mx = fmaxf(mx, tof(lg[e]));
  float sum = 0;
  for (int e = 0; e < E; ++e) sum += expf(tof(lg[e]) - mx);
  int sel[kMoeMaxK];
  float p[kMoeMaxK];
  float top = 0;
  for (int k = 0; k < K; ++k) {
    int best = -1;
    float bp = -1;
    for (int e = 0; e < E; ++e) {
      bool taken = false;
      for (int j = 0; j < k; ++j) taken |= sel[j] == e;
      if (taken) continue;
      const float pe = expf(tof(lg[e]) - mx) / sum;
      if (pe > bp) {
        bp = pe;
        best = e;
      }
    }
    sel[k] = best;
    p[k] = bp;
    top += bp;
  }
  for (int k = 0; k < K; ++k) {
    const float w = norm_topk ? p[k] / top : p[k];
    pick[m * K + k] = sel[k];
    weight[m * K + k] = fp32_weights ? w : rnd<T>(w);
    atomicAdd(&counts[sel[k]], 1);
  }
}

constexpr int kMoeWarps = 8;

// grid (R, ceil(N / kMoeWarps)): a warp per output n of row r, y[r][n] = r(in[r] . W[e][n]) with
// in row r's input (x[r / K], or act[r] with stride `in_stride`) and e = pick[r].
template <class T, class In>
__global__ void moe_rows_kernel(const In* in, int64_t in_stride, bool by_token, int K, const int32_t* pick, const T* W,
                                int64_t N, int64_t Kdim, float* y, int64_t y_stride) {
  const int64_t r = blockIdx.x;
  const int64_t n = static_cast<int64_t>(blockIdx.y) * kMoeWarps + (threadIdx.x >> 5);
  if (n >= N) return;
  const int lane = threadIdx.x & 31;
  const In* a = in + (by_token ? r / K : r) * in_stride;
  const T* w = W + (static_cast<int64_t>(pick[r]) * N + n) * Kdim;
  float acc = 0;
  for (int64_t i = lane; i < Kdim; i += 32) acc += tof(a[i]) * tof(w[i]);
  acc = warp_sum(acc);
  if (lane == 0) y[r * y_stride + n] = rnd<T>(acc);
}

// act = r(r(silu(gate)) * up), in place over the gate half of each row of gu (R x 2I).
template <class T>
__global__ void moe_act_kernel(float* gu, int64_t R, int64_t I) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < R * I;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / I, j = i % I;
    const float a = gu[r * 2 * I + j];
    gu[r * 2 * I + j] = rnd<T>(mul(rnd<T>(a / (1.0f + expf(-a))), gu[r * 2 * I + I + j]));
  }
}

// out[m][j] = r(sum_k y[m * K + k][j] * w[m * K + k]), products rounded unless fp32_weights.
template <class T>
__global__ void moe_combine_kernel(const float* y, const float* weight, int64_t M, int64_t H, int K, bool fp32_weights,
                                   T* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < M * H;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = i / H, j = i % H;
    float o = 0;
    for (int k = 0; k < K; ++k) {
      const float v = mul(y[(m * K + k) * H + j], weight[m * K + k]);
      o = add(o, fp32_weights ? v : rnd<T>(v));
    }
    out[i] = fromf<T>(o);
  }
}

// Calls fn with a value of the element type of `t` (for template dispatch).
template <class Fn>
void dispatch(DType t, Fn&& fn) {
  switch (t) {
    case DType::kFloat32: fn(float{}); return;
    case DType::kFloat16: fn(__half{}); return;
    case DType::kBFloat16: fn(__nv_bfloat16{}); return;
    default: require_exec_dtype(t, "CUDA kernel");
  }
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::kFloat32: return CUDA_R_32F;
    case DType::kFloat16: return CUDA_R_16F;
    case DType::kBFloat16: return CUDA_R_16BF;
    default: require_exec_dtype(t, "cuBLAS product");
  }
  return CUDA_R_32F;
}

}  // namespace

void gemm(cublasHandle_t blas, DType t, const void* x, int64_t M, int64_t K, const void* W, int64_t N, void* y,
          bool accumulate) {
  // Row-major y = x W^T is column-major y^T (N x M) = W (K x N, transposed) * x^T (K x M).
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  const cudaDataType_t ty = cuda_type(t);
  DMAP_CUBLAS(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                           static_cast<int>(K), &alpha, W, ty, static_cast<int>(K), x, ty, static_cast<int>(K), &beta,
                           y, ty, static_cast<int>(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void embed(DType t, const void* table, const int32_t* ids, int64_t M, int64_t H, float scale, void* out,
           cudaStream_t s) {
  dispatch(t, [&](auto z) {
    using T = decltype(z);
    embed_kernel<T><<<static_cast<unsigned>(M), kThreads, 0, s>>>(static_cast<const T*>(table), ids, H, scale,
                                                                  scale != 1.0f, static_cast<T*>(out));
  });
  DMAP_CUDA_LAUNCHED("embed kernel");
}

void rmsnorm(DType t, const void* x, const void* w, int64_t M, int64_t H, float eps, Norm mode, void* y,
             cudaStream_t s) {
  const int threads = H >= 4096 ? 1024 : H >= 1024 ? 512 : 256;
  dispatch(t, [&](auto z) {
    using T = decltype(z);
    rmsnorm_kernel<T><<<static_cast<unsigned>(M), threads, 0, s>>>(static_cast<const T*>(x), static_cast<const T*>(w),
                                                                   H, eps, static_cast<int>(mode), static_cast<T*>(y));
  });
  DMAP_CUDA_LAUNCHED("rmsnorm kernel");
}

void broadcast_rows(DType t, const void* b, int64_t M, int64_t N, void* y, cudaStream_t s) {
  dispatch(t, [&](auto z) {
    using T = decltype(z);
    broadcast_rows_kernel<T><<<blocks_for(M * N), kThreads, 0, s>>>(static_cast<const T*>(b), M, N, static_cast<T*>(y));
  });
  DMAP_CUDA_LAUNCHED("bias broadcast kernel");
}

void rope(DType t, void* q, void* k, int64_t M, int64_t T_len, int64_t heads, int64_t kv_heads, int64_t d,
          int64_t rotary, const float* cos, const float* sin, bool fp32, cudaStream_t s) {
  dispatch(t, [&](auto z) {
    using T = decltype(z);
    rope_kernel<T><<<static_cast<unsigned>(M), kThreads, 0, s>>>(
        static_cast<T*>(q), static_cast<T*>(k), T_len, static_cast<int>(heads), static_cast<int>(kv_heads),
        static_cast<int>(d), static_cast<int>(rotary), cos, sin, fp32);
  });
  DMAP_CUDA_LAUNCHED("rope kernel");
}

void softcap(DType t, void* x, int64_t n, float cap, cudaStream_t s) {
  dispatch(t, [&](auto z) {
    using T = decltype(z);
    softcap_kernel<T><<<blocks_for(n), kThreads, 0, s>>>(static_cast<T*>(x), n, cap);
  });
  DMAP_CUDA_LAUNCHED("softcap kernel");
}

void gated_act(DType t, void* g, const void* u, int64_t n, bool gelu, cudaStream_t s) {
  dispatch(t, [&](auto z) {
    using T = decltype(z);
    gated_act_kernel<T><<<blocks_for(n), kThreads, 0, s>>>(static_cast<T*>(g), static_cast<const T*>(u), n, gelu);
  });
  DMAP_CUDA_LAUNCHED("gated activation kernel");
}

void add_residual(DType t, void* x, const void* h, int64_t n, cudaStream_t s) {
  dispatch(t, [&](auto z) {
    using T = decltype(z);
    add_residual_kernel<T><<<blocks_for(n), kThreads, 0, s>>>(static_cast<T*>(x), static_cast<const T*>(h), n);
  });
  DMAP_CUDA_LAUNCHED("residual add kernel");
}

void kv_store(DType t, const void* k, const void* v, void* kc, void* vc, int64_t B, int64_t T_len, int64_t KV,
              int64_t d, int64_t S, int64_t start, cudaStream_t s) {
  if (B > 65535) throw RuntimeFailure("KV cache store: batch " + std::to_string(B) + " exceeds the grid (65535)");
  const dim3 grid(static_cast<unsigned>(T_len), static_cast<unsigned>(B));
  dispatch(t, [&](auto z) {
    using T = decltype(z);
    kv_store_kernel<T><<<grid, kThreads, 0, s>>>(static_cast<const T*>(k), static_cast<const T*>(v),
                                                 static_cast<T*>(kc), static_cast<T*>(vc), T_len, static_cast<int>(KV),
                                                 static_cast<int>(d), S, start);
  });
  DMAP_CUDA_LAUNCHED("KV cache store kernel");
}

void attention(DType t, const void* q, const void* kc, const void* vc, void* out, int64_t B, int64_t T_len, int64_t H,
               int64_t KV, int64_t d, int64_t S, int64_t start, int64_t window, float scale, float softcap,
               cudaStream_t s) {
  if (T_len > 65535 || B > 65535) {
    throw RuntimeFailure("attention kernel: " + std::to_string(T_len) + " tokens x batch " + std::to_string(B) +
                         " exceeds its grid (65535 each)");
  }
  const dim3 grid(static_cast<unsigned>(H), static_cast<unsigned>(T_len), static_cast<unsigned>(B));
  const size_t shared = attention_shared(start + T_len, d);
  dispatch(t, [&](auto z) {
    using T = decltype(z);
    attention_kernel<T><<<grid, kAttnThreads, shared, s>>>(
        static_cast<const T*>(q), static_cast<const T*>(kc), static_cast<const T*>(vc), static_cast<T*>(out), T_len,
        static_cast<int>(H), static_cast<int>(KV), static_cast<int>(d), S, start, window, scale, softcap);
  });
  DMAP_CUDA_LAUNCHED("attention kernel");
}

int64_t attention_max_context(int device, int64_t d) {
  use_device(device);
  int optin = 0;
  DMAP_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  for (auto fn : {reinterpret_cast<const void*>(&attention_kernel<float>),
                  reinterpret_cast<const void*>(&attention_kernel<__half>),
                  reinterpret_cast<const void*>(&attention_kernel<__nv_bfloat16>)}) {
    DMAP_CUDA(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, optin));
  }
  return static_cast<int64_t>(optin / sizeof(float)) - d - 32;
}

void moe_route(DType t, const void* logits, int64_t M, int64_t E, int64_t K, bool norm_topk, bool fp32_weights,
               int32_t* pick, float* weight, int32_t* counts, cudaStream_t s) {
  if (K > kMoeMaxK || K > E)
    throw RuntimeFailure("MoE router: top " + std::to_string(K) + " of " + std::to_string(E) +
                         " experts exceeds the kernel's limit (" + std::to_string(kMoeMaxK) + ")");
  DMAP_CUDA(cudaMemsetAsync(counts, 0, static_cast<size_t>(E) * sizeof(int32_t), s));
  dispatch(t, [&](auto z) {
    using T = decltype(z);
    moe_route_kernel<T><<<blocks_for(M, 128), 128, 0, s>>>(static_cast<const T*>(logits), M, static_cast<int>(E),
                                                           static_cast<int>(K), norm_topk, fp32_weights, pick, weight,
                                                           counts);
  });
  DMAP_CUDA_LAUNCHED("MoE router kernel");
}

void moe_experts(DType t, const void* x, int64_t M, int64_t H, int64_t I, int64_t K, const int32_t* pick,
                 const float* weight, bool fp32_weights, const void* gate_up, const void* down, void* work, void* out,
                 cudaStream_t s) {
  const int64_t R = M * K;
  if (R > 0x7fffffff || (2 * I + kMoeWarps - 1) / kMoeWarps > 65535 || (H + kMoeWarps - 1) / kMoeWarps > 65535)
    throw RuntimeFailure("MoE experts kernel: " + std::to_string(R) + " rows exceed its grid");
  float* gu = static_cast<float*>(work);
  float* y = gu + R * 2 * I;
  const unsigned rows = static_cast<unsigned>(R);
  dispatch(t, [&](auto z) {
    using T = decltype(z);
    moe_rows_kernel<T, T>
        <<<dim3(rows, static_cast<unsigned>((2 * I + kMoeWarps - 1) / kMoeWarps)), kMoeWarps * 32, 0, s>>>(
            static_cast<const T*>(x), H, true, static_cast<int>(K), pick, static_cast<const T*>(gate_up), 2 * I, H, gu,
            2 * I);
    moe_act_kernel<T><<<blocks_for(R * I), kThreads, 0, s>>>(gu, R, I);
    moe_rows_kernel<T, float>
        <<<dim3(rows, static_cast<unsigned>((H + kMoeWarps - 1) / kMoeWarps)), kMoeWarps * 32, 0, s>>>(
            gu, 2 * I, false, static_cast<int>(K), pick, static_cast<const T*>(down), H, I, y, H);
    moe_combine_kernel<T><<<blocks_for(M * H), kThreads, 0, s>>>(y, weight, M, H, static_cast<int>(K), fp32_weights,
                                                                 static_cast<T*>(out));
  });
  DMAP_CUDA_LAUNCHED("MoE experts kernels");
}

void to_float(DType t, const void* x, float* y, int64_t n, cudaStream_t s) {
  dispatch(t, [&](auto z) {
    using T = decltype(z);
    to_float_kernel<T><<<blocks_for(n), kThreads, 0, s>>>(static_cast<const T*>(x), y, n);
  });
  DMAP_CUDA_LAUNCHED("to-float kernel");
}

void from_float(DType t, const float* x, void* y, int64_t n, cudaStream_t s) {
  dispatch(t, [&](auto z) {
    using T = decltype(z);
    from_float_kernel<T><<<blocks_for(n), kThreads, 0, s>>>(x, static_cast<T*>(y), n);
  });
  DMAP_CUDA_LAUNCHED("from-float kernel");
}

}  // namespace dmap::exec::cuda
