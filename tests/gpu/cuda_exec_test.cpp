// The CUDA backend against the CPU backend (runs only where a CUDA device is; exits 77 elsewhere).
//   ops: every kernel and the cuBLAS products on random inputs in float32, float16 and
//        bfloat16, normalised error ||gpu - cpu|| / ||cpu|| under a per-dtype bound;
//   models: the tests/data checkpoints (every dense family; float32 and bfloat16) all on
//        one GPU, and llama under accelerate / prefetch / in-place with cpu and disk layers,
//        and across two GPUs when there are two: logits against CpuModel and the same tokens.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <random>

#include <unistd.h>

#include "core/model_spec.h"
#include "exec/cuda/cuda_model.h"
#include "exec/cuda/kernels.h"
#include "exec/cuda/runtime.h"
#include "exec/model.h"
#include "tests/exec/executor_fixtures.h"

using namespace dmap;
using namespace dmap::exec;
namespace fs = std::filesystem;
namespace cu = dmap::exec::cuda;
using namespace dmap::exec::testing;

namespace {

cpu::WType wtype(cu::DT t) {
  return t == cu::DT::kF32 ? cpu::WType::kF32 : t == cu::DT::kF16 ? cpu::WType::kF16 : cpu::WType::kBF16;
}

float round_to(cu::DT t, float v) {
  if (t == cu::DT::kBF16) return cpu::round_bf16(v);
  if (t == cu::DT::kF16) return cpu::f16_to_f32(cpu::f32_to_f16(v));
  return v;
}

// Normalised error bound per dtype: a few units of the format's rounding.
double tolerance(cu::DT t) { return t == cu::DT::kF32 ? 2e-5 : t == cu::DT::kF16 ? 3e-3 : 2e-2; }

// Host values in the dtype, uploaded to the device; read back as float32.
struct DevTensor {
  cu::DT t;
  int64_t n;
  cu::DeviceBuffer buf;
  DevTensor(cu::DT type, const std::vector<float>& v);
  std::vector<float> get() const {
    cu::DeviceBuffer f(0, static_cast<size_t>(n) * 4, "test");
    cu::to_float(t, buf.data(), f.as<float>(), n, nullptr);
    std::vector<float> out(static_cast<size_t>(n));
    DMAP_CUDA(cudaMemcpy(out.data(), f.data(), out.size() * 4, cudaMemcpyDeviceToHost));
    return out;
  }
};

std::vector<float> random_values(cu::DT t, size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = round_to(t, nd(rng));
  return v;
}

// Host bytes of values in the dtype, as cpu::Weight wants them.
std::vector<uint8_t> host_bytes(cu::DT t, const std::vector<float>& v) {
  std::vector<uint8_t> raw(v.size() * cu::dt_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == cu::DT::kF32) {
      std::memcpy(raw.data() + 4 * i, &v[i], 4);
    } else {
      const uint16_t h = t == cu::DT::kBF16 ? cpu::f32_to_bf16(v[i]) : cpu::f32_to_f16(v[i]);
      std::memcpy(raw.data() + 2 * i, &h, 2);
    }
  }
  return raw;
}

// In 16 bits both sides round at the same points, so nearly every element is bit-identical (a
// few differ by an ulp where float32 sums ran in another order): a dropped rounding point fails.
void check_mostly_exact(cu::DT t, const std::vector<float>& got, const std::vector<float>& want) {
  if (t == cu::DT::kF32) return;
  size_t same = 0;
  for (size_t i = 0; i < want.size(); ++i) same += got[i] == want[i];
  CHECK(static_cast<double>(same) >= 0.9 * static_cast<double>(want.size()));
}

DevTensor::DevTensor(cu::DT type, const std::vector<float>& v)
    : t(type), n(static_cast<int64_t>(v.size())), buf(0, v.size() * cu::dt_size(type), "test") {
  const std::vector<uint8_t> raw = host_bytes(t, v);
  DMAP_CUDA(cudaMemcpy(buf.data(), raw.data(), raw.size(), cudaMemcpyHostToDevice));
}

const cu::DT kTypes[] = {cu::DT::kF32, cu::DT::kF16, cu::DT::kBF16};
const char* type_name(cu::DT t) { return t == cu::DT::kF32 ? "float32" : t == cu::DT::kF16 ? "float16" : "bfloat16"; }

}  // namespace

