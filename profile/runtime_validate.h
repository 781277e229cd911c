// `dmap profile --validate --runtime transformers|llama.cpp`: a calibration's runtime profile
// checked against fresh measurements of models it was not fitted on, and the choice between
// that runtime and dmap's own executor.
//
// Data flow: cases (model x dtype) --the runtime's probe (rounds repetitions: run_torch_probe, or
//            export_gguf + run_llama_probe)--> measured CPU-only prefill and decode;
//            run_placement (rounds times) --> measured dmap CPU-only;
//            predict(..., Runtime) for both --> rows --> errors (median, p90 over held-out rows)
//            and regret (the measured whole run of the runtime predicted fastest against the
//            measured fastest) --> runtime_validation_markdown
//
// Each measurement runs under a LoadGuard (waits for a quiet machine, measures again when another
// process took > 0.15 cores). A probe's repetitions run back to back in one process. Where the
// calibration kept its reference probe time (host.reference_probe_ms), the runtime's measurement
// is bracketed by the reference probe (before it, repeated a second apart until within ±3 % of
// calibration time, up to 10 tries): the row keeps the probe's ratio to calibration time, and the
// errors are given raw, with the measured times divided by that ratio (scaled), and over the rows
// measured within ±3 % (steady) — as dmap's own validation does (issue 21). A case whose probe
// ratio came out of the band is measured again, up to `extra_rounds` times, until one is in it
// (the last measurement is kept either way; the machine's state, not the result, decides).
//
// Example:
//   RuntimeValidation v = validate_torch(cases, hw, cal, probe_options, rounds, 2, guard, progress);
//   write_text_file("reports/validation/x_transformers.md", runtime_validation_markdown(v, ...));
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/noise_floor.h"

#include "profile/load_guard.h"
#include "profile/profile.h"
#include "profile/runtime_probe.h"
#include "sim/runtime.h"

