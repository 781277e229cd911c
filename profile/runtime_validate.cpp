// The runtimes' validation (see runtime_validate.h).
#include "profile/runtime_validate.h"

#include "profile/reference_bracket.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <map>
#include <sstream>

#include "core/error.h"
#include "exec/config.h"
#include "core/module_tree.h"
#include "profile/llama_fit.h"
#include "profile/probes.h"
#include "core/stats.h"
#include "report/validation_report.h"

namespace dmap::profile {

std::string RuntimeCase::placement() const {
  if (disk_layers <= 0) return "cpu";
  return "disk " + std::to_string(disk_layers) + "/" + std::to_string(exec::exec_config(spec).layers) + " layers" +
         (keep_freed ? ", glibc keeping freed memory" : "");
}

bool RuntimeRow::steady() const { return probe_ratio > 0 && std::fabs(probe_ratio - 1) <= kSteadyBand; }

void summarize_runtime(RuntimeValidation& v) {
  std::vector<double> de, pe, scaled, sde, spe, fixed, at_fresh;
  v.heap_rows = v.heap_in_range = 0;
  std::vector<std::vector<double>> decode_rounds;
  v.held_out = 0;
  v.max_regret = 0;
  for (RuntimeRow& r : v.rows) {
    // The whole run: the prefill and every decode step after it.
    const double steps = static_cast<double>(std::max<int64_t>(0, v.new_tokens - 1));
    r.predicted_total_s = r.predicted_prefill_s + steps * r.predicted_decode_s;
    r.measured_total_s = r.measured_prefill_s + steps * r.measured_decode_s;
    const bool pick_dmap = r.dmap.predicted_total_s <= r.predicted_total_s;
    const bool dmap_won = r.dmap.measured_total_s <= r.measured_total_s;
    r.predicted_faster = pick_dmap ? "dmap" : sim::runtime_name(v.runtime);
    r.measured_faster = dmap_won ? "dmap" : sim::runtime_name(v.runtime);
    const double chosen = pick_dmap ? r.dmap.measured_total_s : r.measured_total_s;
    const double best = std::min(r.dmap.measured_total_s, r.measured_total_s);
    r.regret = best > 0 ? chosen / best - 1 : 0;
    v.max_regret = std::max(v.max_regret, r.regret);
    if (r.in_fit) continue;
    ++v.held_out;
    decode_rounds.push_back(r.decode_rounds);
    de.push_back(std::abs(r.decode_error()));
    pe.push_back(std::abs(r.prefill_error()));
    scaled.push_back(std::abs(r.scaled_decode_error()));
    if (r.c.disk_layers == 0 || r.c.keep_freed || r.predicted_decode_low_s < 0) {
      fixed.push_back(std::abs(r.decode_error()));
    } else {
      ++v.heap_rows;
      v.heap_in_range += r.in_range() ? 1 : 0;
      if (r.predicted_at_fresh_s > 0) at_fresh.push_back(std::abs(r.predicted_at_fresh_s / r.measured_decode_s - 1));
    }
    if (!r.steady()) continue;
    sde.push_back(std::abs(r.decode_error()));
    spe.push_back(std::abs(r.prefill_error()));
  }
  v.decode_median_abs = median(de);
  v.decode_p90_abs = percentile(de, 0.9);
  v.prefill_median_abs = median(pe);
  v.prefill_p90_abs = percentile(pe, 0.9);
  v.scaled_decode_median_abs = median(scaled);
  v.scaled_decode_p90_abs = percentile(scaled, 0.9);
  v.steady_rows = static_cast<int>(sde.size());
  v.steady_decode_median_abs = median(sde);
  v.steady_decode_p90_abs = percentile(sde, 0.9);
  v.steady_prefill_median_abs = median(spe);
  v.decode_noise = noise_floor(decode_rounds);
  v.fixed_rows = static_cast<int>(fixed.size());
  v.fixed_decode_median_abs = median(fixed);
  v.fixed_decode_p90_abs = percentile(fixed, 0.9);
  v.at_fresh_decode_median_abs = median(at_fresh);
  v.at_fresh_decode_p90_abs = percentile(at_fresh, 0.9);
}

RuntimeValidation validate_runtime(const std::vector<RuntimeCase>& cases, const sim::Hardware& hw,
                                   const sim::Calibration& cal, sim::Runtime runtime, const MeasureFn& measure,
                                   const RunSettings& run, int rounds, int extra_rounds,
                                   const LoadGuardSettings& guard_settings, const ProgressFn& progress) {
  DMAP_CHECK(rounds >= 1, "rounds must be positive");
  const std::string name = sim::runtime_name(runtime);
  const std::string key = sim::runtime_fit_key(runtime);
  auto it = cal.runtimes.find(runtime);
  if (it == cal.runtimes.end() || !it->second.measured) {
    throw InputError(cal.file, 0, 0,
                     "the calibration has no measured " + name + " profile (run `dmap profile --real --runtime " +
                         name + " --calibration " + cal.file + "` first)");
  }
  std::string fitted_model;
  int64_t fitted_disk_layers = 0;  // the disk-offload run of the fit (transformers), 0: none
  if (cal.fit.IsDefined() && cal.fit.IsMap()) {
    if (const YAML::Node f = cal.fit[key]; f.IsDefined() && f.IsMap() && f["model"].IsDefined()) {
      fitted_model = f["model"].as<std::string>("");
      if (const YAML::Node d = f["disk_offload"]; d.IsDefined() && d.IsMap() && d["disk_layers"].IsDefined()) {
        fitted_disk_layers = d["disk_layers"].as<int64_t>(0);
      }
    }
  }
  RuntimeValidation v;
  v.runtime = runtime;
  v.threads = run.threads;
  v.rounds = rounds;
  v.extra_rounds = extra_rounds;
  v.prompt = run.prompt;
  v.new_tokens = run.new_tokens;
  LoadGuard guard(guard_settings);
  // The runtime's rates (the fresh pages its disk-offload copies touch).
  const sim::Rates rates = sim::runtime_rates(sim::make_rates(hw, &cal), runtime, sim::profile_for(&cal, runtime));
  // The reference probe as the calibration took it (0: it kept none).
  const double ref = cal.host.reference_probe_ms.value_or(0.0);
  v.probed = ref > 0;
  ReferenceBracket bracket(ref, run.threads);
  int done = 0;
  const int total = static_cast<int>(cases.size());
  std::map<std::string, RuntimeRow::Dmap>
      dmap_runs;  // dmap's measurement of each placement, by model, dtype, disk layers
  for (const RuntimeCase& c : cases) {
    const std::string what = c.model_id + " " + std::string(dtype_name(c.dtype)) + " " + c.placement();
    if (progress) progress(what + ": " + name, done, total);
    double ratio = 0;
    RuntimeMeasurement m;
    for (int attempt = 0;; ++attempt) {
      m = guard.run(name + " " + what, [&] { return bracket.run([&] { return measure(c, rounds); }); });
      ratio = bracket.ratio();
      // Out of the band: once more, while extra rounds are left (the targets apply to
      // measurements with the machine as it was calibrated).
      if (ref <= 0 || std::fabs(ratio - 1) <= kSteadyBand || attempt >= extra_rounds) break;
      ++v.extra_measurements;
      if (progress) progress(what + ": " + name + " again (probe " + std::to_string(ratio) + ")", done, total);
    }
    v.version = m.version;
    RuntimeRow r;
    r.c = c;
    // The fit ran its model CPU-only (and, for transformers, with some layers on disk).
    r.in_fit = c.model_id == fitted_model && (c.disk_layers == 0 || c.disk_layers == fitted_disk_layers);
    r.measured_prefill_s = m.prefill_s;
    r.measured_decode_s = m.decode_s;
    r.decode_rounds = m.decode_rounds;
    r.probe_ratio = ratio;
    r.measured_faults = m.faults;
    const DeviceMap map = layers_on_disk_map(c.spec, c.disk_layers);
    auto predict_at = [&](const sim::Calibration& k) {
      return predict(c.spec, c.dtype, map, hw, &k, run.prompt, run.new_tokens, sim::Semantics::kCpu, runtime);
    };
    // transformers' disk offload: glibc keeping what it frees, no page fresh; as it comes, the fit's
    // share, and the range from no heap page fresh to all.
    const bool torch_disk = c.disk_layers > 0 && rates.torch_offload && runtime == sim::Runtime::kTransformers;
    sim::Calibration at = cal;
    if (torch_disk && c.keep_freed) at.runtimes[runtime] = keeping_freed(at.runtimes[runtime]);
    if (torch_disk && !c.keep_freed) {
      const int64_t layers = exec::exec_config(c.spec).layers;
      const FreshPages pages = fresh_pages_of(build_module_tree(c.spec), c.dtype, layers - c.disk_layers, layers);
      r.predicted_fresh_pages = pages.mapped + rates.torch_offload->heap_fresh.value * pages.heap;
      sim::Calibration low = cal, high = cal;
      low.runtimes[runtime].heap_fresh_share = 0.0;
      high.runtimes[runtime].heap_fresh_share = 1.0;
      r.predicted_decode_low_s = predict_at(low).decode_token_s;
      r.predicted_decode_high_s = predict_at(high).decode_token_s;
    }
    // The placement (CPU-only, or the last layers on disk): on the CPU, disk-offloaded weights are
    // read where they are needed, under every runtime's semantics alike.
    const sim::Prediction pt = predict_at(at);
    r.predicted_prefill_s = pt.prefill_s;
    r.predicted_decode_s = pt.decode_token_s;
    // dmap's executor runs a placement once however glibc is set (its own memory is not glibc's heap).
    const std::string dmap_key =
        c.model_id + "|" + std::string(dtype_name(c.dtype)) + "|" + std::to_string(c.disk_layers);
    if (const auto hit = dmap_runs.find(dmap_key); hit != dmap_runs.end()) {
      r.dmap = hit->second;
      v.rows.push_back(std::move(r));
      ++done;
      continue;
    }
    if (progress) progress(what + ": dmap", done, total);
    std::vector<double> dec, pre;
    for (int k = 0; k < rounds; ++k) {
      const PlacementRun pr = guard.run("dmap " + what, [&] { return run_placement(c.spec, c.dtype, map, run); });
      dec.push_back(pr.decode_token_s);
      pre.push_back(pr.prefill_s);
    }
    const sim::Prediction pd =
        predict(c.spec, c.dtype, map, hw, &cal, run.prompt, run.new_tokens, sim::Semantics::kCpu);
    r.dmap.predicted_decode_s = pd.decode_token_s;
    r.dmap.measured_decode_s = median(dec);
    const double steps = static_cast<double>(std::max<int64_t>(0, run.new_tokens - 1));
    r.dmap.predicted_total_s = pd.prefill_s + steps * pd.decode_token_s;
    r.dmap.measured_total_s = median(pre) + steps * r.dmap.measured_decode_s;
    dmap_runs[dmap_key] = r.dmap;
    v.rows.push_back(std::move(r));
    ++done;
  }
  if (progress) progress("done", total, total);
  // Each default disk row with its kept twin: the fresh pages it measured, and the decode at them.
  if (const sim::RuntimeProfile& prof = sim::profile_for(&cal, runtime); prof.fresh_page_us) {
    for (RuntimeRow& r : v.rows) {
      if (r.predicted_decode_low_s < 0 || r.measured_faults < 0) continue;
      for (const RuntimeRow& k : v.rows) {
        if (!k.c.keep_freed || k.c.model_id != r.c.model_id || k.c.dtype != r.c.dtype ||
            k.c.disk_layers != r.c.disk_layers || k.measured_faults < 0)
          continue;
        const int64_t layers = exec::exec_config(r.c.spec).layers;
        r.measured_fresh_pages = std::max(0.0, r.measured_faults - k.measured_faults);
        r.predicted_at_fresh_s =
            k.predicted_decode_s +
            fresh_seconds(prof,
                          fresh_pages_of(build_module_tree(r.c.spec), r.c.dtype, layers - r.c.disk_layers, layers),
                          r.measured_fresh_pages);
      }
    }
  }
  v.remeasured = guard.remeasured();
  v.max_foreign_cores = guard.max_foreign_cores();
  summarize_runtime(v);
  return v;
}

RuntimeValidation validate_torch(const std::vector<RuntimeCase>& cases, const sim::Hardware& hw,
                                 const sim::Calibration& cal, const TorchProbeOptions& probe, int rounds,
                                 int extra_rounds, const LoadGuardSettings& guard, const ProgressFn& progress) {
  auto measure = [&](const RuntimeCase& c, int reps) {
    TorchProbeOptions po = probe;
    po.model_file = c.spec.source;
    po.dtypes = {c.dtype};
    po.reps = reps;
    po.disk_layers = c.disk_layers;
    po.keep_freed = c.keep_freed;
    const TorchProbe tp = run_torch_probe(po);
    const TorchRun& tr = tp.runs.front();
    RuntimeMeasurement m;
    m.prefill_s = tr.prefill();
    m.decode_s = tr.decode();
    for (size_t i = 0; i < tr.decode_s.size(); ++i)
      m.decode_rounds.push_back(tr.decode_s[i] + (i < tr.loop_s.size() ? tr.loop_s[i] : 0.0));
    if (!tr.decode_faults.empty()) m.faults = median(tr.decode_faults);
    m.version = "torch " + tp.torch_version + " (" + tp.implementation + ")";
    return m;
  };
  return validate_runtime(cases, hw, cal, sim::Runtime::kTransformers, measure, probe.run, rounds, extra_rounds, guard,
                          progress);
}

RuntimeValidation validate_llama(const std::vector<RuntimeCase>& cases, const sim::Hardware& hw,
                                 const sim::Calibration& cal, const std::string& probe, const RunSettings& run,
                                 int rounds, int extra_rounds, const LoadGuardSettings& guard,
                                 const ProgressFn& progress) {
  // In the load mode the profile predicts (and dmap advises) for each dtype.
  const sim::RuntimeProfile lp = sim::profile_for(&cal, sim::Runtime::kLlamaCpp);
  auto measure = [&](const RuntimeCase& c, int reps) {
    if (c.disk_layers > 0) throw InputError("llama.cpp has no disk offload: its validation runs CPU-only placements");
    const LlamaRun lr =
        measure_llama(c.spec, {c.dtype}, run, probe, reps, /*tiny=*/false, lp.no_mmap_in(c.dtype)).front();
    RuntimeMeasurement m;
    m.prefill_s = lr.model.prefill();
    m.decode_s = lr.model.decode();
    for (const auto& r : lr.model.rounds) m.decode_rounds.push_back(r.decode_s);
    m.version = lr.model.version;
    return m;
  };
  RuntimeValidation v =
      validate_runtime(cases, hw, cal, sim::Runtime::kLlamaCpp, measure, run, rounds, extra_rounds, guard, progress);
  for (const RuntimeRow& r : v.rows) v.no_mmap[r.c.dtype] = lp.no_mmap_in(r.c.dtype);
  return v;
}

namespace {
std::string ms(double s, int prec = 3) {
  std::ostringstream o;
  o << std::setprecision(prec) << s * 1e3;
  return o.str();
}
std::string ratio3(double q) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(3) << q;
  return o.str();
}
// ", mapped (llama.cpp's default load)", or per dtype where the profile reads some in.
std::string load_modes_text(const std::map<DType, bool>& no_mmap) {
  std::vector<std::string> in, mapped;
  for (const auto& [d, no] : no_mmap) (no ? in : mapped).emplace_back(dtype_name(d));
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? (i + 1 == v.size() ? " and " : ", ") : "") + v[i];
    return s;
  };
  if (in.empty()) return ", mapped (llama.cpp's default load)";
  std::string s = ", " + (mapped.empty() ? std::string("every dtype") : join(in)) +
                  " read into memory (--no-mmap: the load mode the profile predicts and dmap advises, the mapped "
                  "file having decoded over 5 % slower when it was fitted)";
  if (!mapped.empty()) s += ", " + join(mapped) + " mapped (llama.cpp's default load: as fast when fitted)";
  return s;
}
std::string pct(double e) {
  std::ostringstream o;
  o << std::showpos << std::setprecision(2) << e * 100 << " %";
  return o.str();
}
}  // namespace

