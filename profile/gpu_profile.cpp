// `dmap profile --real --device cuda:N` (see gpu_profile.h): the copy, product, attention and
// launch measurements on one GPU, whole-model runs on dmap's CUDA executor, and the fitted GPU and
// link sections of a calibration.
#include "profile/gpu_profile.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "core/error.h"
#include "exec/cuda/cuda_model.h"
#include "exec/cuda/kernels.h"
#include "exec/cuda/runtime.h"
#include "exec/map_placement.h"
#include "profile/fit.h"
#include "profile/yaml_text.h"
#include "strategies/plan.h"

#if DMAP_HAVE_CUPTI
#include "trace/cupti_tracer.h"
#endif

namespace dmap::profile {

#if DMAP_HAVE_CUPTI
using trace::CuptiTracer;
#endif

namespace {

namespace cu = exec::cuda;
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Median seconds of `reps` runs of fn on stream s between two events, after one warm-up run.
template <class F>
double time_on_stream(int dev, cudaStream_t s, int reps, F&& fn) {
  cu::Event a(dev), b(dev);
  fn();
  DMAP_CUDA(cudaStreamSynchronize(s));
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    a.record(s);
    fn();
    b.record(s);
    DMAP_CUDA(cudaEventSynchronize(b.get()));
    t.push_back(static_cast<double>(b.since(a)) * 1e-3);
  }
  return median(t);
}

struct CopyFits {
  LineFit h2d_pinned, h2d_pageable, d2h_pinned, d2h_pageable;
};

// Host-timed copies (issue, then wait), as the executor and accelerate see them.
CopyFits measure_copies(int dev, bool quick, const std::function<void(const std::string&)>& tick) {
  const std::vector<size_t> sizes =
      quick ? std::vector<size_t>{64u << 10, 1u << 20, 16u << 20, 64u << 20}
            : std::vector<size_t>{64u << 10, 256u << 10, 1u << 20, 4u << 20, 16u << 20, 64u << 20, 256u << 20};
  const size_t top = sizes.back();
  std::vector<uint8_t> pageable(top, 1);
  cu::PinnedBuffer pinned(top);
  std::memset(pinned.data(), 1, top);
  cu::DeviceBuffer d(dev, top, "copy probe");
  cu::Stream s(dev);
  const int reps = quick ? 3 : 7;
  auto fit = [&](bool h2d, bool pin) {
    tick(std::string(h2d ? "host to device" : "device to host") + (pin ? ", pinned" : ", pageable"));
    void* host = pin ? pinned.data() : pageable.data();
    std::vector<double> xs, ys;
    for (size_t n : sizes) {
      std::vector<double> t;
      for (int r = 0; r <= reps; ++r) {
        const auto t0 = Clock::now();
        if (h2d) {
          DMAP_CUDA(cudaMemcpyAsync(d.data(), host, n, cudaMemcpyHostToDevice, s.get()));
        } else {
          DMAP_CUDA(cudaMemcpyAsync(host, d.data(), n, cudaMemcpyDeviceToHost, s.get()));
        }
        s.sync();
        if (r > 0) t.push_back(since(t0));  // the first copy of a size warms the path
      }
      xs.push_back(static_cast<double>(n));
      ys.push_back(median(t));
    }
    return fit_line(xs, ys);
  };
  CopyFits f;
  f.h2d_pinned = fit(true, true);
  f.h2d_pageable = fit(true, false);
  f.d2h_pinned = fit(false, true);
  f.d2h_pageable = fit(false, false);
  return f;
}

double bandwidth_of(const LineFit& f) { return f.slope > 0 ? 1.0 / f.slope : 0.0; }

// accelerate's hook per offloaded tensor: allocate on the device, one blocking pageable copy,
// free. What it costs beyond the fitted copy itself.
double measure_offload_overhead(int dev, const LineFit& h2d_pageable, bool quick) {
  const std::vector<size_t> sizes =
      quick ? std::vector<size_t>{1u << 20, 16u << 20} : std::vector<size_t>{256u << 10, 4u << 20, 64u << 20};
  std::vector<uint8_t> host(sizes.back(), 1);
  std::vector<double> extra;
  for (size_t n : sizes) {
    for (int r = 0; r < (quick ? 3 : 7); ++r) {
      const auto t0 = Clock::now();
      {
        cu::DeviceBuffer b(dev, n, "offload probe");
        DMAP_CUDA(cudaMemcpy(b.data(), host.data(), n, cudaMemcpyHostToDevice));
      }
      const double t = since(t0);
      extra.push_back(t - (h2d_pageable.intercept + h2d_pageable.slope * static_cast<double>(n)));
    }
  }
  return std::max(0.0, median(extra));
}

struct GemmFit {
  LineFit stream;  // M = 1: time vs weight bytes
  double bw = 0;
  std::vector<std::pair<double, double>> curve;  // (M, FLOP/s)
};

GemmFit measure_gemm(int dev, DType d, const exec::ExecConfig& c, bool quick,
                     const std::function<void(const std::string&)>& tick) {
  const DType t = d;
  const size_t e = exec::elt_size(t);
  const int64_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {kv, c.hidden}, {q, c.hidden}, {c.hidden, q}, {c.inter, c.hidden}, {c.hidden, c.inter}, {c.vocab, c.hidden}};
  const std::vector<int64_t> rows =
      quick ? std::vector<int64_t>{16, 256} : std::vector<int64_t>{16, 64, 256, 1024, 4096};
  cu::Stream s(dev);
  const cu::BlasHandle blas(dev, s.get());
  const int64_t max_m = rows.back();
  int64_t max_k = 0, max_n = 0;
  for (const auto& [n, k] : shapes) {
    max_k = std::max(max_k, k);
    max_n = std::max(max_n, n);
  }
  cu::DeviceBuffer x(dev, static_cast<size_t>(max_m * max_k) * e, "gemm probe x");
  cu::DeviceBuffer y(dev, static_cast<size_t>(max_m * max_n) * e, "gemm probe y");
  DMAP_CUDA(cudaMemset(x.data(), 0x3c, x.bytes()));
  GemmFit g;
  std::vector<double> xs, ys;
  auto pool_for = [&](int64_t n, int64_t k, std::vector<cu::DeviceBuffer>& pool) {
    // Copies enough to outgrow the L2 cache: each timed product reads the next one from HBM.
    const size_t bytes = static_cast<size_t>(n * k) * e;
    const size_t copies = std::max<size_t>(2, (size_t{512} << 20) / bytes);
    for (size_t i = 0; i < copies; ++i) {
      pool.emplace_back(dev, bytes, "gemm probe weights");
      DMAP_CUDA(cudaMemset(pool.back().data(), 0x3c, bytes));
    }
  };
  for (const auto& [n, k] : shapes) {
    tick("GPU matrix-vector " + std::string(dtype_name(d)));
    std::vector<cu::DeviceBuffer> pool;
    pool_for(n, k, pool);
    size_t i = 0;
    const double sec = time_on_stream(dev, s.get(), quick ? 5 : 21, [&] {
      cu::gemm(blas.get(), t, x.data(), 1, k, pool[i++ % pool.size()].data(), n, y.data(), false);
    });
    xs.push_back(static_cast<double>(n * k) * static_cast<double>(e));
    ys.push_back(sec);
  }
  g.stream = fit_line(xs, ys);
  g.bw = bandwidth_of(g.stream) > 0 ? bandwidth_of(g.stream) : xs.back() / ys.back();
  g.curve.push_back({1.0, 2.0 * g.bw / static_cast<double>(e)});
  for (int64_t m : rows) {
    std::vector<double> rates;
    for (const auto& [n, k] : {shapes[1], shapes[3]}) {
      tick("GPU matrix products " + std::string(dtype_name(d)) + " M=" + std::to_string(m));
      std::vector<cu::DeviceBuffer> pool;
      pool_for(n, k, pool);
      size_t i = 0;
      const double sec = time_on_stream(dev, s.get(), quick ? 5 : 11, [&] {
        cu::gemm(blas.get(), t, x.data(), m, k, pool[i++ % pool.size()].data(), n, y.data(), false);
      });
      rates.push_back(2.0 * static_cast<double>(m * n * k) / sec);
    }
    g.curve.push_back({static_cast<double>(m), median(rates)});
  }
  return g;
}

