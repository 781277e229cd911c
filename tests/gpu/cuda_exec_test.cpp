// The CUDA backend against the CPU backend (runs only where a CUDA device is; exits 77 elsewhere).
//   ops: every kernel and the cuBLAS products on random inputs in float32, float16 and
//        bfloat16 against their host implementations (exec/device/host_ops.h), normalised
//        error ||gpu - host|| / ||host|| under a per-dtype bound, and in 16 bits most elements
//        bit-identical;
//   models: the tests/data checkpoints (every family, MoE included; float32 and bfloat16) all
//        on one GPU, and llama and qwen3_moe under accelerate / prefetch / in-place with cpu
//        and disk layers, and across two GPUs when there are two: logits against CpuModel and
//        the same tokens.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <random>
#include <tuple>

#include <unistd.h>

#include "core/model_spec.h"
#include "exec/cuda/cuda_model.h"
#include "exec/cuda/kernels.h"
#include "exec/cuda/runtime.h"
#include "exec/device/host_ops.h"
#include "exec/device/runtime.h"
#include "exec/layer_program.h"
#include "exec/model.h"
#include "tests/exec/executor_fixtures.h"

using namespace dmap;
using namespace dmap::exec;
namespace fs = std::filesystem;
namespace cu = dmap::exec::cuda;
using namespace dmap::exec::testing;

namespace {

float round_to(DType t, float v) {
  if (t == DType::kBFloat16) return cpu::round_bf16(v);
  if (t == DType::kFloat16) return cpu::f16_to_f32(cpu::f32_to_f16(v));
  return v;
}

// Normalised error bound per dtype: a few units of the format's rounding.
double tolerance(DType t) { return t == DType::kFloat32 ? 2e-5 : t == DType::kFloat16 ? 3e-3 : 2e-2; }

// Host values in the dtype, uploaded to the device; read back as float32.
struct DevTensor {
  DType t;
  int64_t n;
  cu::DeviceBuffer buf;
  DevTensor(DType type, const std::vector<float>& v);
  std::vector<float> get() const {
    cu::DeviceBuffer f(0, static_cast<size_t>(n) * 4, "test");
    cu::to_float(t, buf.data(), f.as<float>(), n, nullptr);
    std::vector<float> out(static_cast<size_t>(n));
    DMAP_CUDA(cudaMemcpy(out.data(), f.data(), out.size() * 4, cudaMemcpyDeviceToHost));
    return out;
  }
};

std::vector<float> random_values(DType t, size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = round_to(t, nd(rng));
  return v;
}

// Host bytes of values in the dtype, as cpu::Weight wants them.
std::vector<uint8_t> host_bytes(DType t, const std::vector<float>& v) {
  std::vector<uint8_t> raw(v.size() * elt_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::kFloat32) {
      std::memcpy(raw.data() + 4 * i, &v[i], 4);
    } else {
      const uint16_t h = t == DType::kBFloat16 ? cpu::f32_to_bf16(v[i]) : cpu::f32_to_f16(v[i]);
      std::memcpy(raw.data() + 2 * i, &h, 2);
    }
  }
  return raw;
}

// In 16 bits both sides round at the same points, so nearly every element is bit-identical (a
// few differ by an ulp where float32 sums ran in another order): a dropped rounding point fails.
void check_mostly_exact(DType t, const std::vector<float>& got, const std::vector<float>& want) {
  if (t == DType::kFloat32) return;
  size_t same = 0;
  for (size_t i = 0; i < want.size(); ++i) same += got[i] == want[i];
  CHECK(static_cast<double>(same) >= 0.9 * static_cast<double>(want.size()));
}

DevTensor::DevTensor(DType type, const std::vector<float>& v)
    : t(type), n(static_cast<int64_t>(v.size())), buf(0, v.size() * elt_size(type), "test") {
  const std::vector<uint8_t> raw = host_bytes(t, v);
  DMAP_CUDA(cudaMemcpy(buf.data(), raw.data(), raw.size(), cudaMemcpyHostToDevice));
}

const DType kTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};
const char* type_name(DType t) {
  return t == DType::kFloat32 ? "float32" : t == DType::kFloat16 ? "float16" : "bfloat16";
}

}  // namespace

