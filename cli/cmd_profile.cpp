// dmap profile: --real calibrates this machine's CPU and disk from timed runs of dmap's executor;
// --validate checks a calibration's predictions against fresh measurements.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/profile_runtime.h"
#include "core/error.h"
#include "core/output.h"
#include "core/scenario.h"
#include "core/yaml_io.h"
#include "core/module_tree.h"
#include "profile/profile.h"
#include "strategies/plan.h"
#if DMAP_HAVE_CUDA
#include "profile/gpu_profile.h"
#endif

namespace dmap::cli {

namespace {

// The profiler's summary lines, indented, for a refusal's message.
std::string summary_text(const std::vector<std::string>& lines) {
  std::string t = "The fit:\n";
  for (const auto& l : lines) t += "  " + l + "\n";
  return t;
}

const char* kHelp = R"(usage: dmap profile --real [options]
       dmap profile --validate --calibration FILE [options]
       dmap profile --probe [--calibration FILE] [--threads T]

--real: measure this machine with dmap's CPU executor and fit the cost model's figures:
memory bandwidth (matrix-vector products at the model's shapes), matrix-product rates by
token count per dtype, disk reads cold and warm, attention and per-operator overhead (from
whole-model runs). Writes a calibration YAML (provenance and fit residuals inside) and a
Chrome trace of the whole-model runs beside it (NAME.trace.json).

--probe: the reference probe alone (a fixed float32 matrix-vector stream from memory, well under
a second): the machine's memory speed now, against the time a calibration recorded (a shared
VM's bandwidth drifts; --validate reports it around every decode), and the same probe in each
16-bit dtype the calibration recorded one for.

--validate: for placements not used in the fit (CPU-only and the last layers on disk, several
models), predict with the calibration, run for real, and write a Markdown report with the
errors, their median and 90th percentile, the placement regret, an SVG chart and a trace of
the predicted timeline next to the measured one.

options:
  --device cpu|cuda:N      what to calibrate: the CPU and disk, or also GPU N and its link
                           (copies, products, attention, launches, accelerate's per-tensor
                           cost, whole-model runs; a CUPTI trace beside the calibration).
                           --validate on cuda:N: the GPU capped (--gpu-caps) under accelerate,
                           prefetch and in-place, and CPU-only (default model llama31_8b)
  --gpu-caps C,...         --validate on a GPU: GPU memory caps (default 4GiB,8GiB,12GiB)
  --model M                model preset or config.json for the shapes and runs (default tinyllama_1b)
  --models A,B,C           --validate: the models (default tinyllama_1b,qwen3_06b,gemma3_1b:
                           llama, qwen3 and gemma3 shapes; qwen25_05b and llama32_1b are others)
  --dtype D[,D]            float32, bfloat16, float16 (default float32,bfloat16; with --runtime
                           float32,bfloat16,float16, transformers leaving out — and recording — a
                           dtype PyTorch cannot compute in on this CPU; asked for, that is exit 2)
  --disk-fractions F,...   --validate: fractions of layers on disk (default 0,0.25,0.5); of a
                           mixture-of-experts model, its sparse layers' routed experts alone;
                           --runtime transformers: accelerate's disk offload (default 0,0.25);
                           --runtime llama.cpp: 0 only (llama.cpp has no disk offload)
  --batches B,...          --validate: batch sizes, each sequence its own prompt (default 1; a
                           mixture-of-experts model 1,4: the report adds the routed experts
                           touched per forward, measured and predicted)
  --hardware ID            system or host preset the predictions use (default: this machine,
                           detected: CPU, ISA, cores and RAM; estimates where a calibration measures)
  --calibration FILE       --validate: the calibration to check
  --out FILE               --real: calibration path (default configs/calibrations/NAME.yaml);
                           --validate: report path (default reports/validation/NAME.md)
  --name NAME              calibration / machine name (default: from the detected CPU,
                           e.g. amd_epyc_2cpu_avx512)
  --threads T              executor threads (default: all CPUs)
  --prompt-tokens P        prompt of the whole-model runs (default 64)
  --new-tokens N           tokens generated per run (default 8; --validate 12)
  --scratch-dir DIR        where disk probes and offloaded weights go (default $TMPDIR)
  --rounds N               --validate: measure every placement N times, each round in a new
                           random order, and keep the medians (default 3)
  --quiet-wait S           --validate: before each measurement wait up to S seconds for other
                           processes to use < 0.05 cores (default 60; 0: do not wait)
  --steady-tries N         --validate: before each measurement repeat the reference probe, a
                           second apart, up to N times until it reads within ±3 % of the
                           calibration's (default 10; 0: do not wait)
  --extra-rounds N         --validate: after the rounds, up to N more passes over the placements
                           that no round measured with the probe within ±3 % (default 3; 0: none);
                           with --runtime, a measurement out of the band is taken again up to N
                           times (default 2)
  --runtime R              dmap (default): dmap's own executor; transformers: PyTorch eager on this
                           CPU (scripts/runtime_probe.py with a python3 that imports torch, $DMAP_PYTHON
                           first): --real fits the runtime's profile (per-operator and per-step
                           overhead, product efficiencies per dtype) against --calibration FILE (default
                           configs/calibrations/NAME.yaml) and writes it there (or to --out) under
                           `runtimes.transformers`; --validate checks it on --models, CPU-only, against
                           dmap's own runs too (report: reports/validation/NAME_transformers.md);
                           llama.cpp: the same through llama.cpp's C API (build/llama_probe, on the
                           model exported as GGUF in each dtype's type; llama, mistral, qwen2, qwen3
                           families), under `runtimes.llama.cpp` (report: NAME_llama_cpp.md)
  --quick                  fewer sizes and repetitions (a smoke test, about a minute)
)";