struct GpuAttention {
  std::vector<std::pair<double, double>> decode, prefill;  // (context or prompt, seconds)
  LineFit fit;
  double overhead_s = 0;
  std::vector<std::pair<double, double>> curve;  // (M, FLOP/s)
};

GpuAttention measure_gpu_attention(int dev, DType d, const exec::ExecConfig& c, bool quick,
                                   const std::function<void(const std::string&)>& tick) {
  const DType t = d;
  const size_t e = exec::elt_size(t);
  const int64_t limit = std::min<int64_t>(16384, cu::attention_max_context(dev, c.head_dim));
  std::vector<int64_t> contexts, prompts;
  for (int64_t ctx : quick ? std::vector<int64_t>{256, 2048} : std::vector<int64_t>{256, 1024, 4096, 16384}) {
    if (ctx <= limit) contexts.push_back(ctx);
  }
  if (contexts.empty() || contexts.back() != limit) contexts.push_back(limit);
  for (int64_t p : quick ? std::vector<int64_t>{64, 256} : std::vector<int64_t>{64, 256, 1024}) {
    if (p <= limit) prompts.push_back(p);
  }
  const int64_t S = limit, H = c.heads, KV = c.kv_heads, hd = c.head_dim;
  cu::DeviceBuffer kc(dev, static_cast<size_t>(KV * S * hd) * e, "attention probe keys");
  cu::DeviceBuffer vc(dev, static_cast<size_t>(KV * S * hd) * e, "attention probe values");
  const int64_t rows = prompts.empty() ? 1 : prompts.back();
  cu::DeviceBuffer q(dev, static_cast<size_t>(rows * H * hd) * e, "attention probe queries");
  cu::DeviceBuffer out(dev, static_cast<size_t>(rows * H * hd) * e, "attention probe output");
  for (auto* b : {&kc, &vc, &q}) DMAP_CUDA(cudaMemset(b->data(), 0x3c, b->bytes()));
  cu::Stream s(dev);
  GpuAttention a;
  for (int64_t ctx : contexts) {
    tick("GPU attention " + std::string(dtype_name(d)) + " decode, context " + std::to_string(ctx));
    const double sec = time_on_stream(dev, s.get(), quick ? 5 : 21, [&] {
      cu::attention(t, q.data(), kc.data(), vc.data(), out.data(), 1, 1, H, KV, hd, S, ctx - 1, c.sliding_window,
                    1.0f / std::sqrt(static_cast<float>(hd)), 0.0f, s.get());
    });
    a.decode.push_back({static_cast<double>(ctx), sec});
  }
  for (int64_t p : prompts) {
    tick("GPU attention " + std::string(dtype_name(d)) + " prefill, " + std::to_string(p) + " tokens");
    const double sec = time_on_stream(dev, s.get(), quick ? 3 : 7, [&] {
      cu::attention(t, q.data(), kc.data(), vc.data(), out.data(), 1, p, H, KV, hd, S, 0, c.sliding_window,
                    1.0f / std::sqrt(static_cast<float>(hd)), 0.0f, s.get());
    });
    a.prefill.push_back({static_cast<double>(p), sec});
  }
  const AttentionFit f = fit_attention(H, hd, a.decode, a.prefill);
  a.fit = f.decode;
  a.overhead_s = f.overhead_s;
  a.curve = f.curve;
  return a;
}

