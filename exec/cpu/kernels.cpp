// Run-time selection of the kernel instruction set, the portable fallback, and conversions.
#include "exec/cpu/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace dmap::exec::cpu {

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(man), -24);  // zero or subnormal
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u |= sign;
    std::memcpy(&f, &u, 4);
    return f;
  }
  uint32_t u = exp == 31 ? (sign | 0x7f800000u | (man << 13)) : (sign | ((exp + 112) << 23) | (man << 13));
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00;     // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00;    // overflow -> inf (65520 rounds up)
  if (a < 0x38800000u) {                         // subnormal or zero in half
    const float m = std::fabs(v) * 16777216.0f;  // / 2^-24
    const float r = std::nearbyint(m);           // round to nearest even
    return sign | static_cast<uint16_t>(r);
  }
  uint32_t h = ((a >> 13) - (112u << 10));
  const uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return sign | static_cast<uint16_t>(h);
}

namespace scalar {
namespace {
template <class Conv>
void linear_t(const float* x, int64_t M, int64_t K, const uint16_t* w16, const float* w32, int64_t N, const float* bias,
              float* y, int threads, Conv conv) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t m = 0; m < M; ++m) {
      float s = 0;
      for (int64_t k = 0; k < K; ++k) s += x[m * K + k] * (w32 ? w32[n * K + k] : conv(w16[n * K + k]));
      y[m * N + n] = s + (bias ? bias[n] : 0.0f);
    }
  }
}
}  // namespace
void linear(const float* x, int64_t M, const Weight& w, const float* bias, float* y, int threads) {
  if (w.type == DType::kFloat32) {
    linear_t(x, M, w.cols, nullptr, static_cast<const float*>(w.data), w.rows, bias, y, threads, bf16_to_f32);
  } else {
    linear_t(x, M, w.cols, static_cast<const uint16_t*>(w.data), nullptr, w.rows, bias, y, threads,
             w.type == DType::kBFloat16 ? bf16_to_f32 : f16_to_f32);
  }
}
}  // namespace scalar

namespace avx2 {
#include "exec/cpu/kernels_isa.inc"
}
namespace avx512 {
#include "exec/cpu/kernels_isa.inc"
}
namespace avx512bf16 {
void linear(const float* x, int64_t M, const Weight& w, const float* bias, float* y, int threads);
}
namespace {
bool has_avx512bf16() {
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0;
  }();
  return ok;
}
}  // namespace
namespace amx {
bool available();
bool linear_bf16(const float* x, int64_t M, const Weight& w, const float* bias, float* y, int threads);
}  // namespace amx

bool amx_available() { return amx::available(); }

Isa detected_isa() {
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("fma")) {
      return amx::available() ? Isa::kAmx : Isa::kAvx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return Isa::kAvx2;  // F16C comes with AVX2 parts
    return Isa::kScalar;
  }();
  return isa;
}

std::optional<Isa> parse_isa(const std::string& s) {
  for (Isa i : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAmx}) {
    if (s == isa_name(i)) return i;
  }
  if (s == "amx") return Isa::kAmx;
  return std::nullopt;
}

Isa capped_isa(Isa detected, const char* env) {
  if (!env || !*env) return detected;
  const auto cap = parse_isa(env);
  if (!cap) {
    throw InputError("DMAP_ISA=" + std::string(env) + ": not an instruction set (scalar, avx2, avx512 or amx)");
  }
  return static_cast<int>(*cap) < static_cast<int>(detected) ? *cap : detected;
}

Isa best_isa() {
  static const Isa isa = capped_isa(detected_isa(), std::getenv("DMAP_ISA"));
  return isa;
}

std::string isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAmx: return "amx+avx512";
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    case Isa::kScalar: return "scalar";
  }
  return "?";
}

