// CPU kernels against a double-precision reference, for every instruction set this machine has,
// every weight type, odd shapes (vector tails, M and N not multiples of 4) and 1-2 threads.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "exec/cpu/kernels.h"
#include "exec/cpu/two_ended.h"

using namespace dmap::exec::cpu;
using dmap::DType;

namespace {

struct Case {
  int64_t M, K, N;
};

double max_rel_err(const std::vector<float>& got, const std::vector<double>& want) {
  double scale = 0, err = 0;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < got.size(); ++i) err = std::max(err, std::fabs(got[i] - want[i]));
  return scale > 0 ? err / scale : err;
}

}  // namespace

TEST_CASE("element conversions round to nearest even and keep specials", "[unit][exec][kernels]") {
  CHECK(bf16_to_f32(f32_to_bf16(1.0f)) == 1.0f);
  CHECK(f32_to_bf16(1.0f + 1.0f / 256) == f32_to_bf16(1.0f));              // tie -> even (down)
  CHECK(f32_to_bf16(1.0f + 3.0f / 256) == f32_to_bf16(1.0f + 1.0f / 64));  // tie -> even (up)
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  CHECK(f16_to_f32(f32_to_f16(1.0f)) == 1.0f);
  CHECK(f16_to_f32(f32_to_f16(65504.0f)) == 65504.0f);
  CHECK(std::isinf(f16_to_f32(f32_to_f16(70000.0f))));
  CHECK(f16_to_f32(f32_to_f16(5.960464477539063e-08f)) == 5.960464477539063e-08f);  // smallest subnormal
  CHECK(f16_to_f32(f32_to_f16(-0.333251953125f)) == -0.333251953125f);              // exact in half
  CHECK(std::isnan(f16_to_f32(f32_to_f16(NAN))));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1000, 1000);
  for (int i = 0; i < 10000; ++i) {
    const float v = u(rng);
    CHECK(std::fabs(bf16_to_f32(f32_to_bf16(v)) - v) <= std::fabs(v) / 256);
    CHECK(std::fabs(f16_to_f32(f32_to_f16(v)) - v) <= std::fabs(v) / 2048 + 1e-7f);
  }
}