// The reference of every operator is its host implementation (exec/device/host_ops.h: what the
// emulated device runs, the products through the CPU executor's cpu::linear), on the same
// values in the same storage dtype.
namespace {

// Values stored in the dtype on the host (host_ops' operands).
struct HostTensor {
  DType t;
  std::vector<uint8_t> raw;
  HostTensor(DType type, const std::vector<float>& v) : t(type), raw(host_bytes(type, v)) {}
  void* data() { return raw.data(); }
  std::vector<float> get() const {
    std::vector<float> out(raw.size() / elt_size(t));
    host_ops::to_float(t, raw.data(), out.data(), static_cast<int64_t>(out.size()));
    return out;
  }
};

void check_op(DType t, const DevTensor& got, const HostTensor& want, bool mostly_exact = true) {
  CHECK(rel_err(got.get(), want.get()) < tolerance(t));
  if (mostly_exact) check_mostly_exact(t, got.get(), want.get());
}

}  // namespace

TEST_CASE("cuBLAS products match the CPU backend's linear") {
  cublasHandle_t blas;
  DMAP_CUBLAS(cublasCreate(&blas));
  for (DType t : kTypes) {
    for (int64_t M : {1, 7, 64}) {
      const int64_t K = 192, N = 80;
      const auto x = random_values(t, static_cast<size_t>(M * K), 1);
      const auto w = random_values(t, static_cast<size_t>(N * K), 2, 0.1f);
      const auto b = random_values(t, static_cast<size_t>(N), 3);
      HostTensor hx(t, x), hw(t, w), hb(t, b), hy(t, std::vector<float>(static_cast<size_t>(M * N)));
      host_ops::broadcast_rows(t, hb.data(), M, N, hy.data());
      host_ops::gemm(t, hx.data(), M, K, hw.data(), N, hy.data(), true, 1);
      DevTensor dx(t, x), dw(t, w), db(t, b), dy(t, std::vector<float>(static_cast<size_t>(M * N)));
      cu::broadcast_rows(t, db.buf.data(), M, N, dy.buf.data(), nullptr);
      cu::gemm(blas, t, dx.buf.data(), M, K, dw.buf.data(), N, dy.buf.data(), true);
      INFO(type_name(t) << " M=" << M);
      check_op(t, dy, hy, false);
    }
  }
  cublasDestroy(blas);
}

TEST_CASE("RMSNorm, RoPE, gated activations, residual adds and soft-capping match the host operators") {
  const int64_t M = 6, H = 160, heads = 4, kv = 2, d = 40, T = 3, start = 5;
  for (DType t : kTypes) {
    INFO(type_name(t));
    for (cu::Norm mode : {cu::Norm::kLlama, cu::Norm::kMulFirst, cu::Norm::kGemma}) {
      INFO("norm mode " << static_cast<int>(mode));
      const auto x = random_values(t, static_cast<size_t>(M * H), 4, 3.0f);
      const auto g = random_values(t, static_cast<size_t>(H), 5, 0.2f);
      HostTensor hx(t, x), hg(t, g), hy(t, std::vector<float>(x.size()));
      host_ops::rmsnorm(t, hx.data(), hg.data(), M, H, 1e-5f, static_cast<cpu::NormMode>(mode), hy.data());
      DevTensor dx(t, x), dg(t, g), dy(t, std::vector<float>(x.size()));
      cu::rmsnorm(t, dx.buf.data(), dg.buf.data(), M, H, 1e-5f, mode, dy.buf.data(), nullptr);
      check_op(t, dy, hy);
    }
    for (bool fp32 : {false, true}) {  // RoPE, with the executors' own tables
      INFO("rope fp32 " << fp32);
      const auto q = random_values(t, static_cast<size_t>(M * heads * d), 6);
      const auto k = random_values(t, static_cast<size_t>(M * kv * d), 7);
      ExecConfig cfg;
      cfg.head_dim = d;
      cfg.rope_fp32 = fp32;
      std::vector<float> cs, sn;
      rope_tables(cfg, rope_inv_freq(cfg), t, T, start, cs, sn);
      HostTensor hq(t, q), hk(t, k);
      host_ops::rope(t, hq.data(), hk.data(), M, T, heads, kv, d, d, cs.data(), sn.data(), fp32);
      cu::DeviceBuffer dcos(0, cs.size() * 4, "test"), dsin(0, sn.size() * 4, "test");
      DMAP_CUDA(cudaMemcpy(dcos.data(), cs.data(), cs.size() * 4, cudaMemcpyHostToDevice));
      DMAP_CUDA(cudaMemcpy(dsin.data(), sn.data(), sn.size() * 4, cudaMemcpyHostToDevice));
      DevTensor dq(t, q), dk(t, k);
      cu::rope(t, dq.buf.data(), dk.buf.data(), M, T, heads, kv, d, d, dcos.as<float>(), dsin.as<float>(), fp32,
               nullptr);
      check_op(t, dq, hq);
      check_op(t, dk, hk);
    }
    for (bool gelu : {false, true}) {  // gated activation
      const auto a = random_values(t, 1000, 8, 2.0f), u = random_values(t, 1000, 9);
      HostTensor hg(t, a), hu(t, u);
      host_ops::gated_act(t, hg.data(), hu.data(), 1000, gelu);
      DevTensor dg(t, a), du(t, u);
      cu::gated_act(t, dg.buf.data(), du.buf.data(), 1000, gelu, nullptr);
      check_op(t, dg, hg);
    }
    {  // residual: one rounding of an exact float32 sum, bit-identical
      const auto a = random_values(t, 999, 10), h = random_values(t, 999, 11);
      HostTensor hx(t, a), hh(t, h);
      host_ops::add_residual(t, hx.data(), hh.data(), 999);
      DevTensor dx(t, a), dh(t, h);
      cu::add_residual(t, dx.buf.data(), dh.buf.data(), 999, nullptr);
      CHECK(dx.get() == hx.get());
    }
    {  // soft-capping (gemma2's logits)
      const auto a = random_values(t, 777, 12, 40.0f);
      HostTensor hx(t, a);
      host_ops::softcap(t, hx.data(), 777, 30.0f);
      DevTensor dx(t, a);
      cu::softcap(t, dx.buf.data(), 777, 30.0f, nullptr);
      check_op(t, dx, hx);
    }
  }
}

