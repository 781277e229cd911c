// The validation report (reports/validation/<machine>.md and its chart): what `dmap profile
// --validate` measured beside what the calibrated cost model predicted. The profiler fills a
// ValidationTable from its results (profile::validation_table); this file only renders, so that
// report/ needs nothing of the profiler.
//
// Example:
//   write_text_file(dir / "amd.svg", validation_svg(table));
//   write_text_file(dir / "amd.md", validation_markdown(table));
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/noise_floor.h"

namespace dmap::report {

struct ValidationTableRow {
  std::string model_id, dtype, placement;
  bool in_fit = false;  // the calibration was fitted on this run
  double predicted_prefill_s = 0, measured_prefill_s = 0;
  double predicted_decode_s = 0, measured_decode_s = 0;
  std::vector<double> decode_rounds;   // one measurement per round
  double predicted_decode_disk_s = 0;  // of predicted_decode_s: reading disk-offloaded weights
  std::vector<double> decode_disk_rounds;
  double foreign_cores = 0;               // the most other processes' load during a kept measurement
  int remeasured = 0;                     // measurements dropped as spoiled
  double decode_device_read_bytes = 0;    // the most read from block devices during a kept run's decode
  double probe_ratio = 0;                 // the reference probe now / at calibration, median of rounds (0: none)
  std::vector<double> probe_ratios;       // per round
  std::vector<double> page_cache_ratios;  // per round: the page-cache probe now / at calibration (disk rows)
  double scaled_decode_error = 0;         // the decode error against decode scaled round by round by the probe
  int steady_rounds = 0;                  // rounds with the probe within ±3 % of calibration time
  // MoE models: distinct routed experts per sparse-layer forward, measured and predicted, and the
  // tokens routed per forward (0: a dense model).
  double prefill_routed = 0, measured_prefill_touched = 0, predicted_prefill_touched = 0;
  double decode_routed = 0, measured_decode_touched = 0, predicted_decode_touched = 0;
};

// The routing figures a MoE model's rows were predicted with, and where they came from.
struct ValidationTableRouting {
  std::string model_id, source;  // source: "calibration", "probe" or "uniform"
  double spread = 1, sequence_spread = 1;
  double decode_sequences = 0, decode_touched = 0, prefill_tokens = 0, prefill_touched = 0;  // the probe's
  int prefill_prompts = 0;           // one sequence's prefill: the mean over this many prompts
  double batch_prefill_touched = 0;  // decode_sequences sequences' prefill of prefill_tokens each
  double rms_log_error = 0;          // of the probe's counts under the fitted figures
};

struct ValidationTableRegret {
  std::string group, recommended, fastest;
  double regret = 0;  // measured(recommended) / measured(fastest) - 1
};

struct ValidationTable {
  std::string name;     // the calibration's name (the chart's title)
  std::string machine;  // the hardware's description (the markdown's title)
  std::string calibration_file, svg_name, trace_name;
  int64_t prompt = 0, new_tokens = 0;
  int threads = 1;
  int rounds = 1, retries = 0, not_quiet = 0, moved = 0;
  int steady_tries = 0;  // probes repeated, a pause apart, waiting for the calibration's state
  int extra_rounds = 0;  // passes after `rounds` over the placements without a steady round
  int extra_measurements = 0;
  double moved_limit = 0;  // before / after probes further apart than this: measured again
  double quiet_cores = 0, spoiled_cores = 0;
  std::vector<ValidationTableRow> rows;
  std::vector<ValidationTableRegret> regrets;
  std::vector<ValidationTableRouting> routing;
  double decode_median_abs = 0, decode_p90_abs = 0, prefill_median_abs = 0, prefill_p90_abs = 0;
  // Drift, when the calibration holds a reference probe time (probed): held-out rows whose probe
  // stayed within ±3 % of it, their raw errors, and every held-out row's scaled decode error.
  bool probed = false;
  int held_out = 0, steady_rows = 0;
  double steady_decode_median_abs = 0, steady_decode_p90_abs = 0, steady_prefill_median_abs = 0;
  double scaled_decode_median_abs = 0, scaled_decode_p90_abs = 0;
  NoiseFloor decode_noise, prefill_noise;  // of the held-out rows' rounds (core/noise_floor.h)
};

std::string validation_markdown(const ValidationTable& t);
// The noise floor as the validation reports give it: two rows for the error table ("| time per
// output token, a perfect prediction ... |") and the paragraph after it, which says what the
// rounds were (`rounds_are`: "rounds", "repetitions in one process") and, when the pooled spread
// is nonzero, how often a perfect prediction would meet the decode targets.
struct NoiseFloorText {
  std::string table_rows, paragraph;
};
NoiseFloorText noise_floor_text(const NoiseFloor& decode, const NoiseFloor& prefill, int rows,
                                const std::string& rounds_are);
std::string validation_svg(const ValidationTable& t);

}  // namespace dmap::report