TEST_CASE("linear matches a double-precision reference on every instruction set", "[unit][exec][kernels]") {
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0, 1);
  const std::vector<Case> cases = {
      {1, 1, 1},     {1, 7, 5},    {3, 16, 4},     {4, 17, 9},     {5, 33, 7},  {17, 100, 13},
      {2, 256, 64},  {9, 1000, 3}, {16, 40, 7},    {37, 129, 13},  {70, 64, 6}, {48, 64, 32},
      {37, 96, 64},  {16, 32, 32}, {20, 2500, 11}, {33, 2112, 32},  // the last two: K in chunks (GEMM)
      {1, 64, 1001}, {3, 48, 517},                                  // many two-ended chunks, a ragged last one
      {1, 1000, 37}, {1, 4100, 9},                                  // one row of x: short rows alone, long in blocks
      {1, 8200, 5},  {7, 64, 9},   {11, 70, 5},                     // three rows left over: run as four, three stored
      {23, 96, 10},  {31, 40, 6}};                                  // AVX-512: row blocks below 32 rows; AVX2: GEMM
  std::vector<Isa> isas = {Isa::kScalar};
  // Every path this CPU has, whatever DMAP_ISA caps the rest of the run to.
  if (static_cast<int>(detected_isa()) >= static_cast<int>(Isa::kAvx2)) isas.push_back(Isa::kAvx2);
  if (static_cast<int>(detected_isa()) >= static_cast<int>(Isa::kAvx512)) isas.push_back(Isa::kAvx512);
  if (detected_isa() == Isa::kAmx) isas.push_back(Isa::kAmx);
  INFO("best ISA: " << isa_name(best_isa()) << ", detected: " << isa_name(detected_isa()));
  for (const Case& c : cases) {
    std::vector<float> x(c.M * c.K), wf(c.N * c.K), bias(c.N);
    for (auto& v : x) v = nd(rng);
    for (auto& v : wf) v = nd(rng);
    for (auto& v : bias) v = nd(rng);
    for (DType t : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
      // The weights as stored, and the exact values they stand for.
      std::vector<uint16_t> w16(wf.size());
      std::vector<double> wexact(wf.size());
      for (size_t i = 0; i < wf.size(); ++i) {
        if (t == DType::kBFloat16) {
          w16[i] = f32_to_bf16(wf[i]);
          wexact[i] = bf16_to_f32(w16[i]);
        } else if (t == DType::kFloat16) {
          w16[i] = f32_to_f16(wf[i]);
          wexact[i] = f16_to_f32(w16[i]);
        } else {
          wexact[i] = wf[i];
        }
      }
      std::vector<double> ref(c.M * c.N);
      for (int64_t m = 0; m < c.M; ++m)
        for (int64_t n = 0; n < c.N; ++n) {
          double s = bias[n];
          for (int64_t k = 0; k < c.K; ++k) s += static_cast<double>(x[m * c.K + k]) * wexact[n * c.K + k];
          ref[m * c.N + n] = s;
        }
      // With bfloat16 weights the executor's activations are bfloat16 values (the AMX path relies on it).
      std::vector<float> xs = x;
      if (t == DType::kBFloat16) {
        for (auto& v : xs) v = bf16_to_f32(f32_to_bf16(v));
        for (int64_t m = 0; m < c.M; ++m)
          for (int64_t n = 0; n < c.N; ++n) {
            double s = bias[n];
            for (int64_t k = 0; k < c.K; ++k) s += static_cast<double>(xs[m * c.K + k]) * wexact[n * c.K + k];
            ref[m * c.N + n] = s;
          }
      }
      const Weight w{t == DType::kFloat32 ? static_cast<const void*>(wf.data()) : w16.data(), t, c.N, c.K};
      for (Isa isa : isas) {
        for (int threads : {1, 2, 3}) {
          std::vector<float> y(c.M * c.N, -999.0f);
          linear_isa(isa, xs.data(), c.M, w, bias.data(), y.data(), threads);
          INFO("isa " << isa_name(isa) << " type " << static_cast<int>(t) << " M" << c.M << " K" << c.K << " N" << c.N
                      << " threads " << threads);
          CHECK(max_rel_err(y, ref) < 1e-5);
        }
      }
      // Without bias.
      std::vector<float> y(c.M * c.N);
      linear(xs.data(), c.M, w, nullptr, y.data(), 2);
      for (int64_t n = 0; n < c.N; ++n) ref[n] -= bias[n];
      std::vector<float> y0(y.begin(), y.begin() + c.N);
      std::vector<double> r0(ref.begin(), ref.begin() + c.N);
      CHECK(max_rel_err(y0, r0) < 1e-5);
    }
  }
}

TEST_CASE("two_ended covers every unit once, whichever thread is faster", "[unit][exec][kernels]") {
  for (bool on : {true, false}) {
    two_ended_on() = on;
    for (int64_t n : {0, 1, 2, 7, 100, 1001})
      for (int64_t chunk : {1, 3, 64, 5000})
        for (int threads : {1, 2, 3})
          for (int rep = 0; rep < 20; ++rep) {
            std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
            for (auto& v : seen) v = 0;
            std::atomic<int> bad{0};
            two_ended(n, chunk, threads, [&](int64_t a, int64_t b) {
              if (a < 0 || b > n || a >= b || (threads > 1 && b - a > chunk)) ++bad;  // one thread: one call
              for (int64_t i = std::max<int64_t>(a, 0); i < std::min(b, n); ++i) ++seen[static_cast<size_t>(i)];
              if (rep % 2) {  // one side slower now and then: the other must take over its chunks
                volatile double s = 0;
                for (int k = 0; k < 2000 * (a % 3); ++k) s = s + k;
              }
            });
            INFO("on " << on << " n " << n << " chunk " << chunk << " threads " << threads);
            CHECK(bad == 0);
            int wrong = 0;
            for (auto& v : seen) wrong += v != 1;
            CHECK(wrong == 0);
          }
  }
  two_ended_on() = true;
  // Chunks of about 512 KiB of weights, at least 8 where there are that many units.
  CHECK(chunk_units(128256, 4096) == 128);
  CHECK(chunk_units(64, 4096) == 8);
  CHECK(chunk_units(5, 4096) == 1);
  CHECK(chunk_units(100000, 1 << 21) == 1);
}