TEST_CASE("attention over the KV cache matches the host operator: prefill and decode, GQA, a window, soft-capping") {
  const int64_t B = 2, H = 4, KV = 2, d = 32, S = 24;
  for (DType t : kTypes) {
    for (int64_t window : {int64_t{0}, int64_t{5}}) {
      const float cap = window > 0 ? 50.0f : 0.0f;
      INFO(type_name(t) << " window " << window << " softcap " << cap);
      const size_t cache = static_cast<size_t>(B * KV * S * d);
      cu::DeviceBuffer kc(0, cache * elt_size(t), "k"), vc(0, kc.bytes(), "v");
      DMAP_CUDA(cudaMemset(kc.data(), 0, kc.bytes()));
      DMAP_CUDA(cudaMemset(vc.data(), 0, vc.bytes()));
      HostTensor hkc(t, std::vector<float>(cache)), hvc(t, std::vector<float>(cache));
      int64_t start = 0;
      for (int64_t T : {int64_t{9}, int64_t{1}, int64_t{1}}) {  // prefill, then two decode steps
        const int64_t M = B * T;
        const auto q = random_values(t, static_cast<size_t>(M * H * d), 20 + start);
        const auto k = random_values(t, static_cast<size_t>(M * KV * d), 40 + start);
        const auto v = random_values(t, static_cast<size_t>(M * KV * d), 60 + start);
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));
        HostTensor hq(t, q), hk(t, k), hv(t, v), hout(t, std::vector<float>(static_cast<size_t>(M * H * d)));
        host_ops::kv_store(t, hk.data(), hv.data(), hkc.data(), hvc.data(), B, T, KV, d, S, start);
        host_ops::attention(t, hq.data(), hkc.data(), hvc.data(), hout.data(), B, T, H, KV, d, S, start, window, scale,
                            cap);
        DevTensor dq(t, q), dk(t, k), dv(t, v), dout(t, std::vector<float>(static_cast<size_t>(M * H * d)));
        cu::kv_store(t, dk.buf.data(), dv.buf.data(), kc.data(), vc.data(), B, T, KV, d, S, start, nullptr);
        cu::attention(t, dq.buf.data(), kc.data(), vc.data(), dout.buf.data(), B, T, H, KV, d, S, start, window, scale,
                      cap, nullptr);
        check_op(t, dout, hout, false);
        start += T;
      }
    }
  }
}

