// dmap profile --runtime transformers|llama.cpp (see profile_runtime.h).
#include "cli/profile_runtime.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/output.h"
#include "core/scenario.h"
#include "core/stats.h"
#include "profile/llama_fit.h"
#include "profile/llama_probe.h"
#include "profile/load_guard.h"
#include "profile/reference_bracket.h"
#include "profile/runtime_probe.h"
#include "profile/runtime_validate.h"
#include "exec/config.h"
#include "exec/gguf_export.h"

namespace dmap::cli {

namespace {

std::string script_path() {
  namespace fs = std::filesystem;
  const fs::path p = fs::path(config_dir()).parent_path() / "scripts" / "runtime_probe.py";
  if (!fs::exists(p)) throw RuntimeFailure("the runtime probe script is missing: " + p.string());
  return p.string();
}

// The dtypes PyTorch computes in on this CPU (the probe's dtype check, before any measurement):
// one asked for with --dtype that it cannot is exit 2; one of the default list is left out, said
// on standard error and returned in `unsupported` (the profile and the report record it).
std::vector<DType> torch_dtypes(const profile::TorchProbeOptions& po, const ProfileContext& ctx,
                                std::map<DType, std::string>& unsupported) {
  const profile::TorchDtypeSupport s = profile::torch_dtype_support(po);
  std::vector<DType> out;
  for (DType d : ctx.dtypes) {
    const auto it = s.unsupported.find(d);
    if (it == s.unsupported.end()) {
      out.push_back(d);
      continue;
    }
    const std::string what = "PyTorch " + s.torch_version + " cannot compute in " + std::string(dtype_name(d)) +
                             " on this CPU (" + it->second + ")";
    if (ctx.dtypes_given) throw InputError("--dtype " + std::string(dtype_name(d)) + ": " + what + "; leave it out");
    std::fprintf(stderr, "dmap profile: %s: the transformers runtime is not measured in it\n", what.c_str());
    unsupported[d] = it->second;
  }
  if (out.empty()) throw InputError("--dtype: PyTorch computes in none of the dtypes asked for on this CPU");
  return out;
}

}  // namespace

int profile_runtime(const Args& a, sim::Runtime runtime, const ProfileContext& ctx) {
  if (runtime == sim::Runtime::kDmap)
    throw InternalError("profile_runtime: dmap's own runtime is `dmap profile --real`");
  const bool llama = runtime == sim::Runtime::kLlamaCpp;
  const std::string name = sim::runtime_name(runtime);
  const std::string key = sim::runtime_fit_key(runtime);
  const std::string cal_file = a.get("calibration").value_or(config_dir() + "/calibrations/" + ctx.name + ".yaml");
  if (!std::filesystem::exists(cal_file)) {
    throw InputError(cal_file + ": no such calibration; the " + name +
                     " profile is fitted against this machine's calibration: run `dmap profile --real` first, or give "
                     "--calibration FILE");
  }
  sim::Calibration cal = sim::load_calibration(cal_file);
  profile::TorchProbeOptions po;
  if (!llama) po.script = script_path();
  po.run = ctx.run;
  po.dtypes = ctx.dtypes;
  profile::LoadGuardSettings guard;

  if (a.has("real")) {
    const std::string model_id = a.get("model").value_or("tinyllama_1b");
    const ModelSpec spec = resolve_model(model_id, "", models_dir());
    const std::string out = a.get("out").value_or(cal_file);
    check_output_file(out, "--out");  // before minutes of measurement
    const int reps = a.has("quick") ? 1 : 3;
    profile::LoadGuard g(guard);
    // The machine's state around each of the runtime's measurements, against the calibration's
    // (its reference probe): each waits for the probe to read as at calibration time, and its
    // decode figures are referred to calibration time by the probe's ratio (reference_bracket.h).
    const double ref = cal.host.reference_probe_ms.value_or(0.0);
    profile::ReferenceBracket bracket(ref, ctx.run.threads);
    std::vector<profile::SelfCheckRow> self_check;
    std::vector<std::string> summary;
    YAML::Node fit_node;
    if (llama) {
      const std::string probe = profile::find_llama_probe();
      for (DType d : ctx.dtypes) profile::gguf_type_of(d);  // a dtype llama.cpp is profiled in
      std::fprintf(stderr, "dmap profile: llama.cpp runtime probe: %s\n", probe.c_str());
      const auto runs = g.run("llama.cpp runtime probe", [&] {
        return profile::measure_llama(spec, ctx.dtypes, ctx.run, probe, reps, true, false, &bracket);
      });
      profile::LlamaFit fit = profile::fit_llama_profile(spec, ctx.hw, cal, runs);
      cal.runtimes[runtime] = fit.profile;
      self_check = fit.self_check;
      summary = fit.summary;
      fit_node = fit.fit;
    } else {
      po.python = profile::find_torch_python();
      std::map<DType, std::string> unsupported;
      po.dtypes = torch_dtypes(po, ctx, unsupported);
      po.model_file = spec.source;
      po.reps = reps;
      po.matvec = profile::matvec_shapes(spec);  // PyTorch's own one-row products at these shapes
      std::fprintf(stderr, "dmap profile: transformers runtime probe: %s %s\n", po.python.c_str(), po.script.c_str());
      // accelerate's disk offload: a quarter of the layers on disk (its reads of offloaded weights,
      // against dmap's executor's rates; the validation's default placement), twice: glibc as it
      // comes, and glibc keeping what it frees (the copies then touch no fresh page: their own cost,
      // and the fresh pages' by difference).
      const int64_t disk_layers =
          std::max<int64_t>(1, profile::layers_of_fraction(0.25, exec::exec_config(spec).layers));
      auto session = [&](const std::string& what, int s, int64_t disk, bool keep_freed) {
        profile::TorchProbe p = g.run("transformers runtime probe" + what, [&] {
          profile::TorchProbeOptions o = po;
          if (s > 0 || disk > 0) o.matvec.clear();  // the grid in the first CPU-only process only
          o.disk_layers = disk;
          o.keep_freed = keep_freed;
          return bracket.run([&] { return profile::run_torch_probe(o); });
        });
        profile::refer_to_calibration_time(p, bracket.ratio());
        return p;
      };
      // Each in kTorchFitSessions processes (one with --quick), the three taking turns so that each
      // figure's processes are spread over the fit's minutes (the VM's spells last minutes), merged.
      const int sessions = a.has("quick") ? 1 : profile::kTorchFitSessions;
      std::vector<profile::TorchProbe> cpus, offloads, keeps;
      for (int s = 0; s < sessions; ++s) {
        cpus.push_back(session("", s, 0, false));
        offloads.push_back(session(", disk offload", s, disk_layers, false));
        keeps.push_back(session(", disk offload, glibc keeping freed memory", s, disk_layers, true));
      }
      const profile::TorchProbe probe = profile::merge_torch_probes(cpus);
      const profile::TorchProbe offload = profile::merge_torch_probes(offloads);
      const profile::TorchProbe kept = profile::merge_torch_probes(keeps);
      profile::TorchFit fit = profile::fit_torch_profile(spec, ctx.hw, cal, probe, &offload, &kept);
      fit.profile.unsupported = unsupported;
      cal.runtimes[runtime] = fit.profile;
      self_check = fit.self_check;
      summary = fit.summary;
      fit_node = fit.fit;
    }
    const profile::SelfCheckVerdict verdict = profile::check_self(self_check);
    if (!verdict.passed) {
      for (const auto& s : summary) std::fprintf(stderr, "  %s\n", s.c_str());  // what was fitted, to see why
      throw RuntimeFailure("dmap profile --runtime " + name +
                           ": the fit does not reproduce the probe's own runs, so nothing was written; " +
                           verdict.text);
    }
    std::cout << verdict.text;
    fit_node["model"] = model_id;
    fit_node["method"] = ctx.command;
    fit_node["remeasured"] = g.remeasured();
    if (!bracket.ratios().empty()) {
      const double ratio = median(bracket.ratios());
      fit_node["probe_ratio"] = std::round(ratio * 1000) / 1000;
      YAML::Node all;
      for (double q : bracket.ratios()) all.push_back(std::round(q * 1000) / 1000);
      all.SetStyle(YAML::EmitterStyle::Flow);
      fit_node["probe_ratios"] = all;
      fit_node["referred"] = "decode times and one-row products divided by their measurement's probe ratio";
      std::cout << "reference probe during the runtime's measurements: median " << ratio
                << " x the calibration's time (" << *std::min_element(bracket.ratios().begin(), bracket.ratios().end())
                << " .. " << *std::max_element(bracket.ratios().begin(), bracket.ratios().end())
                << "; above 1: the machine was slower); decode referred to calibration time\n";
    }
    if (!cal.fit.IsDefined() || !cal.fit.IsMap()) cal.fit = YAML::Node(YAML::NodeType::Map);
    cal.fit[key] = fit_node;
    profile::write_text_file(out, sim::calibration_yaml(cal));
    std::cout << "calibration: " << out << " (runtimes." << name << ")\n";
    for (const auto& s : summary) std::cout << "  " << s << "\n";
    return 0;
  }

  // --validate
  if (auto it = cal.runtimes.find(runtime); it == cal.runtimes.end() || !it->second.measured) {
    throw InputError(cal_file + ": the calibration has no measured " + name +
                     " profile (run `dmap profile --real "
                     "--runtime " +
                     name + " --calibration " + cal_file + "` first)");
  }
  std::map<DType, std::string> unsupported;  // transformers: dtypes PyTorch cannot compute in here
  std::vector<DType> dtypes = ctx.dtypes;
  if (!llama) {
    po.python = profile::find_torch_python();
    dtypes = torch_dtypes(po, ctx, unsupported);
  }
  std::vector<profile::RuntimeCase> cases;
  const std::string default_models = llama ? "tinyllama_1b,qwen25_05b,llama32_1b" : "tinyllama_1b,qwen3_06b,gemma3_1b";
  // transformers: CPU-only and a quarter of the layers offloaded to disk (accelerate's disk offload);
  // llama.cpp: CPU-only (it has no disk offload).
  const std::vector<double> fractions = fractions_flag(a, "disk-fractions", llama ? "0" : "0,0.25");
  for (double f : fractions) {
    if (llama && f > 0) {
      throw InputError("--disk-fractions: llama.cpp has no disk offload, so its validation runs CPU-only (0)");
    }
  }
  for (const auto& m : split_commas(a.get("models").value_or(default_models))) {
    const ModelSpec spec = resolve_model(m, "", models_dir());
    const int64_t layers = exec::exec_config(spec).layers;
    if (llama) exec::gguf_arch(exec::exec_config(spec));  // a family dmap exports (before any measurement)
    for (DType d : dtypes) {
      if (llama) profile::gguf_type_of(d);
      std::vector<int64_t> placed;  // fractions that round to the same layer count run once
      for (double f : fractions) {
        const int64_t n = profile::layers_of_fraction(f, layers);
        if (std::find(placed.begin(), placed.end(), n) != placed.end()) continue;
        placed.push_back(n);
        cases.push_back({m, spec, d, n});
        // accelerate's disk offload under PyTorch once more with glibc keeping what it frees.
        if (!llama && n > 0) cases.push_back({m, spec, d, n, /*keep_freed=*/true});
      }
    }
  }
  const std::string out =
      a.get("out").value_or("reports/validation/" + ctx.name + (llama ? "_llama_cpp.md" : "_transformers.md"));
  check_output_file(out, "--out");
  const int rounds = static_cast<int>(integer_flag(a, "rounds", 3, 1, 1000));
  const int extra = static_cast<int>(integer_flag(a, "extra-rounds", 2, 0, 100));
  guard.quiet.max_wait_s = static_cast<double>(integer_flag(a, "quiet-wait", 60, 0, 86400));
  const std::string label = "dmap profile --validate --runtime " + name;
  auto progress = [&](const std::string& what, int done, int total) {
    std::fprintf(stderr, "%s: %d/%d %s\n", label.c_str(), done, total, what.c_str());
  };
  profile::RuntimeValidation v = llama
                                     ? profile::validate_llama(cases, ctx.hw, cal, profile::find_llama_probe(), ctx.run,
                                                               rounds, extra, guard, progress)
                                     : profile::validate_torch(cases, ctx.hw, cal, po, rounds, extra, guard, progress);
  v.unsupported = unsupported;
  const std::string machine = profile::cpu_description() + ", " + profile::cpu_isa();
  profile::write_text_file(out, profile::runtime_validation_markdown(v, machine, cal_file));
  std::printf("%-14s %-9s %-18s %12s %12s %8s %12s %12s %8s %8s\n", "model", "dtype", "placement", "pred pre ms",
              "meas pre ms", "err", "pred ms/tok", "meas ms/tok", "err", "regret");
  for (const auto& r : v.rows) {
    std::printf("%-14s %-9s %-18s %12.1f %12.1f %+7.1f%% %12.2f %12.2f %+7.1f%% %7.1f%%\n", r.c.model_id.c_str(),
                std::string(dtype_name(r.c.dtype)).c_str(), r.c.placement().c_str(), r.predicted_prefill_s * 1e3,
                r.measured_prefill_s * 1e3, r.prefill_error() * 100, r.predicted_decode_s * 1e3,
                r.measured_decode_s * 1e3, r.decode_error() * 100, r.regret * 100);
  }
  std::printf(
      "held out: %d; time per output token: median |error| %.1f %%, p90 %.1f %%; prefill: median %.1f %%, p90 %.1f "
      "%%; max regret %.1f %%\nreport: %s\n",
      v.held_out, v.decode_median_abs * 100, v.decode_p90_abs * 100, v.prefill_median_abs * 100,
      v.prefill_p90_abs * 100, v.max_regret * 100, out.c_str());
  return 0;
}

}  // namespace dmap::cli