TEST_CASE("DMAP_ISA caps the instruction set and rejects what it does not know", "[unit][exec][kernels]") {
  for (Isa i : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAmx}) {
    REQUIRE(parse_isa(isa_name(i)) == i);
    CHECK(capped_isa(Isa::kAvx512, isa_name(i).c_str()) == (i == Isa::kAmx ? Isa::kAvx512 : i));
  }
  CHECK(parse_isa("amx") == Isa::kAmx);
  CHECK(capped_isa(Isa::kAvx2, "avx512") == Isa::kAvx2);  // a cap never raises
  CHECK(capped_isa(Isa::kAmx, nullptr) == Isa::kAmx);
  CHECK(capped_isa(Isa::kAmx, "") == Isa::kAmx);
  CHECK_THROWS_WITH(capped_isa(Isa::kAvx512, "avx3"), Catch::Contains("DMAP_ISA=avx3") && Catch::Contains("avx2"));
  // The run's own: never above what the CPU has, and the cap's when one is set.
  CHECK(static_cast<int>(best_isa()) <= static_cast<int>(detected_isa()));
  if (const char* env = std::getenv("DMAP_ISA"); env && *env) CHECK(best_isa() == capped_isa(detected_isa(), env));
}

TEST_CASE("vectorised activations match the scalar formulas", "[unit][exec][kernels]") {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> wide(-95.0f, 80.0f), narrow(-8.0f, 8.0f);
  // exp over its range (inputs below -87 clamp there), relative error < 3e-7.
  std::vector<float> p(1003);
  for (auto& v : p) v = wide(rng);
  std::vector<float> q = p;
  const float sum = exp_shifted(q.data(), static_cast<int64_t>(q.size()), 1.5f);
  double want_sum = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double e = std::exp(static_cast<double>(std::min(88.0f, std::max(-87.0f, p[i] - 1.5f))));
    want_sum += e;
    INFO("x " << p[i] - 1.5f << " got " << q[i] << " want " << e);
    CHECK(std::fabs(q[i] - e) <= 3e-7 * e + 1e-44);
  }
  CHECK(std::fabs(sum - want_sum) <= 1e-5 * want_sum);
  // SiLU and GELU(tanh) times u, unrounded and rounded to bfloat16 at transformers' points.
  std::vector<float> g(517), u(517);
  for (auto& v : g) v = narrow(rng);
  for (auto& v : u) v = narrow(rng);
  for (DType rt : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
    INFO("rounded to " << dtype_name(rt));
    const bool round = rt != DType::kFloat32;
    // One step of the 16-bit type, relative: bfloat16 2^-8, float16 2^-11.
    const double step = rt == DType::kFloat16 ? 1.0 / 1024 : 1.0 / 128;
    std::vector<float> a = g, b = g;
    silu_mul(a.data(), u.data(), static_cast<int64_t>(a.size()), rt);
    gelu_tanh_mul(b.data(), u.data(), static_cast<int64_t>(b.size()), rt);
    for (size_t i = 0; i < g.size(); ++i) {
      const double x = g[i];
      const double silu = x / (1.0 + std::exp(-x));
      const double gelu = 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
      // Rounded results may differ by one bfloat16 step where the float32 value sits on a tie.
      // Unrounded: float32 accuracy relative to the inputs' scale (tanh as 1 - 2/(e^2z + 1) loses
      // relative accuracy where GELU is tiny, not absolute accuracy).
      const double scale = std::fabs(x * u[i]);
      const double tol_a = round ? std::fabs(silu * u[i]) * step + 1e-6 : 2e-6 * (scale + 1e-3);
      const double tol_b = round ? std::fabs(gelu * u[i]) * 2 * step + 2e-6 * (scale + 1e-3) : 2e-6 * (scale + 1e-3);
      CHECK(std::fabs(a[i] - silu * u[i]) <= tol_a);
      CHECK(std::fabs(b[i] - gelu * u[i]) <= tol_b);
      CHECK(a[i] == round_to(rt, a[i]));  // a value of the 16-bit type
      CHECK(b[i] == round_to(rt, b[i]));
    }
  }
}