TEST_CASE("cuBLAS products match the CPU backend's linear") {
  cublasHandle_t blas;
  DMAP_CUBLAS(cublasCreate(&blas));
  for (cu::DT t : kTypes) {
    for (int64_t M : {1, 7, 64}) {
      const int64_t K = 192, N = 80;
      const auto x = random_values(t, static_cast<size_t>(M * K), 1);
      const auto w = random_values(t, static_cast<size_t>(N * K), 2, 0.1f);
      const auto b = random_values(t, static_cast<size_t>(N), 3);
      auto wb = host_bytes(t, w);
      std::vector<float> want(static_cast<size_t>(M * N));
      std::vector<float> bias(b.begin(), b.end());
      cpu::linear(x.data(), M, cpu::Weight{wb.data(), wtype(t), N, K}, bias.data(), want.data(), 1);
      for (auto& v : want) v = round_to(t, v);
      DevTensor dx(t, x), dw(t, w), db(t, b), dy(t, std::vector<float>(static_cast<size_t>(M * N)));
      cu::broadcast_rows(t, db.buf.data(), M, N, dy.buf.data(), nullptr);
      cu::gemm(blas, t, dx.buf.data(), M, K, dw.buf.data(), N, dy.buf.data(), true);
      INFO(type_name(t) << " M=" << M);
      CHECK(rel_err(dy.get(), want) < tolerance(t));
    }
  }
  cublasDestroy(blas);
}

TEST_CASE("RMSNorm, RoPE, gated activations and residual adds match the CPU formulas") {
  const int64_t M = 6, H = 160, heads = 4, kv = 2, d = 40, T = 3, start = 5;
  for (cu::DT t : kTypes) {
    INFO(type_name(t));
    for (bool gemma : {false, true}) {
      const auto x = random_values(t, static_cast<size_t>(M * H), 4, 3.0f);
      const auto g = random_values(t, static_cast<size_t>(H), 5, 0.2f);
      std::vector<float> want(x.size());
      for (int64_t m = 0; m < M; ++m) {
        const float r = 1.0f / std::sqrt(cpu::sum_squares(x.data() + m * H, H) / H + 1e-5f);
        for (int64_t i = 0; i < H; ++i) {
          const float v = x[m * H + i] * r;
          want[m * H + i] = gemma ? round_to(t, v * (1.0f + g[i])) : round_to(t, g[i] * round_to(t, v));
        }
      }
      DevTensor dx(t, x), dg(t, g), dy(t, std::vector<float>(x.size()));
      cu::rmsnorm(t, dx.buf.data(), dg.buf.data(), M, H, 1e-5f, gemma ? cu::Norm::kGemma : cu::Norm::kLlama, dy.buf.data(),
                  nullptr);
      CHECK(rel_err(dy.get(), want) < tolerance(t));
      check_mostly_exact(t, dy.get(), want);
    }
    {  // RoPE
      auto q = random_values(t, static_cast<size_t>(M * heads * d), 6);
      auto k = random_values(t, static_cast<size_t>(M * kv * d), 7);
      ExecConfig cfg;
      cfg.head_dim = d;
      const std::vector<float> inv = rope_inv_freq(cfg);
      DevTensor dq(t, q), dk(t, k);
      // The forward's tables (T positions x d/2), rounded to the dtype as the executors make them.
      std::vector<float> cs(static_cast<size_t>(T * d / 2)), sn(cs.size());
      for (int64_t r = 0; r < T; ++r)
        for (int64_t i = 0; i < d / 2; ++i) {
          const float ang = static_cast<float>(start + r) * inv[i];
          cs[r * d / 2 + i] = round_to(t, std::cos(ang));
          sn[r * d / 2 + i] = round_to(t, std::sin(ang));
        }
      cu::DeviceBuffer dcos(0, cs.size() * 4, "test"), dsin(0, sn.size() * 4, "test");
      DMAP_CUDA(cudaMemcpy(dcos.data(), cs.data(), cs.size() * 4, cudaMemcpyHostToDevice));
      DMAP_CUDA(cudaMemcpy(dsin.data(), sn.data(), sn.size() * 4, cudaMemcpyHostToDevice));
      cu::rope(t, dq.buf.data(), dk.buf.data(), M, T, heads, kv, d, d, dcos.as<float>(), dsin.as<float>(), false, nullptr);
      auto rotate = [&](std::vector<float>& a, int64_t nh) {
        for (int64_t r = 0; r < M; ++r)
          for (int64_t h = 0; h < nh; ++h)
            for (int64_t i = 0; i < d / 2; ++i) {
              const float ang = static_cast<float>(start + r % T) * inv[i];
              const float c = round_to(t, std::cos(ang)), s = round_to(t, std::sin(ang));
              float* p = a.data() + (r * nh + h) * d;
              const float x1 = p[i], x2 = p[i + d / 2];
              p[i] = round_to(t, round_to(t, x1 * c) + round_to(t, -x2 * s));
              p[i + d / 2] = round_to(t, round_to(t, x2 * c) + round_to(t, x1 * s));
            }
      };
      rotate(q, heads);
      rotate(k, kv);
      CHECK(rel_err(dq.get(), q) < tolerance(t));
      CHECK(rel_err(dk.get(), k) < tolerance(t));
      check_mostly_exact(t, dq.get(), q);
    }
    for (bool gelu : {false, true}) {  // gated activation
      const auto a = random_values(t, 1000, 8, 2.0f), u = random_values(t, 1000, 9);
      std::vector<float> want(a.size());
      for (size_t i = 0; i < a.size(); ++i) {
        const float v = a[i];
        const float act = gelu ? 0.5f * v * (1.0f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)))
                               : v / (1.0f + std::exp(-v));
        want[i] = round_to(t, round_to(t, act) * u[i]);
      }
      DevTensor dg(t, a), du(t, u);
      cu::gated_act(t, dg.buf.data(), du.buf.data(), 1000, gelu, nullptr);
      CHECK(rel_err(dg.get(), want) < tolerance(t));
      check_mostly_exact(t, dg.get(), want);
    }
    {  // residual
      const auto a = random_values(t, 999, 10), h = random_values(t, 999, 11);
      std::vector<float> want(a.size());
      for (size_t i = 0; i < a.size(); ++i) want[i] = round_to(t, a[i] + h[i]);
      DevTensor dx(t, a), dh(t, h);
      cu::add_residual(t, dx.buf.data(), dh.buf.data(), 999, nullptr);
      CHECK(rel_err(dx.get(), want) < tolerance(t));
      CHECK(dx.get() == want);  // one rounding of an exact float32 sum: bit-identical
    }
  }
}

