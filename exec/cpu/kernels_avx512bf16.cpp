// Products for bfloat16 weights with AVX512_BF16 (decode; and every M where there is no AMX) (vdpbf16ps: 32
// multiply-adds of bf16 pairs into 16 float32 lanes per instruction). x is converted to bfloat16 once per call, which
// is exact for the executor (its activations are bfloat16 values when the weights are bfloat16). One 64-byte load per
// weight row per step and no conversions: the weight stream runs at the memory's pace (compiled with -mavx512f
// -mavx512bw -mavx512bf16).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "exec/cpu/kernels.h"
#include "exec/cpu/two_ended.h"

namespace dmap::exec::cpu::avx512bf16 {

namespace {

// MB rows of x by NB rows of W; only the first `rows` (<= MB) rows of x are real: the others
// repeat the last real row and are not stored (three rows run as four: see block()).
template <int MB, int NB>
inline void micro(const uint16_t* xb, int64_t K, const uint16_t* w, int64_t n0, float* y, int64_t N, const float* bias,
                  int rows = MB) {
  __m512 acc[MB][NB];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_ps();
  const uint16_t* xr[MB];
  for (int i = 0; i < MB; ++i) xr[i] = xb + std::min(i, rows - 1) * K;
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512bh wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = (__m512bh)_mm512_loadu_si512(w + (n0 + j) * K + k);
    for (int i = 0; i < MB; ++i) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(xr[i] + k);
      for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
    }
  }
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB && i < rows; ++j) {
      float s = _mm512_reduce_add_ps(acc[i][j]);
      for (int64_t t = k; t < K; ++t) s += bf16_to_f32(xb[i * K + t]) * bf16_to_f32(w[(n0 + j) * K + t]);
      y[i * N + n0 + j] = s + (bias ? bias[n0 + j] : 0.0f);
    }
}

template <int NB>
inline void block(const uint16_t* xb, int64_t M, int64_t K, const uint16_t* w, int64_t n0, float* y, int64_t N,
                  const float* bias) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) micro<4, NB>(xb + m * K, K, w, n0, y + m * N, N, bias);
  switch (M - m) {
    case 3: micro<4, NB>(xb + m * K, K, w, n0, y + m * N, N, bias, 3); break;
    case 2: micro<2, NB>(xb + m * K, K, w, n0, y + m * N, N, bias); break;
    case 1: micro<1, NB>(xb + m * K, K, w, n0, y + m * N, N, bias); break;
    default: break;
  }
}

// One row of x and rows of W shorter than kRowK: each W row alone through two accumulators of 32
// pairs (as ggml's vec_dot_bf16). Measured against the 4-row blocks on the AMD EPYC VM (2 threads,
// the same pool of weight copies, 15 rounds alternating, two processes; rows / blocks GB/s):
// K = 896-1024 1.17-1.30, K = 2048 1.04-1.15, K = 4096 0.97-1.03, K = 5632 0.99-1.01, K = 8192
// 0.87-0.92, K = 14336 0.74-0.75 — long rows keep the blocks. Four accumulators: slower than two.
constexpr int64_t kRowK = 4096;

inline float row_dot(const uint16_t* xb, int64_t K, const uint16_t* w) {
  __m512 c1 = _mm512_setzero_ps(), c2 = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) {
    c1 = _mm512_dpbf16_ps(c1, (__m512bh)_mm512_loadu_si512(xb + k), (__m512bh)_mm512_loadu_si512(w + k));
    c2 = _mm512_dpbf16_ps(c2, (__m512bh)_mm512_loadu_si512(xb + k + 32), (__m512bh)_mm512_loadu_si512(w + k + 32));
  }
  for (; k + 32 <= K; k += 32)
    c1 = _mm512_dpbf16_ps(c1, (__m512bh)_mm512_loadu_si512(xb + k), (__m512bh)_mm512_loadu_si512(w + k));
  float s = _mm512_reduce_add_ps(_mm512_add_ps(c1, c2));
  for (; k < K; ++k) s += bf16_to_f32(xb[k]) * bf16_to_f32(w[k]);
  return s;
}

}  // namespace

void linear(const float* x, int64_t M, const Weight& w, const float* bias, float* y, int threads) {
  const int64_t K = w.cols, N = w.rows;
  static thread_local std::vector<uint16_t> xb;
  if (xb.size() < static_cast<size_t>(M * K)) xb.resize(static_cast<size_t>(M * K));
  for (int64_t i = 0; i < M * K; ++i) xb[i] = f32_to_bf16(x[i]);
  const uint16_t* xp = xb.data();
  const auto* wd = static_cast<const uint16_t*>(w.data);
  if (M == 1 && K < kRowK) {
    two_ended(N, chunk_units(N, K * 2), threads, [&](int64_t r0, int64_t r1) {
      for (int64_t n = r0; n < r1; ++n) y[n] = row_dot(xp, K, wd + n * K) + (bias ? bias[n] : 0.0f);
    });
    return;
  }
  const int64_t blocks = (N + 3) / 4;
  // Chunks of about 512 KiB of weights, split two-ended (exec/cpu/two_ended.h).
  const int64_t chunk = chunk_units(blocks, 4 * K * 2);
  two_ended(blocks, chunk, threads, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n0 = b * 4;
      switch (std::min<int64_t>(4, N - n0)) {
        case 4: block<4>(xp, M, K, wd, n0, y, N, bias); break;
        case 3: block<3>(xp, M, K, wd, n0, y, N, bias); break;
        case 2: block<2>(xp, M, K, wd, n0, y, N, bias); break;
        default: block<1>(xp, M, K, wd, n0, y, N, bias); break;
      }
    }
  });
}

}  // namespace dmap::exec::cpu::avx512bf16