TEST_CASE("16-bit rounding in vectors equals the scalar rounding over the whole float range", "[unit][exec][kernels]") {
  // The vector bodies round to float16 with F16C and to bfloat16 by integer arithmetic; the
  // scalar round_to is the reference: ties, subnormals, overflow to infinity, zeros and
  // infinities, then random bit patterns of every exponent (NaNs apart: any NaN is a NaN).
  std::vector<float> v = {0.0f,
                          -0.0f,
                          1.0f,
                          1.00048828125f,
                          1.00146484375f,
                          65504.0f,
                          65519.0f,
                          65520.0f,
                          -65520.0f,
                          1e9f,
                          -1e30f,
                          INFINITY,
                          -INFINITY,
                          6.0e-8f,
                          2.98e-8f,
                          2.99e-8f,
                          5.960464477539063e-08f,
                          6.1e-5f,
                          6.097555e-5f,
                          1e-20f,
                          -1e-40f,
                          3.3895314e38f,
                          3.4e38f,
                          0.333333f,
                          -2.5f,
                          1.5e-7f,
                          0.1f,
                          100000.0f};
  std::mt19937 rng(7);
  while (v.size() < 4096) {
    const uint32_t bits = static_cast<uint32_t>(rng());
    float f;
    std::memcpy(&f, &bits, 4);
    if (!std::isnan(f)) v.push_back(f);
  }
  for (DType t : {DType::kBFloat16, DType::kFloat16}) {
    INFO("rounded to " << dtype_name(t));
    std::vector<float> got = v;
    round_n(got.data(), static_cast<int64_t>(got.size()), t);
    for (size_t i = 0; i < v.size(); ++i) {
      INFO("x = " << v[i]);
      const float want = round_to(t, v[i]);
      uint32_t a, b;
      std::memcpy(&a, &got[i], 4);
      std::memcpy(&b, &want, 4);
      REQUIRE(a == b);  // bit-identical: signed zeros, infinities, subnormals
    }
    std::vector<float> nan = {NAN, -NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    round_n(nan.data(), static_cast<int64_t>(nan.size()), t);
    for (float f : nan) CHECK(std::isnan(f));
  }
}

TEST_CASE("vectorised elementwise passes equal their scalar formulas", "[unit][exec][kernels]") {
  // Products, sums and 16-bit rounding are exact operations: the vector body and the scalar
  // tail must give bit-identical results (1003 elements: both run). Only the sum of squares
  // reorders its additions.
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> dist(-3.0f, 3.0f);
  const int64_t n = 1003;
  std::vector<float> x(n), h(n), g(n), cs(n), sn(n);
  for (auto* v : {&x, &h, &g, &cs, &sn})
    for (auto& e : *v) e = dist(rng);
  // float16 rounding by F16C in the vector bodies, by the portable f32_to_f16 in the tails.
  auto r = [](DType round, float v) { return round_to(round, v); };
  for (DType round : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
    INFO("rounded to " << dtype_name(round));
    std::vector<float> a = x;
    add_rounded(a.data(), h.data(), n, round);
    for (int64_t i = 0; i < n; ++i) REQUIRE(a[i] == r(round, x[i] + r(round, h[i])));
    for (bool inside : {false, true}) {
      std::vector<float> y(n);
      rms_scale(x.data(), 0.37f, g.data(), n, inside, round, y.data());
      for (int64_t i = 0; i < n; ++i)
        REQUIRE(y[i] == (inside ? r(round, x[i] * 0.37f * g[i]) : r(round, g[i] * r(round, x[i] * 0.37f))));
    }
    const int64_t half = n / 2;  // odd: a vector body and a tail
    std::vector<float> q = x;
    rope_rotate(q.data(), cs.data(), sn.data(), half, round);
    for (int64_t i = 0; i < half; ++i) {
      REQUIRE(q[i] == r(round, r(round, x[i] * cs[i]) + r(round, -x[i + half] * sn[i])));
      REQUIRE(q[i + half] == r(round, r(round, x[i + half] * cs[i]) + r(round, x[i] * sn[i])));
    }
  }
  for (DType round : {DType::kBFloat16, DType::kFloat16}) {
    std::vector<float> b = x;
    round_n(b.data(), n, round);
    for (int64_t i = 0; i < n; ++i) REQUIRE(b[i] == r(round, x[i]));
  }
  double want = 0;
  for (float v : x) want += static_cast<double>(v) * v;
  CHECK(std::fabs(sum_squares(x.data(), n) - want) <= 1e-6 * want);
}
