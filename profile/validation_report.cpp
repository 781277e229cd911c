// The validation report: markdown and the predicted-vs-measured chart (see profile.h). It stays in
// profile/ rather than report/ because report/ cannot see profile's types (report <- profile).
#include "profile/profile.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <random>
#include <sstream>

#include "core/error.h"
#include "core/interrupt.h"
#include "core/module_tree.h"
#include "core/yaml_io.h"
#include "profile/fit.h"
#include "profile/yaml_text.h"
#include "report/svg.h"
#include "sim/cost_model.h"
#include "sim/graph.h"
#include "strategies/plan.h"

#include "exec/backend.h"
#include "exec/map_placement.h"

namespace dmap::profile {

std::string validation_svg(const ValidationResult& r, const std::string& machine) {
  report::StackedBarChart c;
  c.title = "Predicted vs measured time per output token, " + machine;
  c.y_label = "ms per token";
  report::Series pred{"predicted", "#0072B2", {}}, meas{"measured", "#D55E00", {}};
  for (const auto& row : r.rows) {
    c.categories.push_back(row.c.model_id + " " + std::string(dtype_name(row.c.dtype)) + " " + row.c.placement);
    pred.values.push_back(row.predicted_decode_s * 1e3);
    meas.values.push_back(row.measured_decode_s * 1e3);
    c.bar_notes.push_back(
        std::string(row.decode_error() >= 0 ? "+" : "").append(fmt(row.decode_error() * 100, 2)).append("%"));
  }
  c.series = {pred, meas};
  c.horizontal = true;
  return report::render_grouped_svg(c);
}

std::string validation_markdown(const ValidationResult& r, const std::string& machine,
                                const std::string& calibration_file, const std::string& svg_name,
                                const std::string& trace_name) {
  auto pct = [](double v) { return std::string(v >= 0 ? "+" : "") + fmt(v * 100, 2) + " %"; };
  std::ostringstream m;
  m << "# Validation: predicted vs measured, " << machine << "\n\n";
  m << "Written by `dmap profile --validate`. Calibration: `" << calibration_file
    << "`. Each placement was predicted by\n"
    << "`dmap`'s cost model with that calibration, then run for real on dmap's CPU executor (random weights, batch 1,\n"
    << "prompt " << r.run.prompt << ", " << r.run.new_tokens << " new tokens, " << r.run.threads
    << " threads). None of these runs was used in the\n"
    << "fit. Disk placements put the last layers on disk: their tensors are read from their files every forward,\n"
    << "evicted from the page cache before the prefill (cold) and served from it during decode.\n\n"
    << "Each placement was measured in " << r.settings.rounds
    << " rounds, each round in a fresh random order, each measurement\n"
    << "after waiting for the machine to be quiet (other processes under " << fmt(r.settings.quiet.threshold_cores, 2)
    << " cores); measured figures are the medians over the rounds. A measurement during which other processes used "
       "more\n"
    << "than " << fmt(r.settings.spoiled_cores, 2) << " cores was measured again (up to " << r.settings.retries
    << " times); \"others' load\" is the most they used during a kept one. \"Read from disk in decode\" is what the "
       "machine\n"
    << "read from block devices during a run's decode steps (the most over the rounds, /proc/vmstat): decode re-reads\n"
    << "disk-offloaded weights from the page cache, so anything there is page-cache misses. \"Of which disk reads\" is "
       "the\n"
    << "part of a decode step spent reading disk-offloaded tensors: predicted, then measured per round.\n";
  if (r.not_quiet > 0)
    m << "**" << r.not_quiet << " measurement(s) started without the machine having become quiet.**\n";
  m << "\n";
  m << "| model | dtype | placement | predicted prefill | measured prefill | error | predicted ms/token | measured "
       "ms/token | error | "
       "rounds: ms/token | of which disk reads, ms | others' load | read from disk in decode |\n";
  m << "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|\n";
  for (const auto& row : r.rows) {
    std::string rounds;
    for (double d : row.decode_rounds) rounds.append(rounds.empty() ? "" : ", ").append(fmt(d * 1e3, 3));
    std::string reads = "—";
    if (row.predicted_decode_disk_s > 0 ||
        std::any_of(row.decode_disk_rounds.begin(), row.decode_disk_rounds.end(), [](double d) { return d > 0; })) {
      reads = fmt(row.predicted_decode_disk_s * 1e3, 3) + " / ";
      for (size_t k = 0; k < row.decode_disk_rounds.size(); ++k)
        reads.append(k ? ", " : "").append(fmt(row.decode_disk_rounds[k] * 1e3, 3));
    }
    m << "| " << row.c.model_id << " | " << dtype_name(row.c.dtype) << " | " << row.c.placement
      << (row.in_fit ? " (in the fit)" : "") << " | " << fmt(row.predicted_prefill_s * 1e3) << " ms | "
      << fmt(row.measured_prefill_s * 1e3) << " ms | " << pct(row.prefill_error()) << " | "
      << fmt(row.predicted_decode_s * 1e3) << " | " << fmt(row.measured_decode_s * 1e3) << " | "
      << pct(row.decode_error()) << " | " << rounds << " | " << reads << " | " << fmt(row.foreign_cores, 2)
      << (row.remeasured ? " (" + std::to_string(row.remeasured) + " re-measured)" : "") << " | "
      << fmt(row.decode_device_read_bytes / 1e6, 3) << " MB |\n";
  }
  int held_out = 0;
  for (const auto& row : r.rows) held_out += row.in_fit ? 0 : 1;
  m << "\nError figures over the " << held_out
    << " placements the calibration was not fitted on (rows marked \"in the fit\" are\n"
    << "the calibration's own whole-model runs, shown for reference):\n";
  m << "\n| | median abs error | 90th percentile | target |\n|---|---:|---:|---|\n";
  m << "| time per output token | " << fmt(r.decode_median_abs * 100, 2) << " % | " << fmt(r.decode_p90_abs * 100, 2)
    << " % | median ≤ 5 %, p90 ≤ 10 % |\n";
  m << "| prefill | " << fmt(r.prefill_median_abs * 100, 2) << " % | " << fmt(r.prefill_p90_abs * 100, 2)
    << " % | median ≤ 10 % |\n\n";
  m << "Placement regret (measured time of the placement predicted fastest, whole run, vs the measured fastest):\n\n";
  m << "| model, dtype | predicted fastest | measured fastest | regret |\n|---|---|---|---:|\n";
  for (const auto& g : r.regrets)
    m << "| " << g.group << " | " << g.recommended << " | " << g.fastest << " | " << fmt(g.regret * 100, 2) << " % |\n";
  m << "\n![predicted vs measured](" << svg_name << ")\n\n";
  m << "Timeline: [`" << trace_name << "`](" << trace_name
    << ") (open in ui.perfetto.dev or chrome://tracing) holds the\n"
    << "measured module ranges of one placement (the first that reads disk or uses a GPU) next to the cost model's\n"
    << "predicted timeline: each op on the device it runs on, disk reads and copies on lanes of their own.\n";
  return m.str();
}

}  // namespace dmap::profile