void linear_isa(Isa isa, const float* x, int64_t M, const Weight& w, const float* bias, float* y, int threads) {
  DMAP_CHECK(static_cast<int>(isa) <= static_cast<int>(detected_isa()),
             "instruction set not supported here: " + isa_name(isa));
  DMAP_CHECK(w.rows >= 0 && w.cols >= 0 && M >= 0, "negative matrix size");
  require_exec_dtype(w.type, "linear");
  threads = std::max(1, threads);
  // bfloat16 weights on AVX512_BF16 parts: pairwise bf16 dot products, four rows of x per block
  // of weight rows — below 16 rows with AMX tiles (their packed GEMM wins from there), at every M
  // without them: on the AMD EPYC VM (AVX-512 BF16, no AMX) the float32-converting GEMM lost at
  // every size measured (Qwen2.5-0.5B bfloat16, 2 threads, prefill: 32 tokens 0.235 -> 0.124 s,
  // 64 0.267 -> 0.236, 128 0.457 -> 0.387, 256 0.901 -> 0.840; TinyLlama 64 tokens 0.748 -> 0.503;
  // decode at batch 16 223 -> 79 ms).
  const bool amx = isa == Isa::kAmx;
  if (isa >= Isa::kAvx512 && w.type == DType::kBFloat16 && (!amx || M < 16) && has_avx512bf16()) {
    avx512bf16::linear(x, M, w, bias, y, threads);
    return;
  }
  switch (isa) {
    case Isa::kAmx:
      if (amx::linear_bf16(x, M, w, bias, y, threads)) return;
      avx512::linear(x, M, w, bias, y, threads);
      return;
    case Isa::kAvx512: avx512::linear(x, M, w, bias, y, threads); return;
    case Isa::kAvx2: avx2::linear(x, M, w, bias, y, threads); return;
    case Isa::kScalar: scalar::linear(x, M, w, bias, y, threads); return;
  }
}

void linear(const float* x, int64_t M, const Weight& w, const float* bias, float* y, int threads) {
  linear_isa(best_isa(), x, M, w, bias, y, threads);
}

// The vector instantiation when there is one, else the scalar loop (the same formulas).
#define DMAP_DISPATCH(fn, ...)                               \
  do {                                                       \
    const Isa isa = best_isa();                              \
    if (isa >= Isa::kAvx512) return avx512::fn(__VA_ARGS__); \
    if (isa == Isa::kAvx2) return avx2::fn(__VA_ARGS__);     \
  } while (0)

void silu_mul(float* g, const float* u, int64_t n, DType round) {
  DMAP_DISPATCH(silu_mul, g, u, n, round);
  for (int64_t i = 0; i < n; ++i) {
    const float s = g[i] / (1.0f + std::exp(-g[i]));
    g[i] = round_to(round, round_to(round, s) * u[i]);
  }
}

void gelu_tanh_mul(float* g, const float* u, int64_t n, DType round) {
  DMAP_DISPATCH(gelu_tanh_mul, g, u, n, round);
  for (int64_t i = 0; i < n; ++i) {
    const float a = g[i];
    const float ge = 0.5f * a * (1.0f + std::tanh(0.7978845608028654f * (a + 0.044715f * a * a * a)));
    g[i] = round_to(round, round_to(round, ge) * u[i]);
  }
}

float exp_shifted(float* p, int64_t n, float shift) {
  DMAP_DISPATCH(exp_shifted, p, n, shift);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += (p[i] = std::exp(std::min(88.0f, std::max(-87.0f, p[i] - shift))));
  return sum;
}

void add_rounded(float* x, const float* h, int64_t n, DType round) {
  DMAP_DISPATCH(add_rounded, x, h, n, round);
  for (int64_t i = 0; i < n; ++i) x[i] = round_to(round, x[i] + round_to(round, h[i]));
}

void round_n(float* p, int64_t n, DType round) {
  DMAP_DISPATCH(round_n, p, n, round);
  for (int64_t i = 0; i < n; ++i) p[i] = round_to(round, p[i]);
}

float sum_squares(const float* x, int64_t n) {
  DMAP_DISPATCH(sum_squares, x, n);
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}

void rms_scale(const float* x, float r, const float* g, int64_t n, bool gain_inside, DType round, float* y) {
  DMAP_DISPATCH(rms_scale, x, r, g, n, gain_inside, round, y);
  auto rd = [round](float v) { return round_to(round, v); };
  for (int64_t i = 0; i < n; ++i) y[i] = gain_inside ? rd(x[i] * r * g[i]) : rd(g[i] * rd(x[i] * r));
}

void rope_rotate(float* a, const float* cs, const float* sn, int64_t half, DType round) {
  DMAP_DISPATCH(rope_rotate, a, cs, sn, half, round);
  auto rd = [round](float v) { return round_to(round, v); };
  for (int64_t i = 0; i < half; ++i) {
    const float x1 = a[i], x2 = a[i + half];
    a[i] = rd(rd(x1 * cs[i]) + rd(-x2 * sn[i]));
    a[i + half] = rd(rd(x2 * cs[i]) + rd(x1 * sn[i]));
  }
}
#undef DMAP_DISPATCH

}  // namespace dmap::exec::cpu
