// CPU kernels of the executor. The matrix product y = x W^T (+ b) is the hot loop: W is a
// weight in PyTorch's Linear layout [N, K], stored as float32, float16 or bfloat16 (possibly a
// memory-mapped safetensors tensor) and converted to float32 in registers; x and y are float32.
// Decode (M = batch rows) streams W once and is memory-bound; prefill (M = tokens) reuses each
// 4-row block of W from L1 across every 4-row block of x, so it is compute-bound.
//
// The instruction set is chosen at run time: AVX-512 (F + BW) with F16C — plus AMX tiles for
// bfloat16 prefill when the CPU and kernel grant them — else AVX2 + FMA + F16C, else portable
// C++. Rows of W are split across OpenMP threads: with two, two-ended (exec/cpu/two_ended.h).
//
// Example:
//   Weight w{ptr, DType::kBFloat16, 14336, 4096};
//   linear(x, /*M=*/1, w, /*bias=*/nullptr, y, /*threads=*/2);
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "exec/exec_dtype.h"

namespace dmap::exec::cpu {

// Weights are float32, float16 or bfloat16 (exec/exec_dtype.h); linear() throws on another type.
// kAmx: AVX-512 plus AMX tiles for bfloat16 prefill products (x rounded to bfloat16 there).
enum class Isa { kScalar, kAvx2, kAvx512, kAmx };

struct Weight {
  const void* data = nullptr;
  DType type = DType::kFloat32;
  int64_t rows = 0;  // N (output features)
  int64_t cols = 0;  // K (input features)
};

// The best instruction set this CPU supports (and the build contains), capped by the environment
// variable DMAP_ISA (scalar, avx2, avx512 or amx) when set: an AVX-512 machine then runs, profiles
// and calibrates the AVX2 kernels as an AVX2-only CPU would. An unknown value is an InputError.
Isa best_isa();
// The best instruction set of this CPU and build, ignoring DMAP_ISA.
Isa detected_isa();
std::string isa_name(Isa isa);
// "scalar", "avx2", "avx512" or "amx" (isa_name's "amx+avx512" too); nullopt otherwise.
std::optional<Isa> parse_isa(const std::string& s);
// min(detected, the cap `env` names); `env` null or empty: detected. Throws InputError naming
// DMAP_ISA for an unknown value.
Isa capped_isa(Isa detected, const char* env);

// y[M, N] = x[M, K] * W[N, K]^T (+ bias[N]), row-major, leading dimensions K and N.
void linear(const float* x, int64_t M, const Weight& w, const float* bias, float* y, int threads);
// The same with a forced instruction set (tests compare them); `isa` must be supported.
void linear_isa(Isa isa, const float* x, int64_t M, const Weight& w, const float* bias, float* y, int threads);

// Element conversions (inline: elementwise loops over activations vectorise through them).
inline float bf16_to_f32(uint16_t v) {
  const uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
// float32 -> nearest bfloat16 value, as float32.
inline float round_bf16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return v;
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
float f16_to_f32(uint16_t v);

// Elementwise activations (vectorised; `round` the 16-bit type whose rounding points transformers
// computes at — bfloat16 or float16 — or float32 for none): g = act(g) * u with act = SiLU or GELU
// (tanh approximation); exp via a polynomial (< 2e-7 relative error, tested against std::exp).
void silu_mul(float* g, const float* u, int64_t n, DType round);
void gelu_tanh_mul(float* g, const float* u, int64_t n, DType round);
// p[i] = exp(p[i] - shift) (arguments clamped to [-87, 88]: below, e^-87 ~ 1.6e-38 instead of
// a subnormal); returns the sum.
float exp_shifted(float* p, int64_t n, float shift);
uint16_t f32_to_f16(float v);  // round to nearest even

// The element types as storage: element i of a buffer of type t as float32; a float32 stored as t
// (round to nearest even); v rounded to t and back (what a 16-bit tensor holds).
inline float load(DType t, const void* p, int64_t i) {
  switch (t) {
    case DType::kFloat32: return static_cast<const float*>(p)[i];
    case DType::kFloat16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kBFloat16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default: break;  // not an executor type: callers check (require_exec_dtype) before
  }
  return 0;
}
inline void store(DType t, void* p, int64_t i, float v) {
  switch (t) {
    case DType::kFloat32: static_cast<float*>(p)[i] = v; return;
    case DType::kFloat16: static_cast<uint16_t*>(p)[i] = f32_to_f16(v); return;
    case DType::kBFloat16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(v); return;
    default: return;  // not an executor type: callers check (require_exec_dtype) before
  }
}
inline float round_to(DType t, float v) {
  if (t == DType::kBFloat16) return round_bf16(v);
  if (t == DType::kFloat16) return f16_to_f32(f32_to_f16(v));
  return v;
}

// The elementwise passes of the forward pass (vectorised; r() rounds to `round`: bfloat16 or
// float16 — with F16C, round to nearest even as round_to — or float32, no rounding).
void add_rounded(float* x, const float* h, int64_t n, DType round);  // x = r(x + r(h))
void round_n(float* p, int64_t n, DType round);                      // p = r(p)
float sum_squares(const float* x, int64_t n);                        // float32 lanes
// How an RMSNorm applies its gain w (r = 1/rms): kLlama round(w * round(x r)); kMulFirst
// round(x r w) (olmo2); kGemma round(x r (1 + w)) (gemma's offset gain).
enum class NormMode { kLlama, kMulFirst, kGemma };
// RMSNorm's scaling by r = 1/rms: y = r(x r g) (gain_inside, gemma) or y = r(g r(x r)).
void rms_scale(const float* x, float r, const float* g, int64_t n, bool gain_inside, DType round, float* y);
// RoPE on one head (rotate_half pairs i, i + half): a = r(r(a cos) + r(-b sin)), b = r(r(b cos) + r(a sin)).
void rope_rotate(float* a, const float* cos, const float* sin, int64_t half, DType round);

}  // namespace dmap::exec::cpu