namespace dmap::profile {

struct RuntimeCase {
  std::string model_id;
  ModelSpec spec;
  DType dtype = DType::kFloat32;
  // The last `disk_layers` decoder layers offloaded to disk (transformers: accelerate's disk offload
  // on the CPU; dmap's executor runs the same placement); 0: CPU-only.
  int64_t disk_layers = 0;
  // transformers with layers on disk: run with glibc keeping what it frees (sim::glibc_keep_freed_env),
  // predicted with no fresh page.
  bool keep_freed = false;
  std::string placement() const;  // "cpu", "disk 5/22 layers", "disk 5/22 layers, glibc keeping freed memory"
};

struct RuntimeRow {
  RuntimeCase c;
  bool in_fit = false;  // the model the calibration's profile of the runtime was fitted on
  double predicted_prefill_s = 0, measured_prefill_s = 0, predicted_decode_s = 0, measured_decode_s = 0;
  std::vector<double> decode_rounds;  // the runtime's, per repetition (transformers: forward + loop)
  // dmap's own executor on the same placement (the choice between the two runtimes).
  struct Dmap {
    double predicted_decode_s = 0, measured_decode_s = 0, predicted_total_s = 0, measured_total_s = 0;
  } dmap;
  double predicted_total_s = 0, measured_total_s = 0;
  double regret = 0;  // measured whole run of the predicted-faster runtime over the measured fastest, - 1
  std::string predicted_faster, measured_faster;  // "dmap" or the runtime's name
  // The reference probe around the runtime's measurement over calibration time (0: not probed).
  double probe_ratio = 0;
  // transformers with layers on disk: the fresh 4 KiB pages a decode step's copies touch as
  // predicted (sim::Rates::TorchOffload), and the step's minor page faults as measured (fresh pages
  // and the memory maps' own, one per 16 pages); -1 where neither applies.
  double predicted_fresh_pages = -1, measured_faults = -1;
  // transformers, disk, glibc as it comes: the decode predicted with none and with all of the
  // heap-served tensors' pages fresh (what glibc's heap may do), and — paired with the same
  // placement's kept row — the fresh pages measured (its faults over the kept row's) and the
  // decode predicted at them (the kept row's prediction plus their time); -1 where not applicable.
  double predicted_decode_low_s = -1, predicted_decode_high_s = -1;
  double measured_fresh_pages = -1, predicted_at_fresh_s = -1;
  bool in_range() const {
    return predicted_decode_low_s > 0 && measured_decode_s >= predicted_decode_low_s * (1 - kRangeSlack) &&
           measured_decode_s <= predicted_decode_high_s * (1 + kRangeSlack);
  }
  // The slack on either side of the range: the machine's own spread within minutes (docs/PERFORMANCE.md).
  static constexpr double kRangeSlack = 0.10;
  double decode_error() const { return predicted_decode_s / measured_decode_s - 1; }
  double prefill_error() const { return predicted_prefill_s / measured_prefill_s - 1; }
  // With the measured time referred to calibration time (measured / probe_ratio).
  double scaled_decode_error() const {
    return probe_ratio > 0 ? predicted_decode_s / (measured_decode_s / probe_ratio) - 1 : decode_error();
  }
  bool steady() const;  // probed within ±kSteadyBand of calibration time
};

struct RuntimeValidation {
  std::vector<RuntimeRow> rows;
  sim::Runtime runtime = sim::Runtime::kTransformers;
  std::string version;  // the runtime as measured ("torch 1.13.1 (plain PyTorch ...)", "llama.cpp v0.4.0 ...")
  int threads = 0, rounds = 0;
  int64_t prompt = 0, new_tokens = 0;
  int held_out = 0;
  double decode_median_abs = 0, decode_p90_abs = 0, prefill_median_abs = 0, prefill_p90_abs = 0, max_regret = 0;
  int remeasured = 0;
  int extra_rounds = 0, extra_measurements = 0;  // measured again for a probe out of the band
  double max_foreign_cores = 0;
  std::map<DType, bool> no_mmap;  // llama.cpp: per dtype, measured with --no-mmap
  // dtypes of the default list the runtime cannot compute in on this CPU (not run), and its error.
  std::map<DType, std::string> unsupported;
  // Drift (where probed): held-out decode errors with the measurement scaled to calibration time,
  // and over the held-out rows measured within ±3 % of it (the targets apply to those).
  bool probed = false;
  double scaled_decode_median_abs = 0, scaled_decode_p90_abs = 0;
  int steady_rows = 0;
  double steady_decode_median_abs = 0, steady_decode_p90_abs = 0, steady_prefill_median_abs = 0;
  // The error a perfect prediction would show given the held-out rows' repetitions (core/noise_floor.h).
  NoiseFloor decode_noise;
  // transformers' disk rows (held out): the rows glibc's heap does not decide (CPU-only, and disk
  // with glibc keeping what it frees); the default disk rows within their predicted range, and their
  // errors predicted at the fresh pages they measured.
  int fixed_rows = 0;
  double fixed_decode_median_abs = 0, fixed_decode_p90_abs = 0;
  int heap_rows = 0, heap_in_range = 0;
  double at_fresh_decode_median_abs = 0, at_fresh_decode_p90_abs = 0;
};

// The errors and regret of rows already measured (a pure function; tests give synthetic rows).
void summarize_runtime(RuntimeValidation& v);

// One case measured under the runtime: medians, the decode of each repetition, the version.
struct RuntimeMeasurement {
  double prefill_s = 0, decode_s = 0;
  std::vector<double> decode_rounds;
  double faults = -1;  // minor page faults of a decode step (median), where recorded
  std::string version;
};
using MeasureFn = std::function<RuntimeMeasurement(const RuntimeCase&, int rounds)>;

// Measures each case under `runtime` (`measure`) and under dmap's executor, and predicts both.
// InputError when the calibration has no measured profile of the runtime.
RuntimeValidation validate_runtime(const std::vector<RuntimeCase>& cases, const sim::Hardware& hw,
                                   const sim::Calibration& cal, sim::Runtime runtime, const MeasureFn& measure,
                                   const RunSettings& run, int rounds, int extra_rounds, const LoadGuardSettings& guard,
                                   const ProgressFn& progress = {});
// The transformers runtime through scripts/runtime_probe.py.
RuntimeValidation validate_torch(const std::vector<RuntimeCase>& cases, const sim::Hardware& hw,
                                 const sim::Calibration& cal, const TorchProbeOptions& probe, int rounds,
                                 int extra_rounds, const LoadGuardSettings& guard, const ProgressFn& progress = {});
// The llama.cpp runtime: each case exported as GGUF (its dtype's type) and timed by the probe.
RuntimeValidation validate_llama(const std::vector<RuntimeCase>& cases, const sim::Hardware& hw,
                                 const sim::Calibration& cal, const std::string& probe, const RunSettings& run,
                                 int rounds, int extra_rounds, const LoadGuardSettings& guard,
                                 const ProgressFn& progress = {});

std::string runtime_validation_markdown(const RuntimeValidation& v, const std::string& machine,
                                        const std::string& calibration_file);

}  // namespace dmap::profile