TEST_CASE("attention over the KV cache matches a float32 reference, prefill and decode, with GQA and a window") {
  const int64_t B = 2, H = 4, KV = 2, d = 32, S = 24;
  for (cu::DT t : kTypes) {
    for (int64_t window : {int64_t{0}, int64_t{5}}) {
      INFO(type_name(t) << " window " << window);
      cu::DeviceBuffer kc(0, static_cast<size_t>(B * KV * S * d) * cu::dt_size(t), "k"), vc(0, kc.bytes(), "v");
      DMAP_CUDA(cudaMemset(kc.data(), 0, kc.bytes()));
      DMAP_CUDA(cudaMemset(vc.data(), 0, vc.bytes()));
      std::vector<float> hk(static_cast<size_t>(B * KV * S * d)), hv(hk.size());  // host cache
      int64_t start = 0;
      for (int64_t T : {int64_t{9}, int64_t{1}, int64_t{1}}) {  // prefill, then two decode steps
        const int64_t M = B * T;
        const auto q = random_values(t, static_cast<size_t>(M * H * d), 20 + start);
        const auto k = random_values(t, static_cast<size_t>(M * KV * d), 40 + start);
        const auto v = random_values(t, static_cast<size_t>(M * KV * d), 60 + start);
        for (int64_t b = 0; b < B; ++b)
          for (int64_t tt = 0; tt < T; ++tt)
            for (int64_t g = 0; g < KV; ++g)
              for (int64_t i = 0; i < d; ++i) {
                hk[((b * KV + g) * S + start + tt) * d + i] = k[((b * T + tt) * KV + g) * d + i];
                hv[((b * KV + g) * S + start + tt) * d + i] = v[((b * T + tt) * KV + g) * d + i];
              }
        std::vector<float> want(static_cast<size_t>(M * H * d));
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));
        for (int64_t b = 0; b < B; ++b)
          for (int64_t tt = 0; tt < T; ++tt)
            for (int64_t h = 0; h < H; ++h) {
              const int64_t g = h / (H / KV), pos = start + tt;
              const int64_t first = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
              std::vector<float> s;
              float mx = -INFINITY;
              for (int64_t j = first; j <= pos; ++j) {
                float dot = 0;
                for (int64_t i = 0; i < d; ++i)
                  dot += q[((b * T + tt) * H + h) * d + i] * hk[((b * KV + g) * S + j) * d + i];
                s.push_back(round_to(t, round_to(t, dot) * scale));
                mx = std::max(mx, s.back());
              }
              float sum = 0;
              for (auto& e : s) sum += (e = std::exp(e - mx));
              for (int64_t i = 0; i < d; ++i) {
                float acc = 0;
                for (int64_t j = first; j <= pos; ++j)
                  acc += round_to(t, s[j - first] / sum) * hv[((b * KV + g) * S + j) * d + i];
                want[((b * T + tt) * H + h) * d + i] = round_to(t, acc);
              }
            }
        DevTensor dq(t, q), dk(t, k), dv(t, v), dout(t, std::vector<float>(want.size()));
        cu::kv_store(t, dk.buf.data(), dv.buf.data(), kc.data(), vc.data(), B, T, KV, d, S, start, nullptr);
        cu::attention(t, dq.buf.data(), kc.data(), vc.data(), dout.buf.data(), B, T, H, KV, d, S, start, window,
                      1.0f / std::sqrt(static_cast<float>(d)), 0.0f, nullptr);
        CHECK(rel_err(dout.get(), want) < tolerance(t));
        start += T;
      }
    }
  }
}

