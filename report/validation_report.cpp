// The validation report's markdown and chart (see validation_report.h).
#include "report/validation_report.h"

#include <algorithm>
#include <iomanip>
#include <sstream>

#include "report/svg.h"

namespace dmap::report {

namespace {

std::string fmt(double v, int digits = 4) {
  std::ostringstream o;
  o << std::setprecision(digits) << v;
  return o.str();
}

double prefill_error(const ValidationTableRow& r) { return r.predicted_prefill_s / r.measured_prefill_s - 1; }
double decode_error(const ValidationTableRow& r) { return r.predicted_decode_s / r.measured_decode_s - 1; }

}  // namespace

NoiseFloorText noise_floor_text(const NoiseFloor& decode, const NoiseFloor& prefill, int rows,
                                const std::string& rounds_are) {
  NoiseFloorText t;
  if (decode.spread_rows == 0) {
    t.paragraph = "Measurement noise: no placement was measured twice, so the " + rounds_are +
                  "' spread (and the error a perfect prediction would show) is not known.\n";
    return t;
  }
  auto pct = [](double v) { return fmt(v * 100, 2) + " %"; };
  t.table_rows = "| time per output token, a perfect prediction (the " + rounds_are + "' own spread) | " +
                 pct(decode.median_abs) + " | " + pct(decode.p90_abs) + " | (the machine's floor) |\n";
  if (prefill.spread_rows > 0) {
    t.table_rows += "| prefill, a perfect prediction | " + pct(prefill.median_abs) + " | " + pct(prefill.p90_abs) +
                    " | (the machine's floor) |\n";
  }
  std::ostringstream m;
  m << "Measurement noise: the " << rounds_are << " of one placement spread by σ = " << pct(decode.sigma)
    << " in time per output token";
  if (prefill.spread_rows > 0) m << " and " << pct(prefill.sigma) << " in prefill";
  m << " (log-deviations pooled over the " << rows << " held-out placements). A prediction equal to each placement's "
    << "typical time would score, against the medians of these " << rounds_are << ", a decode median of "
    << pct(decode.median_abs) << " and a p90 of " << pct(decode.p90_abs) << " (medians over "
    << decode.draw_median_abs.size() << " draws resampling the pooled deviations, core/noise_floor.h), and meet the "
    << "decode targets (median ≤ 5 %, p90 ≤ 10 %) in " << fmt(decode.chance(0.05, 0.10) * 100, 3)
    << " % of the draws. Error figures near this floor are the machine's drift, not the cost model's.\n";
  t.paragraph = m.str();
  return t;
}

std::string validation_svg(const ValidationTable& r) {
  const std::string& machine = r.name;
  StackedBarChart c;
  c.title = "Predicted vs measured time per output token, " + machine;
  c.y_label = "ms per token";
  Series pred{"predicted", "#0072B2", {}}, meas{"measured", "#D55E00", {}};
  for (const auto& row : r.rows) {
    c.categories.push_back(row.model_id + " " + row.dtype + " " + row.placement);
    pred.values.push_back(row.predicted_decode_s * 1e3);
    meas.values.push_back(row.measured_decode_s * 1e3);
    c.bar_notes.push_back(
        std::string(decode_error(row) >= 0 ? "+" : "").append(fmt(decode_error(row) * 100, 2)).append("%"));
  }
  c.series = {pred, meas};
  c.horizontal = true;
  return render_grouped_svg(c);
}

std::string validation_markdown(const ValidationTable& r) {
  const std::string &machine = r.machine, &calibration_file = r.calibration_file, &svg_name = r.svg_name,
                    &trace_name = r.trace_name;
  auto pct = [](double v) { return std::string(v >= 0 ? "+" : "") + fmt(v * 100, 2) + " %"; };
  auto probe_cells = [&](const ValidationTableRow& row) {
    if (row.probe_ratios.empty()) return std::string("— | — | — | ");
    std::string ratios;
    for (double q : row.probe_ratios) ratios.append(ratios.empty() ? "" : ", ").append(pct(q - 1));
    if (!row.page_cache_ratios.empty()) {
      ratios += "; page cache ";
      for (size_t k = 0; k < row.page_cache_ratios.size(); ++k)
        ratios.append(k ? ", " : "").append(pct(row.page_cache_ratios[k] - 1));
    }
    return ratios + " | " + std::to_string(row.steady_rounds) + "/" + std::to_string(row.probe_ratios.size()) + " | " +
           pct(row.scaled_decode_error) + " | ";
  };
  std::ostringstream m;
  m << "# Validation: predicted vs measured, " << machine << "\n\n";
  m << "Written by `dmap profile --validate`. Calibration: `" << calibration_file
    << "`. Each placement was predicted by\n"
    << "`dmap`'s cost model with that calibration, then run for real on dmap's CPU executor (random weights, batch 1,\n"
    << "prompt " << r.prompt << ", " << r.new_tokens << " new tokens, " << r.threads
    << " threads). None of these runs was used in the\n"
    << "fit. Disk placements put the last layers on disk: their tensors are read from their files every forward,\n"
    << "evicted from the page cache before the prefill (cold) and served from it during decode.\n\n"
    << "Each placement was measured in " << r.rounds
    << " rounds, each round in a fresh random order, each measurement\n"
    << "after waiting for the machine to be quiet (other processes under " << fmt(r.quiet_cores, 2)
    << " cores); measured figures are the medians over the rounds. A measurement during which other processes used "
       "more\n"
    << "than " << fmt(r.spoiled_cores, 2) << " cores was measured again (up to " << r.retries
    << " times); \"others' load\" is the most they used during a kept one. \"Read from disk in decode\" is what the "
       "machine\n"
    << "read from block devices during a run's decode steps (the most over the rounds, /proc/vmstat): decode re-reads\n"
    << "disk-offloaded weights from the page cache, so anything there is page-cache misses. \"Of which disk reads\" is "
       "the\n"
    << "part of a decode step spent reading disk-offloaded tensors: predicted, then measured per round.\n";
  if (r.probed) {
    m << "\"Machine vs calibration\" is the reference probe (a fixed matrix-vector stream from memory, 40-90 ms, in "
         "the row's\n"
      << "dtype where the calibration recorded that dtype's probe, else in float32) taken just\n"
      << "before the first decode step and just after the last of each kept measurement (after its weights were made "
         "and its\n"
      << "prefills ran), their mean over the probe's time when the calibration was made (per round; + = slower now). "
         "Before\n"
      << "each decode the probe was repeated, a second apart, up to " << r.steady_tries << " times, until it read\n"
      << "within ±3 % of calibration time; the decode went ahead either way. A measurement whose probes before and "
         "after "
         "differed by\n"
      << "more than " << fmt(r.moved_limit * 100, 2) << " % (the machine changed speed during it) was measured again, "
      << "within the same re-measurement limit (" << r.moved << " were). \"Steady\" counts\n"
      << "the rounds measured within ±3 %. \"Error, scaled\" is the decode error against each round's decode divided "
         "by its\n"
      << "probe ratio (decode streams weights as the probe does), median over the rounds.\n";
    if (r.extra_rounds > 0) {
      m << "After the " << r.rounds << " rounds, up to " << r.extra_rounds
        << " more passes measured again only the placements that no round had yet measured steady (each pass in a "
           "fresh\n"
        << "random order; " << r.extra_measurements
        << " extra measurements): their rounds count like the others in every figure.\n";
    }
    if (std::any_of(r.rows.begin(), r.rows.end(), [](const auto& x) { return !x.page_cache_ratios.empty(); })) {
      m << "Placements that read disk-offloaded weights in decode were also bracketed by the page-cache probe (copying "
           "a 64 MiB file\n"
        << "warm in the page cache out of its memory map, as the executor reads such weights; \"page cache\", + = "
           "slower now than at\n"
        << "calibration): the wait was for both probes to read within ±3 %, a round is steady when both did, and the "
           "scaled error\n"
        << "divides the predicted page-cache share of decode by the page-cache probe's ratio, the rest by the "
           "reference probe's.\n";
    }
  }
  if (r.not_quiet > 0)
    m << "**" << r.not_quiet << " measurement(s) started without the machine having become quiet.**\n";
  m << "\n";
  m << "| model | dtype | placement | predicted prefill | measured prefill | error | predicted ms/token | measured "
       "ms/token | error | "
    << (r.probed ? "machine vs calibration, per round | steady | error, scaled | " : "")
    << "rounds: ms/token | of which disk reads, ms | others' load | read from disk in decode |\n";
  m << "|---|---|---|---:|---:|---:|---:|---:|---:|" << (r.probed ? "---|---:|---:|" : "") << "---|---|---:|---:|\n";
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
    m << "| " << row.model_id << " | " << row.dtype << " | " << row.placement << (row.in_fit ? " (in the fit)" : "")
      << " | " << fmt(row.predicted_prefill_s * 1e3) << " ms | " << fmt(row.measured_prefill_s * 1e3) << " ms | "
      << pct(prefill_error(row)) << " | " << fmt(row.predicted_decode_s * 1e3) << " | "
      << fmt(row.measured_decode_s * 1e3) << " | " << pct(decode_error(row)) << " | "
      << (!r.probed ? "" : probe_cells(row)) << rounds << " | " << reads << " | " << fmt(row.foreign_cores, 2)
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
    << " % | median ≤ 10 % |\n";
  const NoiseFloorText noise = noise_floor_text(r.decode_noise, r.prefill_noise, held_out, "rounds");
  m << noise.table_rows;
  if (r.probed) {
    m << "| time per output token, scaled by the probe | " << fmt(r.scaled_decode_median_abs * 100, 2) << " % | "
      << fmt(r.scaled_decode_p90_abs * 100, 2) << " % | (for reference) |\n";
    m << "\nThe targets apply to the raw error of placements measured while the probe was within ±3 % of calibration "
         "time: "
      << r.steady_rows << " of " << r.held_out << " held-out placements were, in at least one round";
    if (r.steady_rows > 0) {
      m << "; over those rounds alone (their medians), time per output token "
        << fmt(r.steady_decode_median_abs * 100, 2) << " % median, " << fmt(r.steady_decode_p90_abs * 100, 2)
        << " % p90; prefill " << fmt(r.steady_prefill_median_abs * 100, 2) << " % median";
    }
    m << ".\n";
  } else {
    m << "\nThe calibration holds no reference probe time (made before dmap recorded one): the machine's drift since "
         "is not known.\n";
  }
  m << "\n" << noise.paragraph;
  m << "\nPlacement regret (measured time of the placement predicted fastest, whole run, vs the measured fastest):\n\n";
  m << "| model, dtype | predicted fastest | measured fastest | regret |\n|---|---|---|---:|\n";
  for (const auto& g : r.regrets)
    m << "| " << g.group << " | " << g.recommended << " | " << g.fastest << " | " << fmt(g.regret * 100, 2) << " % |\n";
  if (std::any_of(r.rows.begin(), r.rows.end(), [](const ValidationTableRow& x) { return x.decode_routed > 0; })) {
    m << "\nRouted experts touched per sparse-layer forward — measured by the executor (distinct experts its router "
         "picked; random weights) and as the cost model counts them: routing spreads tokens over a share s of the E "
         "experts (`moe.routing_spread`), one sequence's tokens over a share q of those (`moe.sequence_spread`); "
         "B sequences of T tokens touch sE(1 − (1 − f)^B), f = q(1 − (1 − k/(qsE))^T) (s = q = 1: uniform routing, "
         "E(1 − (1 − k/E)^(BT))). The figures each model was predicted with:\n\n";
    for (const auto& f : r.routing) {
      m << "- " << f.model_id << ": s = " << fmt(f.spread, 3) << ", q = " << fmt(f.sequence_spread, 3);
      if (f.source == "probe") {
        m << ", fitted to a routing probe's counts on prompts of its own (not the validation's), both figures at "
             "once (least squares on their logarithms; rms "
          << fmt(f.rms_log_error * 100, 2) << " %): a decode step of " << fmt(f.decode_sequences, 3)
          << " sequences touched " << fmt(f.decode_touched, 3) << " experts per forward, one sequence's "
          << fmt(f.prefill_tokens, 4) << "-token prefill " << fmt(f.prefill_touched, 3);
        if (f.prefill_prompts > 1) m << " (the mean over " << f.prefill_prompts << " prompts)";
        if (f.batch_prefill_touched > 0)
          m << ", " << fmt(f.decode_sequences, 3) << " sequences' prefill " << fmt(f.batch_prefill_touched, 3);
        m << ".\n";
      } else if (f.source == "calibration") {
        m << ", the calibration's `moe` section.\n";
      } else {
        m << " (uniform routing: no figures in the calibration, no probe).\n";
      }
    }
    m << "\n";
    m << "| model | dtype | placement | prefill tokens | measured | predicted | decode tokens | measured | predicted "
         "|\n|---|---|---|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& x : r.rows) {
      if (x.decode_routed <= 0) continue;
      m << "| " << x.model_id << " | " << x.dtype << " | " << x.placement << " | " << fmt(x.prefill_routed, 4) << " | "
        << fmt(x.measured_prefill_touched, 3) << " | " << fmt(x.predicted_prefill_touched, 3) << " | "
        << fmt(x.decode_routed, 4) << " | " << fmt(x.measured_decode_touched, 3) << " | "
        << fmt(x.predicted_decode_touched, 3) << " |\n";
    }
  }
  m << "\n![predicted vs measured](" << svg_name << ")\n\n";
  m << "Timeline: [`" << trace_name << "`](" << trace_name
    << ") (open in ui.perfetto.dev or chrome://tracing) holds the\n"
    << "measured module ranges of one placement (the first that reads disk or uses a GPU) next to the cost model's\n"
    << "predicted timeline: each op on the device it runs on, disk reads and copies on lanes of their own.\n";
  return m.str();
}

}  // namespace dmap::report