std::vector<DType> dtypes_flag(const Args& a, const std::string& fallback) {
  std::vector<DType> out;
  for (const auto& s : split_commas(a.get("dtype").value_or(fallback))) {
    auto d = parse_dtype(s);
    if (!d || (*d != DType::kFloat32 && *d != DType::kBFloat16 && *d != DType::kFloat16)) {
      throw InputError("--dtype: '" + s + "' is not float32, bfloat16 or float16");
    }
    out.push_back(*d);
  }
  if (out.empty()) throw InputError("--dtype: no dtype given");
  return out;
}

// A progress bar on standard error (redrawn in place on a terminal, one line per stage otherwise).
profile::ProgressFn progress_bar(const std::string& title) {
  const bool tty = isatty(2);
  auto last = std::make_shared<std::string>();
  const auto t0 = std::chrono::steady_clock::now();
  return [=](const std::string& what, int done, int total) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (tty) {
      const int width = 30, fill = total > 0 ? width * done / total : 0;
      std::fprintf(stderr, "\r%s [%s%s] %3d%% %6.1f s  %-40.40s", title.c_str(), std::string(fill, '#').c_str(),
                   std::string(width - fill, '.').c_str(), total > 0 ? 100 * done / total : 0, s, what.c_str());
      std::fflush(stderr);
    } else if (what != *last) {
      std::fprintf(stderr, "%s: %6.1f s  %s\n", title.c_str(), s, what.c_str());
    }
    *last = what;
  };
}

sim::Hardware hardware_flag(const Args& a, std::string& id) {
  const std::string dir = config_dir() + "/hardware";
  if (!a.get("hardware")) {
    // This machine, detected: its CPU and RAM (estimates for what the calibration measures), the
    // default disk (the calibration measures it too).
    id = "detected";
    YAML::Node n;
    n["host"] = load_yaml_string(profile::detected_host_yaml(), "the detected host");
    n["disk"] = "nvme_gen3";
    return sim::parse_hardware(n, "the detected host", dir);
  }
  id = *a.get("hardware");
  if (!std::filesystem::exists(dir + "/" + id + ".yaml"))
    throw InputError("--hardware: no preset '" + id + "' in " + dir);
  const YAML::Node kind = load_yaml_file(dir + "/" + id + ".yaml")["kind"];
  YAML::Node n;
  if (kind.IsDefined() && kind.Scalar() == "host") {
    n["host"] = id;  // a host alone: no GPU, the default disk
    n["disk"] = "nvme_gen3";
  } else {
    n = YAML::Node(id);
  }
  return sim::parse_hardware(n, "--hardware", dir);
}

}  // namespace