TEST_CASE("a failed allocation names the device, what asked, the bytes asked and free") {
  try {
    cu::DeviceBuffer huge(0, size_t{1} << 52, "a test tensor");
    FAIL("allocated 4 PiB");
  } catch (const cu::OutOfDeviceMemory& e) {
    const std::string m = e.what();
    CHECK(m.find("cuda:0 is out of memory") != std::string::npos);
    CHECK(m.find("a test tensor") != std::string::npos);
    CHECK(m.find(std::to_string(size_t{1} << 52) + " bytes") != std::string::npos);
    CHECK(m.find("free of") != std::string::npos);
  }
}

// ---- whole models ----------------------------------------------------------------------------

namespace {}  // namespace

TEST_CASE("every dense family on one GPU matches the CPU executor") {
  for (const char* name : {"llama_float32", "llama_bfloat16", "mistral_float32", "mistral_bfloat16", "qwen2_float32",
                           "qwen2_bfloat16", "gemma_float32", "gemma_bfloat16", "qwen3_float32", "qwen3_bfloat16",
                           "olmo2_float32", "olmo2_bfloat16", "phi3_float32", "phi3_bfloat16", "gemma2_float32",
                           "gemma2_bfloat16", "gemma3_text_float32", "gemma3_text_bfloat16"}) {
    INFO(name);
    Loaded l = load(name);
    RunOptions opt{.batch = 1, .max_seq = 32, .threads = 2};
    CpuModel cpu(l.cfg, *l.w, opt);
    std::vector<Device> units(static_cast<size_t>(l.cfg.layers) + 3, Device::gpu(0));
    CudaModel gpu(l.cfg, *l.w, placement(l.cfg, *l.w, units, Semantics::kAccelerate), opt);
    const bool f32 = std::string(name).find("float32") != std::string::npos;
    compare(run(gpu, kPrompt, 6), run(cpu, kPrompt, 6), f32 ? 1e-4 : 2e-2);
    CHECK(gpu.h2d_weight_bytes() == 0);
  }
}

TEST_CASE("two different sequences in a batch, and float16 weights, match the CPU executor") {
  for (const char* name : {"llama_bfloat16", "qwen2_float32"}) {
    INFO(name);
    Loaded l = load(name);
    RunOptions opt{.batch = 2, .max_seq = 32, .threads = 2};
    CpuModel cpu(l.cfg, *l.w, opt);
    std::vector<Device> units(static_cast<size_t>(l.cfg.layers) + 3, Device::gpu(0));
    CudaModel gpu(l.cfg, *l.w, placement(l.cfg, *l.w, units, Semantics::kAccelerate), opt);
    compare(run(gpu, kTwoPrompts, 4), run(cpu, kTwoPrompts, 4),
            std::string(name).find("float32") != std::string::npos ? 1e-4 : 2e-2);
  }
  Loaded l = load("llama_float32");
  const ModelWeights w16 = ModelWeights::random(l.cfg, DType::kFloat16, 7);
  RunOptions opt{.batch = 1, .max_seq = 32, .threads = 2};
  CpuModel cpu(l.cfg, w16, opt);
  std::vector<Device> units(static_cast<size_t>(l.cfg.layers) + 3, Device::gpu(0));
  CudaModel gpu(l.cfg, w16, placement(l.cfg, w16, units, Semantics::kPrefetch), opt);
  compare(run(gpu, kPrompt, 4), run(cpu, kPrompt, 4), 5e-3);
}

