// The device operators on the host (see host_ops.h): element loops in float32 with the CUDA
// kernels' rounding points, the products through cpu::linear.
#include "exec/device/host_ops.h"

#include "exec/cpu/moe.h"
#include "exec/exec_dtype.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace dmap::exec::host_ops {

namespace {
std::vector<float> to_f32(DType t, const void* p, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = load(t, p, i);
  return v;
}
}  // namespace

void gemm(DType t, const void* x, int64_t M, int64_t K, const void* W, int64_t N, void* y, bool accumulate,
          int threads) {
  const std::vector<float> xf = to_f32(t, x, M * K);
  std::vector<float> yf(static_cast<size_t>(M * N));
  cpu::linear(xf.data(), M, cpu::Weight{W, t, N, K}, nullptr, yf.data(), threads);
  for (int64_t i = 0; i < M * N; ++i) {
    const float v = yf[static_cast<size_t>(i)] + (accumulate ? load(t, y, i) : 0.0f);
    store(t, y, i, v);
  }
}

void embed(DType t, const void* table, const int32_t* ids, int64_t M, int64_t H, float scale, void* out) {
  for (int64_t r = 0; r < M; ++r)
    for (int64_t i = 0; i < H; ++i)
      store(t, out, r * H + i, load(t, table, static_cast<int64_t>(ids[r]) * H + i) * scale);
}

void rmsnorm(DType t, const void* x, const void* w, int64_t M, int64_t H, float eps, cpu::NormMode mode, void* y) {
  std::vector<float> row(static_cast<size_t>(H));
  for (int64_t r = 0; r < M; ++r) {
    float ss = 0;
    for (int64_t i = 0; i < H; ++i) {
      row[static_cast<size_t>(i)] = load(t, x, r * H + i);
      ss += row[static_cast<size_t>(i)] * row[static_cast<size_t>(i)];
    }
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(H) + eps);
    for (int64_t i = 0; i < H; ++i) {
      const float v = row[static_cast<size_t>(i)] * inv, g = load(t, w, i);
      switch (mode) {
        case cpu::NormMode::kLlama: store(t, y, r * H + i, g * round_to(t, v)); break;
        case cpu::NormMode::kMulFirst: store(t, y, r * H + i, v * g); break;
        case cpu::NormMode::kGemma: store(t, y, r * H + i, v * (1.0f + g)); break;
      }
    }
  }
}

void broadcast_rows(DType t, const void* b, int64_t M, int64_t N, void* y) {
  const size_t row = static_cast<size_t>(N) * elt_size(t);
  for (int64_t m = 0; m < M; ++m) std::memcpy(static_cast<uint8_t*>(y) + static_cast<size_t>(m) * row, b, row);
}

void rope(DType t, void* q, void* k, int64_t M, int64_t T, int64_t heads, int64_t kv_heads, int64_t d, int64_t rotary,
          const float* cos, const float* sin, bool fp32) {
  const int64_t half = rotary / 2;
  for (int64_t r = 0; r < M; ++r) {
    const float* cs = cos + (r % T) * half;
    const float* sn = sin + (r % T) * half;
    for (int64_t head = 0; head < heads + kv_heads; ++head) {
      void* a = head < heads ? q : k;
      const int64_t base = head < heads ? (r * heads + head) * d : (r * kv_heads + head - heads) * d;
      for (int64_t i = 0; i < half; ++i) {
        const float x1 = load(t, a, base + i), x2 = load(t, a, base + i + half);
        if (fp32) {
          store(t, a, base + i, x1 * cs[i] + -x2 * sn[i]);
          store(t, a, base + i + half, x2 * cs[i] + x1 * sn[i]);
        } else {
          store(t, a, base + i, round_to(t, x1 * cs[i]) + round_to(t, -x2 * sn[i]));
          store(t, a, base + i + half, round_to(t, x2 * cs[i]) + round_to(t, x1 * sn[i]));
        }
      }
    }
  }
}

void gated_act(DType t, void* g, const void* u, int64_t n, bool gelu) {
  for (int64_t i = 0; i < n; ++i) {
    const float a = load(t, g, i);
    const float act = gelu ? 0.5f * a * (1.0f + std::tanh(0.7978845608028654f * (a + 0.044715f * a * a * a)))
                           : a / (1.0f + std::exp(-a));
    store(t, g, i, round_to(t, act) * load(t, u, i));
  }
}

void add_residual(DType t, void* x, const void* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store(t, x, i, load(t, x, i) + load(t, h, i));
}