int cmd_profile(const std::vector<std::string>& argv) {
  Args a(argv,
         {"device",     "model",        "models",       "dtype",         "disk-fractions", "hardware",    "calibration",
          "out",        "name",         "threads",      "prompt-tokens", "new-tokens",     "scratch-dir", "rounds",
          "quiet-wait", "steady-tries", "extra-rounds", "gpu-caps",      "runtime",        "batches"},
         {"real", "validate", "probe", "quick", "help"});
  if (a.has("help")) {
    std::cout << kHelp;
    return 0;
  }
  if (int{a.has("real")} + int{a.has("validate")} + int{a.has("probe")} != 1)
    throw InputError("dmap profile: give exactly one of --real, --validate and --probe (see --help)");
  if (a.has("probe")) {
    // The machine's state now: the reference probe, against a calibration's when one is given.
    std::optional<sim::Calibration> cal;
    if (auto f = a.get("calibration")) cal = sim::load_calibration(*f);
    const double ms = profile::reference_probe_ms(threads_flag(a));
    std::printf("reference probe: %.3f ms", ms);
    if (cal && cal->host.reference_probe_ms) {
      std::printf(" (calibration %s: %.3f ms, %+.1f %%)", cal->file.c_str(), *cal->host.reference_probe_ms,
                  (ms / *cal->host.reference_probe_ms - 1) * 100);
    } else if (cal) {
      std::printf(" (calibration %s holds no probe time)", cal->file.c_str());
    }
    std::printf("\n");
    // The same probe in each dtype the calibration recorded one for.
    for (const auto& [d, then] : cal ? cal->host.dtype_reference_probe_ms : std::map<DType, double>{}) {
      const double now = profile::reference_probe_ms(threads_flag(a), profile::kReferenceProbeReads, d);
      std::printf("reference probe in %s: %.3f ms (calibration: %.3f ms, %+.1f %%)\n",
                  std::string(dtype_name(d)).c_str(), now, then, (now / then - 1) * 100);
    }
    // The page-cache copy rate (what disk-offloaded weights' decode reads run at), likewise.
    const double gbs = profile::page_cache_probe_gbs(threads_flag(a));
    std::printf("page-cache probe: %.2f GB/s", gbs);
    if (cal && cal->host.page_cache_probe_gbs) {
      std::printf(" (calibration: %.2f GB/s, time %+.1f %%)", *cal->host.page_cache_probe_gbs,
                  (*cal->host.page_cache_probe_gbs / gbs - 1) * 100);
    }
    std::printf("\n");
    return 0;
  }
  if (!a.positional().empty()) throw InputError("dmap profile: unexpected argument '" + a.positional()[0] + "'");
  const std::string device = a.get("device").value_or("cpu");
  int gpu = -1;  // --device cuda:N
  if (device != "cpu") {
    const std::string digits = device.rfind("cuda:", 0) == 0 ? device.substr(5) : std::string();
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 3) {
      throw InputError("--device: expected cpu or cuda:N, not '" + device + "'");
    }
    gpu = std::stoi(digits);
#if !DMAP_HAVE_CUDA
    throw InputError("dmap profile --device " + device +
                     ": this dmap was built without CUDA (nvcc was not found when it was configured)");
#endif
  }
  std::string hw_id;
  const sim::Hardware hw = hardware_flag(a, hw_id);
  const std::string name = a.get("name").value_or(profile::cpu_slug());
  profile::RunSettings rs;
  rs.threads = threads_flag(a);
  rs.prompt = integer_flag(a, "prompt-tokens", 64, 1, kMaxTokensFlag);
  rs.new_tokens = integer_flag(a, "new-tokens", a.has("validate") ? 12 : 8, 1, kMaxTokensFlag);
  if (rs.new_tokens < 2) throw InputError("--new-tokens must be at least 2 (a prefill and one decode step)");
  rs.scratch_dir = a.get("scratch-dir").value_or("");
  std::string command = "dmap profile";
  for (const auto& s : argv) command.append(" ").append(s);
  if (auto r = a.get("runtime"); r && *r != "dmap") {
    const auto rt = sim::parse_runtime(*r);
    if (!rt) throw InputError("--runtime: expected dmap, transformers or llama.cpp, not '" + *r + "'");
    if (gpu >= 0) throw InputError("--runtime " + *r + ": profiled on the CPU only so far (leave out --device)");
    // The runtimes: float16 too (transformers leaves it out where PyTorch cannot compute in it).
    return profile_runtime(
        a, *rt,
        ProfileContext{hw, name, command, rs, dtypes_flag(a, "float32,bfloat16,float16"), a.get("dtype").has_value()});
  }
  const std::vector<DType> dtypes = dtypes_flag(a, "float32,bfloat16");

  if (a.has("real")) {
    const std::string model_id = a.get("model").value_or("tinyllama_1b");
    profile::ProfileOptions opt;
    opt.model = resolve_model(model_id, "", models_dir());
    opt.model_id = model_id;
    exec::exec_config(opt.model);  // the executor must run it (a clear error otherwise)
    opt.dtypes = dtypes;
    opt.run = rs;
    opt.name = name;
    opt.command = command;
    opt.quick = a.has("quick");
    opt.progress = progress_bar("dmap profile");
    const std::string out = a.get("out").value_or(config_dir() + "/calibrations/" + name + ".yaml");
    check_output_file(out, "--out");  // before minutes of measurement
    std::string stem = out;
    if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".yaml") == 0) stem.resize(stem.size() - 5);
    std::vector<std::string> summary;
