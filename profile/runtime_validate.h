// `dmap profile --validate --runtime transformers`: a calibration's transformers profile checked
// against fresh measurements of models it was not fitted on, and the choice between runtimes.
//
// Data flow: cases (model x dtype) --run_torch_probe (rounds repetitions)--> measured transformers
//            CPU-only prefill and decode;  run_placement (rounds times) --> measured dmap CPU-only;
//            predict(..., Runtime) for both --> rows --> errors (median, p90 over held-out rows)
//            and regret (the measured whole run of the runtime predicted fastest against the
//            measured fastest) --> runtime_validation_markdown
//
// Each measurement runs under a LoadGuard (waits for a quiet machine, measures again when another
// process took > 0.15 cores). The probe's repetitions run back to back in one python3 process.
//
// Example:
//   RuntimeValidation v = validate_torch(cases, hw, cal, probe_options, rounds, progress);
//   write_text_file("reports/validation/x_transformers.md", runtime_validation_markdown(v, ...));
#pragma once

#include <string>
#include <vector>

#include "profile/load_guard.h"
#include "profile/profile.h"
#include "profile/runtime_probe.h"

namespace dmap::profile {

struct RuntimeCase {
  std::string model_id;
  ModelSpec spec;
  DType dtype = DType::kFloat32;
};

struct RuntimeRow {
  RuntimeCase c;
  bool in_fit = false;  // the model the calibration's transformers profile was fitted on
  double predicted_prefill_s = 0, measured_prefill_s = 0, predicted_decode_s = 0, measured_decode_s = 0;
  std::vector<double> decode_rounds;  // transformers, per repetition (forward + loop)
  double dmap_predicted_decode_s = 0, dmap_measured_decode_s = 0;
  double dmap_predicted_total_s = 0, dmap_measured_total_s = 0, predicted_total_s = 0, measured_total_s = 0;
  double regret = 0;  // measured whole run of the predicted-faster runtime over the measured fastest, - 1
  std::string predicted_faster, measured_faster;  // "dmap" or "transformers"
  double decode_error() const { return predicted_decode_s / measured_decode_s - 1; }
  double prefill_error() const { return predicted_prefill_s / measured_prefill_s - 1; }
};

struct RuntimeValidation {
  std::vector<RuntimeRow> rows;
  std::string torch_version, implementation;
  int threads = 0, rounds = 0;
  int64_t prompt = 0, new_tokens = 0;
  int held_out = 0;
  double decode_median_abs = 0, decode_p90_abs = 0, prefill_median_abs = 0, prefill_p90_abs = 0, max_regret = 0;
  int remeasured = 0;
  double max_foreign_cores = 0;
};

// The errors and regret of rows already measured (a pure function; tests give synthetic rows).
void summarize_runtime(RuntimeValidation& v);

RuntimeValidation validate_torch(const std::vector<RuntimeCase>& cases, const sim::Hardware& hw,
                                 const sim::Calibration& cal, const TorchProbeOptions& probe, int rounds,
                                 const LoadGuardSettings& guard, const ProgressFn& progress = {});

std::string runtime_validation_markdown(const RuntimeValidation& v, const std::string& machine,
                                        const std::string& calibration_file);

}  // namespace dmap::profile