void kv_store(DType t, const void* k, const void* v, void* kc, void* vc, int64_t B, int64_t T, int64_t KV, int64_t d,
              int64_t S, int64_t start) {
  const size_t e = elt_size(t);
  const size_t row = static_cast<size_t>(d) * e;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t tt = 0; tt < T; ++tt)
      for (int64_t g = 0; g < KV; ++g) {
        const size_t src = static_cast<size_t>(((b * T + tt) * KV + g) * d) * e;
        const size_t dst = static_cast<size_t>(((b * KV + g) * S + start + tt) * d) * e;
        std::memcpy(static_cast<uint8_t*>(kc) + dst, static_cast<const uint8_t*>(k) + src, row);
        std::memcpy(static_cast<uint8_t*>(vc) + dst, static_cast<const uint8_t*>(v) + src, row);
      }
}

void attention(DType t, const void* q, const void* kc, const void* vc, void* out, int64_t B, int64_t T, int64_t H,
               int64_t KV, int64_t d, int64_t S, int64_t start, int64_t window, float scale, float softcap) {
  const int64_t group = H / KV;
  std::vector<float> qs(static_cast<size_t>(d)), sc(static_cast<size_t>(start + T)), acc(static_cast<size_t>(d));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t tt = 0; tt < T; ++tt)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / group, pos = start + tt;
        const int64_t first = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
        const int64_t n = pos - first + 1;
        const int64_t qbase = ((b * T + tt) * H + h) * d, cbase = (b * KV + g) * S * d;
        for (int64_t i = 0; i < d; ++i) qs[static_cast<size_t>(i)] = load(t, q, qbase + i);
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          float dot = 0;
          for (int64_t i = 0; i < d; ++i) dot += qs[static_cast<size_t>(i)] * load(t, kc, cbase + (first + j) * d + i);
          float v = round_to(t, round_to(t, dot) * scale);
          if (softcap > 0) v = round_to(t, round_to(t, std::tanh(round_to(t, v / softcap))) * softcap);
          sc[static_cast<size_t>(j)] = v;
          mx = std::max(mx, sc[static_cast<size_t>(j)]);
        }
        float sum = 0;
        for (int64_t j = 0; j < n; ++j) sum += (sc[static_cast<size_t>(j)] = std::exp(sc[static_cast<size_t>(j)] - mx));
        for (int64_t j = 0; j < n; ++j) sc[static_cast<size_t>(j)] = round_to(t, sc[static_cast<size_t>(j)] / sum);
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t j = 0; j < n; ++j)
          for (int64_t i = 0; i < d; ++i)
            acc[static_cast<size_t>(i)] += sc[static_cast<size_t>(j)] * load(t, vc, cbase + (first + j) * d + i);
        for (int64_t i = 0; i < d; ++i) store(t, out, qbase + i, acc[static_cast<size_t>(i)]);
      }
}

void softcap(DType t, void* x, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) store(t, x, i, round_to(t, std::tanh(round_to(t, load(t, x, i) / cap))) * cap);
}

void to_float(DType t, const void* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = load(t, x, i);
}

void moe_route(DType t, const void* logits, int64_t M, int64_t E, int64_t K, bool norm_topk, bool fp32_weights,
               int32_t* pick, float* weight, int32_t* counts) {
  const std::vector<float> lg = to_f32(t, logits, M * E);
  std::vector<int64_t> n(static_cast<size_t>(E), 0);
  cpu::moe_route(lg.data(), M, E, K, norm_topk, fp32_weights, t, pick, weight, n.data());
  for (int64_t e = 0; e < E; ++e) counts[e] = static_cast<int32_t>(n[static_cast<size_t>(e)]);
}

void moe_experts(DType t, const void* x, int64_t M, int64_t H, int64_t I, int64_t E, int64_t K, const int32_t* pick,
                 const float* weight, bool fp32_weights, const void* gate_up, const void* down, void* out,
                 int threads) {
  const std::vector<float> xf = to_f32(t, x, M * H);
  std::vector<float> of(static_cast<size_t>(M * H));
  cpu::MoeScratch s;
  cpu::moe_experts(xf.data(), M, H, I, E, K, pick, weight, fp32_weights, cpu::Weight{gate_up, t, E * 2 * I, H},
                   cpu::Weight{down, t, E * H, I}, t, threads, s, of.data());
  for (int64_t i = 0; i < M * H; ++i) store(t, out, i, of[static_cast<size_t>(i)]);
}

}  // namespace dmap::exec::host_ops