TEST_CASE("the MoE router and experts match the host operators (exec/cpu/moe.h)") {
  const int64_t H = 96, I = 48, E = 8;
  for (DType t : kTypes) {
    for (const auto& [M, K, norm, fp32w] :
         {std::tuple{int64_t{1}, int64_t{2}, true, false}, std::tuple{int64_t{9}, int64_t{2}, true, false},
          std::tuple{int64_t{5}, int64_t{3}, false, true}}) {
      INFO(type_name(t) << " M=" << M << " K=" << K << " norm_topk " << norm << " fp32 weights " << fp32w);
      const auto logits = random_values(t, static_cast<size_t>(M * E), 30, 2.0f);
      const auto x = random_values(t, static_cast<size_t>(M * H), 31);
      const auto gu = random_values(t, static_cast<size_t>(E * 2 * I * H), 32, 0.1f);
      const auto down = random_values(t, static_cast<size_t>(E * H * I), 33, 0.1f);
      // Router.
      HostTensor hl(t, logits);
      std::vector<int32_t> pick(static_cast<size_t>(M * K)), counts(static_cast<size_t>(E));
      std::vector<float> weight(static_cast<size_t>(M * K));
      host_ops::moe_route(t, hl.data(), M, E, K, norm, fp32w, pick.data(), weight.data(), counts.data());
      DevTensor dl(t, logits);
      cu::DeviceBuffer dpick(0, pick.size() * 4, "pick"), dweight(0, weight.size() * 4, "weight"),
          dcounts(0, counts.size() * 4, "counts");
      cu::moe_route(t, dl.buf.data(), M, E, K, norm, fp32w, dpick.as<int32_t>(), dweight.as<float>(),
                    dcounts.as<int32_t>(), nullptr);
      std::vector<int32_t> gpick(pick.size()), gcounts(counts.size());
      std::vector<float> gweight(weight.size());
      DMAP_CUDA(cudaMemcpy(gpick.data(), dpick.data(), gpick.size() * 4, cudaMemcpyDeviceToHost));
      DMAP_CUDA(cudaMemcpy(gcounts.data(), dcounts.data(), gcounts.size() * 4, cudaMemcpyDeviceToHost));
      DMAP_CUDA(cudaMemcpy(gweight.data(), dweight.data(), gweight.size() * 4, cudaMemcpyDeviceToHost));
      CHECK(gpick == pick);  // random logits: no near-ties
      CHECK(gcounts == counts);
      CHECK(rel_err(gweight, weight) < tolerance(t));
      // Experts, on the host's choice.
      HostTensor hx(t, x), hgu(t, gu), hdown(t, down), hout(t, std::vector<float>(static_cast<size_t>(M * H)));
      host_ops::moe_experts(t, hx.data(), M, H, I, E, K, pick.data(), weight.data(), fp32w, hgu.data(), hdown.data(),
                            hout.data(), 1);
      DevTensor dx(t, x), dgu(t, gu), ddown(t, down), dout(t, std::vector<float>(static_cast<size_t>(M * H)));
      DMAP_CUDA(cudaMemcpy(dpick.data(), pick.data(), pick.size() * 4, cudaMemcpyHostToDevice));
      DMAP_CUDA(cudaMemcpy(dweight.data(), weight.data(), weight.size() * 4, cudaMemcpyHostToDevice));
      cu::DeviceBuffer work(0, moe_work_bytes(M, K, H, I), "MoE scratch");
      cu::moe_experts(t, dx.buf.data(), M, H, I, K, dpick.as<int32_t>(), dweight.as<float>(), fp32w, dgu.buf.data(),
                      ddown.buf.data(), work.data(), dout.buf.data(), nullptr);
      check_op(t, dout, hout, false);
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

TEST_CASE("every family on one GPU matches the CPU executor") {
  for (const char* name :
       {"llama_float32",   "llama_bfloat16",      "mistral_float32",      "mistral_bfloat16",  "qwen2_float32",
        "qwen2_bfloat16",  "gemma_float32",       "gemma_bfloat16",       "qwen3_float32",     "qwen3_bfloat16",
        "olmo2_float32",   "olmo2_bfloat16",      "phi3_float32",         "phi3_bfloat16",     "gemma2_float32",
        "gemma2_bfloat16", "gemma3_text_float32", "gemma3_text_bfloat16", "qwen3_moe_float32", "qwen3_moe_bfloat16",
        "mixtral_float32", "mixtral_bfloat16"}) {
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
  for (const char* name : {"llama_float32", "qwen3_moe_float32"}) {
    INFO(name);
    Loaded l = load(name);
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
      if (d.kind == Device::Kind::kDisk && n.size() > 11 && n.compare(n.size() - 11, 11, "norm.weight") == 0)
        disk_norms += b;
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