TEST_CASE("accelerate, prefetch and in-place placements with cpu and disk layers match the CPU executor") {
  Loaded l = load("llama_float32");
  const size_t L = static_cast<size_t>(l.cfg.layers);
  REQUIRE(L >= 2);
  RunOptions opt{.batch = 1, .max_seq = 32, .threads = 2};
  CpuModel cpu_model(l.cfg, *l.w, opt);
  const Run want = run(cpu_model, kPrompt, 5);
  // embed on GPU, the first layer on cpu, the last on disk, the head on cpu.
  std::vector<Device> units(L + 3, Device::gpu(0));
  units[1] = Device::cpu();
  units[L] = Device::disk();
  units[L + 2] = Device::cpu();
  const fs::path off = fs::temp_directory_path() / ("dmap_cuda_test_" + std::to_string(::getpid()));
  std::vector<std::string> disk_tensors;
  for (const auto& n : l.w->names())
    if (n.rfind("model.layers." + std::to_string(L - 1) + ".", 0) == 0) disk_tensors.push_back(n);
  ModelWeights& w = *l.w;
  w.offload_to_disk(disk_tensors, off.string());
  uint64_t offloaded = 0, layer0 = 0, disk_layer = 0, disk_norms = 0;
  const Placement base = placement(l.cfg, w, units, Semantics::kAccelerate);
  for (const auto& [n, d] : base.tensor_home) {
    const uint64_t b = weight_bytes(w.get(n).w);
    if (!d.is_gpu()) offloaded += b;
    if (n.rfind("model.layers.0.", 0) == 0) layer0 += b;
    if (d.kind == Device::Kind::kDisk) disk_layer += b;
    if (d.kind == Device::Kind::kDisk && n.find("layernorm") != std::string::npos) disk_norms += b;
  }
  for (Semantics s : {Semantics::kAccelerate, Semantics::kPrefetch, Semantics::kInPlace}) {
    INFO(semantics_name(s));
    Placement p = base;
    p.semantics = s;
    CudaModel m(l.cfg, w, p, opt);
    const Run got = run(m, kPrompt, 5);
    compare(got, want, 1e-4);
    const uint64_t forwards = got.logits.size();
    if (s == Semantics::kAccelerate) CHECK(m.h2d_weight_bytes() == forwards * offloaded);
    // prefetch also copies the next forward's first streamed unit (layer 0, cpu) behind each forward
    if (s == Semantics::kPrefetch) CHECK(m.h2d_weight_bytes() == forwards * offloaded + layer0);
    if (s == Semantics::kInPlace) {
      CHECK(m.h2d_weight_bytes() == 0);
      CHECK(m.execution_device(1) == -1);
    } else {
      CHECK(m.execution_device(1) == 0);
    }
    // In-place: the CPU backend converts norm gains once (found on the emulated device).
    CHECK(m.disk_bytes_read() == forwards * (s == Semantics::kInPlace ? disk_layer - disk_norms : disk_layer));
    for (const auto& t : m.module_times()) CHECK(t.prefill_s > 0);
  }
  fs::remove_all(off);
}

TEST_CASE("layers split over two GPUs match the CPU executor") {
  if (cu::device_count() < 2) {
    WARN("one CUDA device: the two-GPU placement is not tested here");
    return;
  }
  Loaded l = load("qwen2_bfloat16");
  const size_t L = static_cast<size_t>(l.cfg.layers);
  RunOptions opt{.batch = 2, .max_seq = 32, .threads = 2};
  std::vector<Device> units(L + 3, Device::gpu(0));
  for (size_t u = 1 + L / 2; u < L + 3; ++u) units[u] = Device::gpu(1);
  units[L + 1] = Device::cpu();  // the norm offloaded: computed on cuda:0 (the map's first GPU)
  CpuModel cpu(l.cfg, *l.w, opt);
  CudaModel gpu(l.cfg, *l.w, placement(l.cfg, *l.w, units, Semantics::kPrefetch), opt);
  compare(run(gpu, kTwoPrompts, 4), run(cpu, kTwoPrompts, 4), 2e-2);
}
