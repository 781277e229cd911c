#include "profile/llama_fit.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <limits>
#include <memory>
#include <sstream>

#include "core/error.h"
#include "core/stats.h"
#include "exec/config.h"
#include "exec/exec_dtype.h"
#include "exec/gguf_export.h"
#include "exec/weights.h"
#include "profile/fit.h"
#include "profile/runtime_fit.h"

namespace dmap::profile {
namespace {

namespace fs = std::filesystem;

// The same family and layer count at tiny shapes (scripts/runtime_probe.py's tiny_of).
exec::ExecConfig tiny_of(exec::ExecConfig c) {
  c.hidden = 64;
  c.inter = 96;
  c.heads = 4;
  c.kv_heads = std::min<int64_t>(4, c.kv_heads);
  c.head_dim = 16;
  c.vocab = 128;
  return c;
}

// A scratch GGUF file of the model's weights in one dtype, removed with it.
struct ExportedModel {
  fs::path path;
  ExportedModel(const exec::ExecConfig& cfg, DType dtype, const RunSettings& run, const std::string& what) {
    const fs::path dir = run.scratch_dir.empty() ? fs::temp_directory_path() : fs::path(run.scratch_dir);
    path = dir /
           ("dmap_llama_" + what + "_" + std::string(dtype_name(dtype)) + "_" + std::to_string(::getpid()) + ".gguf");
    try {  // the weights freed (end of scope) before llama.cpp maps the file
      const exec::ModelWeights w = exec::ModelWeights::random(cfg, dtype, run.seed);
      exec::export_gguf(cfg, w, gguf_type_of(dtype), what, path.string());
    } catch (...) {
      std::error_code ec;
      fs::remove(path, ec);
      throw;
    }
  }
  ExportedModel(const ExportedModel&) = delete;
  ExportedModel& operator=(const ExportedModel&) = delete;
  ~ExportedModel() {
    std::error_code ec;
    fs::remove(path, ec);
  }
};

// The decode a fit rests on: the median of its sessions where there are several (one session
// caught in a slow spell of the machine does not move it).
double fitted_decode(const LlamaProbe& first, const std::vector<double>& sessions) {
  return sessions.size() >= 2 ? median(sessions) : first.decode();
}

// The model exported in `dtype` and timed (mapped, or read in with `no_mmap`); the file removed.
LlamaProbe time_export(const exec::ExecConfig& cfg, DType dtype, const RunSettings& run, const std::string& probe,
                       int rounds, const std::string& what, bool no_mmap = false) {
  const ExportedModel file(cfg, dtype, run, what);
  LlamaProbeOptions o{probe, file.path.string(), run.threads, run.prompt, run.new_tokens, rounds, run.scratch_dir};
  o.no_mmap = no_mmap;
  return run_llama_probe(o);
}

}  // namespace

GgufFileType gguf_type_of(DType d) {
  switch (d) {
    case DType::kFloat32: return GgufFileType::kF32;
    case DType::kFloat16: return GgufFileType::kF16;
    case DType::kBFloat16: return GgufFileType::kBF16;
    default: break;
  }
  throw InputError(std::string("the llama.cpp runtime is profiled in float32, float16 or bfloat16, not ") +
                   std::string(dtype_name(d)));
}

std::vector<MatvecSample> matvec_samples(const std::vector<LlamaMatvec>& timed) {
  std::vector<MatvecSample> out;
  for (const auto& m : timed) out.push_back({m.n, m.k, m.seconds});
  return out;
}

std::vector<LlamaRun> measure_llama(const ModelSpec& spec, const std::vector<DType>& dtypes, const RunSettings& run,
                                    const std::string& probe, int rounds, bool tiny, bool no_mmap,
                                    ReferenceBracket* bracket) {
  const exec::ExecConfig cfg = exec::exec_config(spec);
  exec::gguf_arch(cfg);  // a family the exporter writes
  std::vector<LlamaRun> out;
  if (!tiny) {
    // A validation: each dtype's model in the load mode asked for, `rounds` repetitions in one process.
    for (DType d : dtypes) {
      LlamaRun& r = out.emplace_back();
      r.dtype = d;
      r.model = time_export(cfg, d, run, probe, rounds, "model", no_mmap);
    }
    return out;
  }
  // A fit: each dtype's model timed mapped and read in, in kLlamaFitSessions processes per mode,
  // the dtypes taking turns, so that the runs spread over minutes of the machine's state; then
  // each dtype's tiny model (the per-operator cost) and llama.cpp's own one-row products.
  std::vector<std::unique_ptr<ExportedModel>> files;
  for (DType d : dtypes) files.push_back(std::make_unique<ExportedModel>(cfg, d, run, "model"));
  // One session, bracketed when asked: its decode referred to calibration time.
  auto timed = [&](LlamaRun& r, const auto& fn) {
    if (bracket == nullptr) return fn();
    LlamaProbe p = bracket->run(fn);
    r.probe_ratios.push_back(bracket->ratio());
    for (LlamaRound& round : p.rounds) round.decode_s = at_calibration_time(round.decode_s, bracket->ratio());
    return p;
  };
  out.resize(dtypes.size());
  for (int s = 0; s < kLlamaFitSessions; ++s) {
    for (size_t i = 0; i < dtypes.size(); ++i) {
      LlamaRun& r = out[i];
      r.dtype = dtypes[i];
      LlamaProbeOptions o{probe,  files[i]->path.string(), run.threads, run.prompt, run.new_tokens,
                          rounds, run.scratch_dir};
      const LlamaProbe mapped = timed(r, [&] { return run_llama_probe(o); });
      o.no_mmap = true;
      const LlamaProbe read_in = timed(r, [&] { return run_llama_probe(o); });
      if (s == 0) {
        r.model = mapped;
        r.no_mmap = read_in;
      }
      r.model_decodes.push_back(mapped.decode());
      r.no_mmap_decodes.push_back(read_in.decode());
    }
  }
  for (size_t i = 0; i < dtypes.size(); ++i) {
    const DType d = dtypes[i];
    LlamaRun& r = out[i];
    r.tiny = time_export(tiny_of(cfg), d, run, probe, rounds, "tiny");
    std::vector<LlamaMatvecShape> shapes;
    const std::string type = d == DType::kFloat32 ? "f32" : d == DType::kBFloat16 ? "bf16" : "f16";
    for (const auto& [n, k] : matvec_shapes(spec)) shapes.push_back({type, n, k});
    if (bracket == nullptr) {
      r.matvec = run_llama_matvec(probe, shapes, run.threads, 2 * rounds + 1, run.scratch_dir);
      continue;
    }
    r.matvec =
        bracket->run([&] { return run_llama_matvec(probe, shapes, run.threads, 2 * rounds + 1, run.scratch_dir); });
    r.probe_ratios.push_back(bracket->ratio());
    const double q = bracket->ratio();
    for (LlamaMatvec& m : r.matvec) {
      m.seconds = at_calibration_time(m.seconds, q);
      if (q > 0) m.gbs *= q;  // bytes over the referred seconds
    }
  }
  return out;
}

LlamaFit fit_llama_profile(const ModelSpec& spec, const sim::Hardware& hw, const sim::Calibration& base,
                           const std::vector<LlamaRun>& runs) {
  DMAP_CHECK(!runs.empty(), "a llama.cpp fit without runs");
  LlamaFit f;
  YAML::Node fit;
  const DeviceMap cpu_map = layers_on_disk_map(spec, 0);
  sim::Calibration cal = base;
  sim::RuntimeProfile& p = cal.runtimes[sim::Runtime::kLlamaCpp];
  p = sim::RuntimeProfile{};
  p.measured = true;
  const LlamaProbe& first = runs.front().model;
  p.version = first.version + ", " + std::to_string(first.threads) + " threads";
  for (const auto& r : runs) p.matvec_efficiency[r.dtype] = p.matmul_efficiency[r.dtype] = 1.0;
  // llama.cpp's own one-row products, where the grid was timed.
  std::map<DType, MatvecTerms> terms;
  for (const auto& r : runs) {
    if (r.matvec.size() < 3) continue;
    const MatvecTerms t = fit_matvec_terms(matvec_samples(r.matvec), r.dtype);
    terms[r.dtype] = t;
    p.matvec_gbs[r.dtype] = round4(t.gbs);
    p.matvec_row_ns[r.dtype] = round4(t.row_ns);
  }
  // The load mode: --no-mmap where the file read into memory decodes over 5 % faster (the
  // median over dtypes of mapped / read-in).
  std::vector<double> factors;
  auto mapped_decode = [](const LlamaRun& r) { return fitted_decode(r.model, r.model_decodes); };
  auto read_in_decode = [](const LlamaRun& r) { return fitted_decode(r.no_mmap, r.no_mmap_decodes); };
  for (const auto& r : runs) {
    if (r.no_mmap.rounds.empty() || !(read_in_decode(r) > 0)) continue;
    p.mapped_factor[r.dtype] = round4(mapped_decode(r) / read_in_decode(r));
    factors.push_back(mapped_decode(r) / read_in_decode(r));
  }
  // Per dtype: the mapped file's penalty is the dtype's (on the AMD EPYC VM float32 decoded 1.6x
  // slower mapped, bfloat16 and float16 as fast), and a mapped float32 run scattered by up to 1.6x
  // between rounds while read in it held within a few percent. A dtype not measured takes the median.
  for (const auto& [d, x] : p.mapped_factor) p.load[d] = x > 1.05;
  p.no_mmap = !factors.empty() && median(factors) > 1.05;
  // The run the profile is fitted on: the load mode it predicts (its prefill; its sessions' decode).
  auto chosen = [&](const LlamaRun& r) -> const LlamaProbe& { return p.no_mmap_in(r.dtype) ? r.no_mmap : r.model; };
  auto chosen_decode = [&](const LlamaRun& r) { return p.no_mmap_in(r.dtype) ? read_in_decode(r) : mapped_decode(r); };
  auto pred = [&](DType d) {
    return predict(spec, d, cpu_map, hw, &cal, first.prompt, first.new_tokens, sim::Semantics::kCpu,
                   sim::Runtime::kLlamaCpp);
  };
  f.kernels_per_step = operators_per_step(p, [&] { return pred(runs.front().dtype).decode_token_s; });
  // The tiny step is nearly all overhead, the same in every dtype: the least of the dtypes' (a
  // disturbed run only adds time: one tiny float32 run took 18 ms against 0.83 ms in bfloat16,
  // right after a 4.4 GB model was read into memory).
  double op_us = std::numeric_limits<double>::infinity();
  for (const auto& r : runs) op_us = std::min(op_us, r.tiny.decode() / f.kernels_per_step * 1e6);
  p.op_overhead_us = op_us;
  // The efficiencies (runtime_fit.h): the one-row first, the prefill depends on both.
  for (const auto& r : runs) {
    solve_efficiency(
        p.matvec_efficiency[r.dtype], [&] { return pred(r.dtype).decode_token_s; }, chosen_decode(r));
    solve_efficiency(
        p.matmul_efficiency[r.dtype], [&] { return pred(r.dtype).prefill_s; }, chosen(r).prefill());
  }
  std::ostringstream sum;
  sum << std::setprecision(3) << "llama.cpp runtime (" << first.version << "): " << *p.op_overhead_us
      << " us per operator (" << f.kernels_per_step << " per decode step); predicted and advised";
  if (p.mapped_factor.empty()) sum << " with the file mapped (read into memory: not measured)";
  for (const auto& [d, x] : p.mapped_factor) {
    sum << (d == p.mapped_factor.begin()->first ? " " : ", ") << dtype_name(d)
        << (p.no_mmap_in(d) ? " with --no-mmap (mapped it decoded " : " mapped (it decoded ") << x
        << "x the time read into memory)";
  }
  f.summary.push_back(sum.str());
  fit["load"] = p.no_mmap ? "no-mmap" : "mmap";
  for (const auto& [d, no] : p.load) fit["load_" + std::string(dtype_name(d))] = no ? "no-mmap" : "mmap";
  fit["llama_cpp"] = first.version;
  fit["system"] = first.system;
  fit["threads"] = first.threads;
  fit["prompt"] = first.prompt;
  fit["new_tokens"] = first.new_tokens;
  fit["kernels_per_decode_step"] = round4(f.kernels_per_step);
  for (const auto& r : runs) {
    const sim::Prediction q = pred(r.dtype);
    SelfCheckRow row;
    row.dtype = r.dtype;
    row.placement = "cpu";
    row.measured_prefill_s = chosen(r).prefill();
    row.predicted_prefill_s = q.prefill_s;
    row.measured_decode_s = chosen_decode(r);
    row.predicted_decode_s = q.decode_token_s;
    f.self_check.push_back(row);
    std::ostringstream s;
    s << std::setprecision(3) << "  " << dtype_name(r.dtype) << " (GGUF " << gguf_file_type_name(gguf_type_of(r.dtype))
      << "): one-row products at " << p.matvec_efficiency[r.dtype]
      << (terms.count(r.dtype) ? " of llama.cpp's own measured rate" : " of dmap's rate") << ", M >= 2 at "
      << p.matmul_efficiency[r.dtype] << "; decode " << chosen_decode(r) * 1e3 << " ms/token, prefill "
      << chosen(r).prefill() * 1e3 << " ms measured " << (p.no_mmap_in(r.dtype) ? "read into memory" : "mapped")
      << "; tiny decode " << r.tiny.decode() * 1e6 << " us";
    if (!r.no_mmap.rounds.empty()) {
      s << "; with --no-mmap " << read_in_decode(r) * 1e3 << " ms/token (" << mapped_decode(r) / read_in_decode(r)
        << "x the mapped file's speed)";
    }
    if (const auto t = terms.find(r.dtype); t != terms.end()) {
      s << "; its one-row products " << matvec_terms_text(t->second);
    }
    f.summary.push_back(s.str());
    YAML::Node m;
    m["decode_ms"] = round4(mapped_decode(r) * 1e3);
    auto sessions_ms = [](const std::vector<double>& xs) {
      YAML::Node n;
      for (double x : xs) n.push_back(round4(x * 1e3));
      n.SetStyle(YAML::EmitterStyle::Flow);
      return n;
    };
    if (!r.model_decodes.empty()) m["decode_sessions_ms"] = sessions_ms(r.model_decodes);
    if (!r.no_mmap_decodes.empty()) m["no_mmap_decode_sessions_ms"] = sessions_ms(r.no_mmap_decodes);
    if (!r.probe_ratios.empty()) {
      YAML::Node q;
      for (double x : r.probe_ratios) q.push_back(std::round(x * 1000) / 1000);
      q.SetStyle(YAML::EmitterStyle::Flow);
      m["probe_ratios"] = q;  // each session's (mapped, read in, ...) then the products'; decode referred by them
    }
    m["prefill_ms"] = round4(r.model.prefill() * 1e3);
    m["tiny_decode_us"] = round4(r.tiny.decode() * 1e6);
    m["rounds"] = static_cast<int>(r.model.rounds.size());
    if (!r.no_mmap.rounds.empty()) {
      m["no_mmap_decode_ms"] = round4(read_in_decode(r) * 1e3);
      m["no_mmap_prefill_ms"] = round4(r.no_mmap.prefill() * 1e3);
    }
    if (const auto t = terms.find(r.dtype); t != terms.end()) {
      m["matvec"] = matvec_terms_node(t->second);
    }
    fit[std::string(dtype_name(r.dtype))] = m;
  }
  f.profile = p;
  f.fit = fit;
  return f;
}

}  // namespace dmap::profile