#if DMAP_HAVE_CUDA
    // The GPU and its link first; the host half then writes both into one calibration.
    profile::GpuProfile g;
    if (gpu >= 0) {
      profile::GpuProfileOptions go;
      go.device = gpu;
      go.model = opt.model;
      go.model_id = model_id;
      go.dtypes = dtypes;
      go.run = rs;
      go.quick = opt.quick;
      go.progress = progress_bar("dmap profile (GPU)");
      g = profile::profile_gpu(go, hw);
      if (isatty(2)) std::fprintf(stderr, "\n");
      opt.gpu = &g;
      summary = g.summary;
    }
#endif
    const profile::ProfileResult r = profile::profile_cpu(opt, hw);
    if (isatty(2)) std::fprintf(stderr, "\n");
    // The calibration checks itself: its own whole-model runs, predicted, within 5 %.
    const profile::SelfCheckVerdict verdict = profile::check_self(r.self_check);
    if (!verdict.passed) {
      throw RuntimeFailure("dmap profile: the fit does not reproduce its own runs (worst " +
                           std::to_string(verdict.worst * 100).substr(0, 4) + " %), so nothing was written; " +
                           verdict.text + summary_text(r.summary) +
                           "Run it again on a quiet machine (dmap profile --probe shows how much the memory speed "
                           "moves).");
    }
    const std::string& check = verdict.text;
    std::cout << check;
    const std::string trace = stem + ".trace.json";
    profile::write_text_file(out, r.yaml);
    profile::write_text_file(trace, r.trace.json());
    std::cout << "calibration: " << out << "\ntrace: " << trace << "\n";
