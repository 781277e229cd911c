// The validation's results as the report renders them (report/validation_report.h): the profiler's
// rows, settings and figures, flattened into the report's table.
#include "profile/profile.h"

#include "report/validation_report.h"

namespace dmap::profile {

report::ValidationTable validation_table(const ValidationResult& r, const std::string& name, const std::string& machine,
                                         const std::string& calibration_file, const std::string& svg_name,
                                         const std::string& trace_name) {
  report::ValidationTable t;
  t.name = name;
  t.machine = machine;
  t.calibration_file = calibration_file;
  t.svg_name = svg_name;
  t.trace_name = trace_name;
  t.prompt = r.run.prompt;
  t.new_tokens = r.run.new_tokens;
  t.threads = r.run.threads;
  t.rounds = r.settings.rounds;
  t.retries = r.settings.retries;
  t.not_quiet = r.not_quiet;
  t.moved = r.moved;
  t.steady_tries = r.settings.steady_tries;
  t.extra_rounds = r.probed ? r.settings.extra_rounds : 0;
  t.extra_measurements = r.extra_measurements;
  t.moved_limit = r.settings.moved_limit;
  t.quiet_cores = r.settings.quiet.threshold_cores;
  t.spoiled_cores = r.settings.spoiled_cores;
  for (const auto& row : r.rows) {
    report::ValidationTableRow o;
    o.model_id = row.c.model_id;
    o.dtype = dtype_name(row.c.dtype);
    o.placement = row.c.placement;
    o.in_fit = row.in_fit;
    o.predicted_prefill_s = row.predicted_prefill_s;
    o.measured_prefill_s = row.measured_prefill_s;
    o.predicted_decode_s = row.predicted_decode_s;
    o.measured_decode_s = row.measured_decode_s;
    o.decode_rounds = row.decode_rounds;
    o.predicted_decode_disk_s = row.predicted_decode_disk_s;
    o.decode_disk_rounds = row.decode_disk_rounds;
    o.foreign_cores = row.foreign_cores;
    o.remeasured = row.remeasured;
    o.decode_device_read_bytes = row.decode_device_read_bytes;
    o.probe_ratio = row.probe_ratio;
    o.probe_ratios = row.probe_ratios;
    o.page_cache_ratios = row.page_cache_ratios;
    o.steady_rounds = row.steady_rounds;
    o.scaled_decode_error = row.scaled_decode_error();
    o.prefill_routed = row.prefill_routed;
    o.measured_prefill_touched = row.measured_prefill_touched;
    o.predicted_prefill_touched = row.predicted_prefill_touched;
    o.decode_routed = row.decode_routed;
    o.measured_decode_touched = row.measured_decode_touched;
    o.predicted_decode_touched = row.predicted_decode_touched;
    t.rows.push_back(std::move(o));
  }
  for (const auto& g : r.regrets) t.regrets.push_back({g.group, g.recommended, g.fastest, g.regret});
  for (const auto& f : r.routing) {
    t.routing.push_back({f.model_id, f.source, f.spread, f.sequence_spread, f.decode_sequences, f.decode_touched,
                         f.prefill_tokens, f.prefill_touched, f.prefill_prompts, f.batch_prefill_touched,
                         f.rms_log_error});
  }
  t.decode_median_abs = r.decode_median_abs;
  t.decode_p90_abs = r.decode_p90_abs;
  t.prefill_median_abs = r.prefill_median_abs;
  t.prefill_p90_abs = r.prefill_p90_abs;
  t.probed = r.probed;
  t.held_out = r.held_out;
  t.steady_rows = r.steady_rows;
  t.steady_decode_median_abs = r.steady_decode_median_abs;
  t.steady_decode_p90_abs = r.steady_decode_p90_abs;
  t.steady_prefill_median_abs = r.steady_prefill_median_abs;
  t.scaled_decode_median_abs = r.scaled_decode_median_abs;
  t.scaled_decode_p90_abs = r.scaled_decode_p90_abs;
  t.decode_noise = r.decode_noise;
  t.prefill_noise = r.prefill_noise;
  return t;
}

}  // namespace dmap::profile