// Host time per launch of a tiny kernel, issued back to back (the GPU finishes each long
// before the next is issued): the CPU side of a launch.
double measure_launch(int dev) {
  cu::Stream s(dev);
  cu::DeviceBuffer x(dev, 1024, "launch probe"), h(dev, 1024, "launch probe");
  DMAP_CUDA(cudaMemset(x.data(), 0, 1024));
  DMAP_CUDA(cudaMemset(h.data(), 0, 1024));
  constexpr int kLaunches = 2000;
  std::vector<double> per;
  for (int r = 0; r < 6; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < kLaunches; ++i) cu::add_residual(DType::kFloat32, x.data(), h.data(), 256, s.get());
    s.sync();
    if (r > 0) per.push_back(since(t0) / kLaunches);
  }
  return median(per);
}

// The model's embedding, first `gpu_layers` layers, norm and head on GPU `dev`; the rest on
// the CPU.
DeviceMap gpu_split_map(const ModelSpec& spec, int dev, int64_t gpu_layers) {
  const exec::ExecConfig c = exec::exec_config(spec);
  DeviceMap dm;
  dm.assign("model.embed_tokens", Device::gpu(dev));
  for (int64_t l = 0; l < c.layers; ++l)
    dm.assign("model.layers." + std::to_string(l), l < gpu_layers ? Device::gpu(dev) : Device::cpu());
  dm.assign("model.norm", Device::gpu(dev));
  if (!c.tie) dm.assign("lm_head", Device::gpu(dev));
  return dm;
}