#if DMAP_HAVE_CUDA
    if (gpu >= 0 && !g.trace.activities.empty()) {
      const std::string gpu_trace = stem + ".gpu.trace.json";
      profile::write_text_file(gpu_trace, profile::chrome_trace(g.trace).json());
      std::cout << "GPU trace (CUPTI, an offloaded run): " << gpu_trace << "\n";
    }
#endif
    for (const auto& s : r.summary) summary.push_back(s);
    for (const auto& s : summary) std::cout << "  " << s << "\n";
    return 0;
  }

  // --validate
  const auto cal_file = a.get("calibration");
  if (!cal_file) throw InputError("dmap profile --validate needs --calibration FILE");
  profile::ValidationSettings vs;
  vs.rounds = static_cast<int>(integer_flag(a, "rounds", 3, 1, 1000));
  vs.quiet.max_wait_s = static_cast<double>(integer_flag(a, "quiet-wait", 60, 0, 86400));
  vs.steady_tries = static_cast<int>(integer_flag(a, "steady-tries", vs.steady_tries, 0, 1000));
  vs.extra_rounds = static_cast<int>(integer_flag(a, "extra-rounds", vs.extra_rounds, 0, 100));
  const std::vector<double> fractions = fractions_flag(a, "disk-fractions", "0,0.25,0.5");
  // Batch sizes: --batches, else 1 (and 1 and 4 for a mixture-of-experts model: more tokens touch
  // more experts).
  std::vector<int64_t> batches;
  for (const auto& s : split_commas(a.get("batches").value_or(""))) {
    int64_t b = 0;
    try {
      size_t used = 0;
      b = std::stoll(s, &used);
      if (used != s.size()) b = 0;
    } catch (...) {
    }
    if (b < 1 || b > 256) throw InputError("--batches: '" + s + "' is not a batch size in 1..256");
    batches.push_back(b);
  }
  const sim::Calibration cal = sim::load_calibration(*cal_file);
  std::vector<profile::ValidationCase> cases;
  for (const auto& m :
       split_commas(a.get("models").value_or(gpu >= 0 ? "llama31_8b" : "tinyllama_1b,qwen3_06b,gemma3_1b"))) {
    const ModelSpec spec = resolve_model(m, "", models_dir());
    const exec::ExecConfig c = exec::exec_config(spec);
    for (DType d : dtypes) {
      if (gpu >= 0) {
        // The GPU capped so that offload happens: accelerate's "auto" map under each cap, run
        // under each semantics; and CPU-only.
        const ModuleTree tree = build_module_tree(spec);
        for (const auto& cap : split_commas(a.get("gpu-caps").value_or("4GiB,8GiB,12GiB"))) {
          Scenario sc;
          sc.file = "--gpu-caps";
          sc.model = spec;
          sc.dtype = d;
          sc.max_memory = parse_max_memory_flag(std::to_string(gpu) + "=" + cap + ",cpu=100000GiB", "--gpu-caps");
          const DeviceMap dm = strategies::plan_device_map(strategies::plan_request_for(sc, tree)).device_map;
          for (exec::Semantics sem :
               {exec::Semantics::kAccelerate, exec::Semantics::kPrefetch, exec::Semantics::kInPlace}) {
            profile::ValidationCase vc{m, spec, d, 0, dm, "cuda", sem, "gpu " + cap + ", " + exec::semantics_name(sem)};
            cases.push_back(vc);
          }
        }
        cases.push_back({m, spec, d, 0, std::nullopt, "cpu", exec::Semantics::kAccelerate, "cpu"});
        continue;
      }
      // A mixture-of-experts model: its routed experts alone go to disk (a fraction of its sparse layers').
      const ModuleTree tree = build_module_tree(spec);
      int64_t sparse = 0;
      for (int id = 0; id < tree.size(); ++id)
        sparse += !tree.node(id).is_tensor && is_routed_experts(tree, id) ? 1 : 0;
      const std::vector<int64_t> bs = !batches.empty() ? batches
                                      : sparse > 0     ? std::vector<int64_t>{1, 4}
                                                       : std::vector<int64_t>{1};
      for (int64_t b : bs) {
        const std::string at = b > 1 ? ", batch " + std::to_string(b) : "";
        for (double f : fractions) {
          const int64_t of = sparse > 0 ? sparse : c.layers;
          const int64_t n = profile::layers_of_fraction(f, of);
          profile::ValidationCase vc{m, spec, d, n, std::nullopt, "cpu", exec::Semantics::kAccelerate, ""};
          vc.experts_only = sparse > 0 && n > 0;
          vc.batch = b;
          vc.placement =
              (n == 0            ? std::string("cpu")
               : vc.experts_only ? "experts of " + std::to_string(n) + "/" + std::to_string(of) + " layers on disk"
                                 : "disk " + std::to_string(n) + "/" + std::to_string(c.layers) + " layers") +
              at;
          cases.push_back(vc);
        }
      }
    }
  }
  const std::string out = a.get("out").value_or("reports/validation/" + name + ".md");
  check_output_file(out, "--out");  // before minutes of measurement
  namespace fs = std::filesystem;
  const fs::path outp(out);
  const std::string stem = outp.stem().string();
  const profile::ValidationResult r =
      profile::validate(cases, hw, cal, rs, vs, progress_bar("dmap profile --validate"));
  if (isatty(2)) std::fprintf(stderr, "\n");
  // The machine measured is this one: its CPU as detected (the preset only fills what the
  // calibration leaves out, such as GPUs when none was profiled).
  const std::string machine = profile::cpu_description() + ", " + profile::cpu_isa() +
                              (a.get("hardware") ? " (predictions with the " + hw_id + " preset)" : "");
  const std::string svg = stem + ".svg", trace = stem + ".trace.json";
  const fs::path dir = outp.has_parent_path() ? outp.parent_path() : fs::path(".");
  const report::ValidationTable table = profile::validation_table(r, name, machine, *cal_file, svg, trace);
  profile::write_text_file((dir / svg).string(), report::validation_svg(table));
  profile::write_text_file((dir / trace).string(), r.trace.json());
  profile::write_text_file(out, report::validation_markdown(table));
  std::printf("%-14s %-9s %-22s %12s %12s %8s %12s %12s %8s\n", "model", "dtype", "placement", "pred pre ms",
              "meas pre ms", "err", "pred ms/tok", "meas ms/tok", "err");
  for (const auto& row : r.rows) {
    std::printf("%-14s %-9s %-22s %12.1f %12.1f %+7.1f%% %12.2f %12.2f %+7.1f%%\n", row.c.model_id.c_str(),
                std::string(dtype_name(row.c.dtype)).c_str(), row.c.placement.c_str(), row.predicted_prefill_s * 1e3,
                row.measured_prefill_s * 1e3, row.prefill_error() * 100, row.predicted_decode_s * 1e3,
                row.measured_decode_s * 1e3, row.decode_error() * 100);
  }
  std::printf(
      "time per output token: median |error| %.1f %%, p90 %.1f %%; prefill: median %.1f %%, p90 %.1f %%; max regret "
      "%.1f %%\n",
      r.decode_median_abs * 100, r.decode_p90_abs * 100, r.prefill_median_abs * 100, r.prefill_p90_abs * 100,
      r.max_regret * 100);
  if (r.probed) {
    std::printf("measured with the machine within ±3 %% of calibration time: %d of %d held-out placements",
                r.steady_rows, r.held_out);
    if (r.steady_rows > 0) {
      std::printf(
          "; over those rounds, time per output token: median |error| %.1f %%, p90 %.1f %%; prefill: median "
          "%.1f %%",
          r.steady_decode_median_abs * 100, r.steady_decode_p90_abs * 100, r.steady_prefill_median_abs * 100);
    }
    std::printf("\n");
  }
  std::printf("report: %s\n", out.c_str());
  return 0;
}

}  // namespace dmap::cli