std::string runtime_validation_markdown(const RuntimeValidation& v, const std::string& machine,
                                        const std::string& calibration_file) {
  std::ostringstream m;
  const std::string name = sim::runtime_name(v.runtime);
  const bool llama = v.runtime == sim::Runtime::kLlamaCpp;
  m << "# Validation of the " << name << " runtime: predicted vs measured, " << machine << "\n\n";
  m << "Written by `dmap profile --validate --runtime " << name << "`. Calibration: `" << calibration_file
    << "` (its `runtimes." << name << "` profile, fitted by `dmap profile --real --runtime " << name << "`). "
    << "Each model was predicted by dmap's cost model under the " << name << " runtime, then run for real ";
  if (llama) {
    m << "by llama.cpp (" << v.version
      << ") through dmap's probe (probes/llama_cpp: llama.h, one llama_decode of the prompt, then one per token) "
         "on the model exported by `dmap export gguf` in the dtype's GGUF type (float32 F32, bfloat16 BF16, "
         "float16 F16)"
      << load_modes_text(v.no_mmap);
  } else {
    m << "by `scripts/runtime_probe.py` with " << v.version;
  }
  const bool disk = std::any_of(v.rows.begin(), v.rows.end(), [](const RuntimeRow& r) { return r.c.disk_layers > 0; });
  m << (disk ? ", on the CPU (\"disk N/L layers\": the last N decoder layers offloaded to disk as accelerate "
               "offloads them — one .dat file per tensor, a layer's tensors copied out of their memory maps into "
               "new tensors when it starts and dropped when it ends; the files evicted from the page cache before "
               "each prefill, read from it in decode; dmap's executor ran the same placement)"
             : ", CPU-only")
    << ", random weights, batch 1, prompt " << v.prompt << ", " << v.new_tokens << " new tokens, " << v.threads
    << " threads. ";
  if (!llama) m << "Decode is a step's forward plus the loop between forwards (argmax, the next input); ";
  m << "the probe repeated each run " << v.rounds
    << " times back to back in one process, and the medians are shown. dmap's own executor ran the same placement "
    << v.rounds
    << " times (medians) for the choice between the two runtimes. Each measurement waited for a quiet machine "
       "and was measured again when other processes took more than 0.15 cores ("
    << v.remeasured << " were; the most others used during a kept one: " << std::setprecision(2) << v.max_foreign_cores
    << " cores).\n\n";
  for (const auto& [d, why] : v.unsupported) {
    m << "Not run in " << dtype_name(d) << ": " << name << " cannot compute in it on this CPU (" << why
      << "); dmap predicts such rows as not runnable under " << name << ".\n\n";
  }
  if (v.probed) {
    m << "Before each of the runtime's measurements the reference probe (a fixed float32 matrix-vector stream) was "
         "repeated, a second apart, until it read within ±3 % of the calibration's time (up to 10 tries), and taken "
         "again after it: \"probe\" is their mean over the calibration's time (above 1: the machine was slower), and "
         "the scaled error divides the measured time by it.";
    if (v.extra_rounds > 0) {
      m << " A measurement whose probe ratio came out beyond ±3 % was taken again, up to " << v.extra_rounds
        << " times, until one was within it (measurements taken again: " << v.extra_measurements
        << "; the last is shown either way).";
    }
    m << "\n\n";
  }
  m << "| model | dtype | placement | predicted prefill | measured prefill | error | predicted ms/token | measured "
       "ms/token | "
       "error | probe | scaled error | rounds: ms/token | dmap ms/token, predicted / measured | predicted faster | "
       "measured faster | regret |"
    << (disk && !llama ? " predicted range, no heap page fresh .. all | fresh pages per step, predicted / measured "
                         "(minor faults) | predicted at its fresh pages, error |"
                       : "")
    << "\n";
  m << "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|"
    << (disk && !llama ? "---:|---:|---:|" : "") << "\n";
  for (const RuntimeRow& r : v.rows) {
    std::string rounds;
    for (double d : r.decode_rounds) rounds += (rounds.empty() ? "" : ", ") + ms(d);
    m << "| " << r.c.model_id << (r.in_fit ? " (in the fit)" : "") << " | " << dtype_name(r.c.dtype) << " | "
      << r.c.placement() << " | " << ms(r.predicted_prefill_s, 4) << " ms | " << ms(r.measured_prefill_s, 4) << " ms | "
      << pct(r.prefill_error()) << " | " << ms(r.predicted_decode_s, 4) << " | " << ms(r.measured_decode_s, 4) << " | "
      << pct(r.decode_error()) << " | " << (r.probe_ratio > 0 ? ratio3(r.probe_ratio) : std::string("-")) << " | "
      << (r.probe_ratio > 0 ? pct(r.scaled_decode_error()) : std::string("-")) << " | " << rounds << " | "
      << ms(r.dmap.predicted_decode_s) << " / " << ms(r.dmap.measured_decode_s) << " | " << r.predicted_faster << " | "
      << r.measured_faster << " | " << pct(r.regret) << " |";
    if (disk && !llama) {
      auto count = [](double x) { return x < 0 ? std::string("-") : std::to_string(std::llround(x)); };
      if (r.predicted_decode_low_s > 0) {
        m << " " << ms(r.predicted_decode_low_s, 4) << " .. " << ms(r.predicted_decode_high_s, 4)
          << (r.in_range() ? " (in)" : " (out)") << " |";
      } else {
        m << " - |";
      }
      m << " " << count(r.predicted_fresh_pages) << " / " << count(r.measured_fresh_pages) << " ("
        << count(r.measured_faults) << ") |";
      if (r.predicted_at_fresh_s > 0) {
        m << " " << ms(r.predicted_at_fresh_s, 4) << ", " << pct(r.predicted_at_fresh_s / r.measured_decode_s - 1)
          << " |";
      } else {
        m << " - |";
      }
    }
    m << "\n";
  }
  if (disk && !llama) {
    m << "\nFresh pages: accelerate copies each offloaded tensor into a new one, and glibc hands out fresh "
         "memory (faulted and zeroed on first touch) for every tensor of 32 MiB or more and, whenever it has "
         "trimmed its heap between layers, for smaller ones — which, depends on the allocations around them and "
         "moves between processes. Rows \"glibc keeping freed memory\" ran with "
      << sim::glibc_keep_freed_text()
      << " in the probe's environment: no page is fresh, and the prediction has none. The other disk rows are "
         "predicted at the share of the heap-served tensors' pages the fit's own runs found fresh, with the range "
         "from none of them fresh to all (\"in\": measured within it, ±"
      << static_cast<int>(RuntimeRow::kRangeSlack * 100)
      << " % for the machine's drift). Fresh pages measured: the step's minor page faults over those of the same "
         "placement with glibc keeping (the memory maps' own, one per 16 pages read); \"predicted at its fresh "
         "pages\" is the kept row's prediction plus their time: the cost model's error once glibc's choice is "
         "known.\n";
  }
  m << "\nError figures over the " << v.held_out << " rows the " << name
    << " profile was not fitted on (rows marked \"in the fit\" are its own model, shown "
       "for reference):\n\n";
  m << "| | median abs error | 90th percentile | target |\n|---|---:|---:|---|\n";
  auto abs_pct = [](double e) {
    std::ostringstream o;
    o << std::setprecision(2) << e * 100 << " %";
    return o.str();
  };
  m << "| time per output token | " << abs_pct(v.decode_median_abs) << " | " << abs_pct(v.decode_p90_abs)
    << " | median ≤ 5 %, p90 ≤ 10 % |\n";
  m << "| prefill | " << abs_pct(v.prefill_median_abs) << " | " << abs_pct(v.prefill_p90_abs) << " | median ≤ 10 % |\n";
  m << "| regret across runtimes (whole run) | | max " << abs_pct(v.max_regret) << " | ≤ 3 % |\n";
  const report::NoiseFloorText noise =
      report::noise_floor_text(v.decode_noise, NoiseFloor{}, v.held_out, "repetitions");
  m << noise.table_rows;
  if (v.heap_rows > 0) {
    m << "| time per output token, the " << v.fixed_rows << " rows glibc's heap does not decide (CPU-only; disk with "
      << "glibc keeping freed memory) | " << abs_pct(v.fixed_decode_median_abs) << " | "
      << abs_pct(v.fixed_decode_p90_abs) << " | median ≤ 5 %, p90 ≤ 10 % |\n";
    m << "| time per output token, the " << v.heap_rows << " disk rows with glibc as it comes, predicted at the fresh "
      << "pages each measured | " << abs_pct(v.at_fresh_decode_median_abs) << " | "
      << abs_pct(v.at_fresh_decode_p90_abs) << " | |\n";
    m << "| the same rows measured within their predicted range | " << v.heap_in_range << " of " << v.heap_rows
      << " | | |\n";
  }
  if (v.probed) {
    m << "| time per output token, measured scaled to calibration time | " << abs_pct(v.scaled_decode_median_abs)
      << " | " << abs_pct(v.scaled_decode_p90_abs) << " | |\n";
    m << "| time per output token, the " << v.steady_rows << " of " << v.held_out
      << " rows measured within ±3 % of calibration time | " << abs_pct(v.steady_decode_median_abs) << " | "
      << abs_pct(v.steady_decode_p90_abs) << " | median ≤ 5 %, p90 ≤ 10 % |\n";
    m << "| prefill, the same rows | " << abs_pct(v.steady_prefill_median_abs) << " | | median ≤ 10 % |\n";
  }
  m << "\n" << noise.paragraph;
  if (v.decode_noise.spread_rows > 0) {
    m << "The repetitions ran back to back in one process, so they miss the drift of minutes between placements: "
         "this floor is a lower bound.\n";
  }
  return m.str();
}

}  // namespace dmap::profile