sim::GpuCalibration gpu_calibration(double bw, double launch_us, const std::map<DType, GemmFit>& gemm,
                                    const std::map<DType, GpuAttention>& att) {
  sim::GpuCalibration g;
  g.memory_bandwidth_gbs = bw / 1e9;
  g.launch_overhead_us = launch_us;
  for (const auto& [d, f] : gemm)
    for (const auto& [m, r] : f.curve) g.matmul_tflops[d].push_back({m, r / 1e12});
  std::vector<double> overheads;
  for (const auto& [d, a] : att) {
    for (const auto& [m, r] : a.curve) g.attention_tflops[d].push_back({m, r / 1e12});
    overheads.push_back(a.overhead_s);
  }
  g.attention_overhead_us = median(overheads) * 1e6;
  return g;
}

}  // namespace

GpuProfile profile_gpu(const GpuProfileOptions& opt, const sim::Hardware& hw) {
  const int dev = opt.device;
  if (dev < 0 || dev >= cu::device_count()) {
    throw InputError("--device cuda:" + std::to_string(dev) + ": no such CUDA device (this machine has " +
                     std::to_string(cu::device_count()) + " usable)");
  }
  if (static_cast<int>(hw.gpus.size()) <= dev) {
    throw InputError("--hardware " + hw.describe() + " has no GPU " + std::to_string(dev) +
                     ": name a system preset with the profiled GPU (e.g. h200)");
  }
  cu::use_device(dev);
  const cu::DeviceInfo info = cu::device_info(dev);
  const exec::ExecConfig c = exec::exec_config(opt.model);
  GpuProfile out;
  out.gpu_name = info.name + " (sm_" + std::to_string(info.sm_major) + std::to_string(info.sm_minor) + ", " +
                 fmt(static_cast<double>(info.total_bytes) / (1u << 30), 4) + " GiB)";
  out.driver =
      "CUDA driver " + std::to_string(info.driver_version) + ", runtime " + std::to_string(info.runtime_version);
  int step = 0;
  const int steps = 4 + static_cast<int>(opt.dtypes.size()) * ((opt.quick ? 2 : 5) * 2 + 6 + (opt.quick ? 5 : 8)) + 2;
  auto tick = [&](const std::string& what) {
    if (opt.progress) opt.progress(what, ++step, steps);
  };

  const CopyFits copies = measure_copies(dev, opt.quick, tick);
  out.offload_tensor_overhead_us = measure_offload_overhead(dev, copies.h2d_pageable, opt.quick) * 1e6;
  std::map<DType, GemmFit> gemm;
  std::map<DType, GpuAttention> att;
  double bw = 0;
  for (DType d : opt.dtypes) {
    gemm[d] = measure_gemm(dev, d, c, opt.quick, tick);
    att[d] = measure_gpu_attention(dev, d, c, opt.quick, tick);
    bw = std::max(bw, gemm[d].bw);
  }
  tick("GPU launch probe");
  const double launch_probe_us = measure_launch(dev) * 1e6;
  std::vector<double> latencies;
  for (const LineFit* f : {&copies.h2d_pinned, &copies.h2d_pageable, &copies.d2h_pinned, &copies.d2h_pageable}) {
    latencies.push_back(std::max(0.0, f->intercept));
  }
  out.link.h2d_pinned_gbs = bandwidth_of(copies.h2d_pinned) / 1e9;
  out.link.h2d_pageable_gbs = bandwidth_of(copies.h2d_pageable) / 1e9;
  out.link.d2h_pinned_gbs = bandwidth_of(copies.d2h_pinned) / 1e9;
  out.link.d2h_pageable_gbs = bandwidth_of(copies.d2h_pageable) / 1e9;
  out.link.copy_latency_us = median(latencies) * 1e6;

  // Launch overhead: whole-model decode steps all on the GPU, measured minus predicted without
  // overhead, least squares over the dtypes (skipped when the model does not fit the GPU).
  const DeviceMap all_gpu = strategies::whole_model_map(Device::gpu(dev));
  RunSettings rs = opt.run;
  rs.backend = "cuda";
  rs.semantics = exec::Semantics::kAccelerate;
  double launch_us = launch_probe_us;
  std::ostringstream fit;
  double num = 0, den = 0;
  std::vector<std::string> runs;
  for (DType d : opt.dtypes) {
    double bytes = 0;
    for (const auto& [name, shape] : exec::ModelWeights::expected(c)) {
      double n = static_cast<double>(d == DType::kFloat32 ? 4 : 2);
      for (int64_t x : shape) n *= static_cast<double>(x);
      bytes += n;
    }
    if (bytes > 0.8 * static_cast<double>(info.free_bytes)) {
      runs.push_back("{dtype: " + std::string(dtype_name(d)) + ", skipped: \"the model does not fit the GPU\"}");
      continue;
    }
    tick("GPU whole-model run " + std::string(dtype_name(d)));
    const PlacementRun r = run_placement(opt.model, d, all_gpu, rs);
    sim::Calibration zero, one;
    zero.link = one.link = out.link;
    zero.gpus[dev] = gpu_calibration(bw, 0.0, gemm, att);
    one.gpus[dev] = gpu_calibration(bw, 1.0, gemm, att);
    const double p0 =
        predict(opt.model, d, all_gpu, hw, &zero, rs.prompt, rs.new_tokens, sim::Semantics::kAccelerate).decode_token_s;
    const double p1 =
        predict(opt.model, d, all_gpu, hw, &one, rs.prompt, rs.new_tokens, sim::Semantics::kAccelerate).decode_token_s;
    const double k = (p1 - p0) / 1e-6;
    num += k * (r.decode_token_s - p0);
    den += k * k;
    runs.push_back("{dtype: " + std::string(dtype_name(d)) + ", measured_prefill_s: " + fmt(r.prefill_s) +
                   ", measured_decode_s: " + fmt(r.decode_token_s) +
                   ", predicted_decode_without_launches_s: " + fmt(p0) + ", launches: " + fmt(k) + "}");
  }
  if (den > 0) launch_us = std::max(0.0, num / den) * 1e6;
  out.gpus[dev] = gpu_calibration(bw, launch_us, gemm, att);

  fit << "  gpu_" << dev << ":\n";
  fit << "    device: \"" << out.gpu_name << "\"\n";
  auto line = [&](const char* name, const LineFit& f) {
    fit << "    " << name << ": {gbs: " << fmt(bandwidth_of(f) / 1e9) << ", latency_us: " << fmt(f.intercept * 1e6)
        << ", median_abs_residual: " << fmt(f.fit.median_abs_residual, 3)
        << ", max_abs_residual: " << fmt(f.fit.max_abs_residual, 3) << "}\n";
  };
  line("h2d_pinned", copies.h2d_pinned);
  line("h2d_pageable", copies.h2d_pageable);
  line("d2h_pinned", copies.d2h_pinned);
  line("d2h_pageable", copies.d2h_pageable);
  for (const auto& [d, g] : gemm) {
    fit << "    stream_" << dtype_name(d) << ": {bandwidth_gbs: " << fmt(g.bw / 1e9)
        << ", intercept_us: " << fmt(g.stream.intercept * 1e6)
        << ", median_abs_residual: " << fmt(g.stream.fit.median_abs_residual, 3) << "}\n";
  }
  for (const auto& [d, a] : att) {
    fit << "    attention_" << dtype_name(d) << ": {decode_context_s: " << curve_yaml(a.decode)
        << ", prefill_tokens_s: " << curve_yaml(a.prefill) << ", per_key_ns: " << fmt(a.fit.slope * 1e9)
        << ", intercept_us: " << fmt(a.fit.intercept * 1e6) << "}\n";
  }
  fit << "    launch: {probe_us: " << fmt(launch_probe_us) << ", whole_model_fit_us: " << fmt(launch_us) << "}\n";
  fit << "    offload_tensor_overhead_us: " << fmt(out.offload_tensor_overhead_us) << "\n";
  fit << "    whole_model_runs:\n";
  for (const auto& r : runs) fit << "      - " << r << "\n";
  out.fit_yaml = fit.str();

  // One offloaded run (half the layers on the CPU, accelerate semantics), traced.
#if DMAP_HAVE_CUPTI
  {
    tick("traced offloaded run");
    const DType d = opt.dtypes.front();
    const DeviceMap split = gpu_split_map(opt.model, dev, c.layers / 2);
    const ModuleTree tree = build_module_tree(opt.model);
    const exec::ModelWeights w = exec::ModelWeights::random(c, d, 3);
    const exec::Placement p = exec::map_placement(tree, split, w, c, exec::Semantics::kAccelerate);
    exec::RunOptions ro;
    ro.max_seq = rs.prompt + 3;
    ro.threads = rs.threads;
    ro.record_events = true;
    exec::CudaModel m(c, w, p, ro);
    CuptiTracer tracer;
    trace::CuptiModuleObserver obs(tracer);
    m.set_observer(&obs);
    tracer.start();
    std::vector<int32_t> ids(static_cast<size_t>(rs.prompt), 1);
    exec::generate(m, ids, rs.prompt, 3);
    out.trace = tracer.stop();
    m.set_observer(nullptr);
  }
#endif

  out.summary.push_back("GPU " + std::to_string(dev) + ": " + out.gpu_name + ", " + out.driver);
  out.summary.push_back("host->device " + fmt(bandwidth_of(copies.h2d_pinned) / 1e9) + " GB/s pinned, " +
                        fmt(bandwidth_of(copies.h2d_pageable) / 1e9) + " GB/s pageable; copy latency " +
                        fmt(median(latencies) * 1e6) + " us");
  out.summary.push_back("GPU memory bandwidth (weight streaming) " + fmt(bw / 1e9) + " GB/s; launch " + fmt(launch_us) +
                        " us per operator (probe " + fmt(launch_probe_us) + " us per kernel)");
  out.summary.push_back("accelerate per-tensor overhead " + fmt(out.offload_tensor_overhead_us) +
                        " us beyond the copy");
  return out;
}

}  // namespace dmap::profile
