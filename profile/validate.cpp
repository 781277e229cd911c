// Held-out validation of a calibration: predicted vs measured whole-model runs (see profile.h).
#include "profile/run_trace.h"

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
#include <thread>

#include "core/error.h"
#include "core/interrupt.h"
#include "core/module_tree.h"
#include "core/yaml_io.h"
#include "profile/fit.h"
#include "profile/probes.h"
#include "profile/yaml_text.h"
#include "report/svg.h"
#include "sim/cost_model.h"
#include "sim/graph.h"
#include "strategies/plan.h"

#include "exec/backend.h"
#include "exec/map_placement.h"

namespace dmap::profile {

// ---- validation ------------------------------------------------------------------------------

namespace {
// Whether every round of the row was bracketed by the page-cache probe too (disk placements).
bool page_probed(const ValidationRow& row) {
  return !row.probe_ratios.empty() && row.page_cache_ratios.size() == row.probe_ratios.size();
}
// Round k's page-cache ratio where the row was bracketed by that probe, else its reference ratio.
double round_page_ratio(const ValidationRow& row, size_t k) {
  return page_probed(row) ? row.page_cache_ratios[k] : row.probe_ratios[k];
}
}  // namespace

// Round k of a probed row was measured with the machine as it was calibrated: the reference probe
// within the band and, for placements bracketed by the page-cache probe, that one too.
bool steady_round(const ValidationRow& row, size_t k) {
  if (k >= row.probe_ratios.size()) return false;
  return std::fabs(row.probe_ratios[k] - 1) <= kSteadyBand && std::fabs(round_page_ratio(row, k) - 1) <= kSteadyBand;
}

bool any_steady_round(const ValidationRow& row) {
  for (size_t k = 0; k < row.probe_ratios.size(); ++k) {
    if (steady_round(row, k)) return true;
  }
  return false;
}

void summarize(ValidationResult& v) {
  for (auto& row : v.rows) {
    row.measured_prefill_s = median(row.prefill_rounds);
    row.measured_decode_s = median(row.decode_rounds);
    row.probe_ratio = row.probe_ratios.empty() ? 0.0 : median(row.probe_ratios);
    row.steady_rounds = 0;
    row.steady_prefill_s = row.steady_decode_s = row.scaled_decode_s = 0;
    if (row.probe_ratios.size() != row.decode_rounds.size()) continue;  // not probed
    const double disk_share =
        page_probed(row) && row.predicted_decode_s > 0 ? row.predicted_decode_disk_s / row.predicted_decode_s : 0.0;
    std::vector<double> sp, sd, scaled;
    for (size_t k = 0; k < row.decode_rounds.size(); ++k) {
      // Disk placements: their page-cache copies at the page-cache probe's ratio, the rest at the
      // reference probe's; steady when both read within the band.
      const double q = row.probe_ratios[k];
      scaled.push_back(row.decode_rounds[k] / ((1 - disk_share) * q + disk_share * round_page_ratio(row, k)));
      if (!steady_round(row, k)) continue;
      sp.push_back(row.prefill_rounds[k]);
      sd.push_back(row.decode_rounds[k]);
    }
    row.scaled_decode_s = median(scaled);
    row.steady_rounds = static_cast<int>(sd.size());
    if (!sd.empty()) {
      row.steady_prefill_s = median(sp);
      row.steady_decode_s = median(sd);
    }
  }
  std::vector<double> de, pe, sde, spe, scaled;
  std::vector<std::vector<double>> decode_rounds, prefill_rounds;
  for (const auto& r : v.rows) {
    if (r.in_fit) continue;
    decode_rounds.push_back(r.decode_rounds);
    prefill_rounds.push_back(r.prefill_rounds);
    de.push_back(std::fabs(r.decode_error()));
    pe.push_back(std::fabs(r.prefill_error()));
    scaled.push_back(std::fabs(r.scaled_decode_error()));
    if (!r.steady()) continue;
    sde.push_back(std::fabs(r.steady_decode_error()));
    spe.push_back(std::fabs(r.steady_prefill_error()));
  }
  v.held_out = static_cast<int>(de.size());
  v.decode_median_abs = median(de);
  v.decode_p90_abs = percentile(de, 0.9);
  v.prefill_median_abs = median(pe);
  v.prefill_p90_abs = percentile(pe, 0.9);
  v.steady_rows = static_cast<int>(sde.size());
  v.steady_decode_median_abs = median(sde);
  v.steady_decode_p90_abs = percentile(sde, 0.9);
  v.steady_prefill_median_abs = median(spe);
  v.scaled_decode_median_abs = median(scaled);
  v.scaled_decode_p90_abs = percentile(scaled, 0.9);
  v.decode_noise = noise_floor(decode_rounds);
  v.prefill_noise = noise_floor(prefill_rounds);
  // Regret per model and dtype: the placement predicted fastest (whole run) vs the measured fastest.
  std::map<std::string, std::vector<const ValidationRow*>> groups;
  for (const auto& r : v.rows) groups[r.c.model_id + " " + std::string(dtype_name(r.c.dtype))].push_back(&r);
  v.max_regret = 0;
  v.regrets.clear();
  for (const auto& [name, rows] : groups) {
    const int64_t n = v.run.new_tokens;
    const ValidationRow* pred = *std::min_element(
        rows.begin(), rows.end(), [&](auto a, auto b) { return a->predicted_total(n) < b->predicted_total(n); });
    const ValidationRow* meas = *std::min_element(
        rows.begin(), rows.end(), [&](auto a, auto b) { return a->measured_total(n) < b->measured_total(n); });
    Regret g{name, pred->c.placement, meas->c.placement, pred->measured_total(n) / meas->measured_total(n) - 1};
    v.max_regret = std::max(v.max_regret, g.regret);
    v.regrets.push_back(g);
  }
}

RoutingFit probe_routing(const ValidationCase& c, const RunSettings& rs, int64_t batch) {
  const ModuleTree tree = build_module_tree(c.spec);
  const int64_t E = tree.dims.num_experts, k = tree.dims.experts_per_token;
  DMAP_CHECK(E > 0, "a routing probe of a dense model");
  RoutingFit f;
  f.model_id = c.model_id;
  f.source = "probe";
  RunSettings p = rs;
  p.backend = "cpu";
  p.prefill_reps = 1;
  p.new_tokens = std::clamp<int64_t>(rs.new_tokens, 2, 6);
  p.prompt_seed = rs.seed + 7919;  // not the validation's prompts (seed + 1)
  const DeviceMap cpu = layers_on_disk_map(c.spec, 0);
  auto per_forward = [](int64_t n, int64_t forwards) {
    return forwards > 0 ? static_cast<double>(n) / static_cast<double>(forwards) : 0.0;
  };
  // Decode of independent sequences: one token each.
  p.batch = batch;
  const exec::ExpertCounts b = run_placement(c.spec, c.dtype, cpu, p).experts;
  f.decode_sequences = per_forward(b.decode_rows, b.decode_forwards);
  f.decode_touched = per_forward(b.decode_touched, b.decode_forwards);
  // The same run's prefill of those sequences: their union shows the spread (decode barely does).
  f.batch_prefill_touched = per_forward(b.prefill_touched, b.prefill_forwards);
  // One sequence's prefill, prompts of its own: how alike its tokens route. A prompt's count
  // varies by a few percent: the mean of three.
  p.batch = 1;
  p.new_tokens = 1;
  f.prefill_prompts = 3;
  double tokens = 0, touched = 0;
  for (int i = 0; i < f.prefill_prompts; ++i) {
    p.prompt_seed += 1;
    const exec::ExpertCounts s = run_placement(c.spec, c.dtype, cpu, p).experts;
    tokens += per_forward(s.prefill_rows, s.prefill_forwards);
    touched += per_forward(s.prefill_touched, s.prefill_forwards);
  }
  f.prefill_tokens = tokens / f.prefill_prompts;
  f.prefill_touched = touched / f.prefill_prompts;
  const double seqs = f.decode_sequences;
  const sim::RoutingSpreads r = sim::routing_spreads_of(E, k,
                                                        {{seqs, 1, f.decode_touched},
                                                         {1, f.prefill_tokens, f.prefill_touched},
                                                         {seqs, f.prefill_tokens, f.batch_prefill_touched}});
  f.spread = r.spread;
  f.sequence_spread = r.sequence_spread;
  f.rms_log_error = r.rms_log_error;
  return f;
}

ValidationResult validate(const std::vector<ValidationCase>& cases, const sim::Hardware& hw,
                          const sim::Calibration& cal, const RunSettings& rs, const ValidationSettings& vs,
                          const ProgressFn& progress) {
  DMAP_CHECK(vs.rounds >= 1 && vs.retries >= 0, "validation needs at least one round");
  ValidationResult v;
  v.run = rs;
  v.settings = vs;
  // Predictions first: an infeasible case is an input error before anything is measured.
  auto settings_of = [&](const ValidationCase& c) {
    RunSettings s = rs;
    s.backend = c.backend;
    s.semantics = c.semantics;
    s.batch = c.batch;
    return s;
  };
  // Each MoE model's routing figures (the calibration's, or a probe's): its rows predict with them.
  std::map<std::string, sim::Calibration> routed_cal;
  auto cal_of = [&](const ValidationCase& c) -> const sim::Calibration& {
    const auto it = routed_cal.find(c.model_id);
    return it != routed_cal.end() ? it->second : cal;
  };
  auto predict_row = [&](ValidationRow& row) {
    const ValidationCase& c = row.c;
    const DeviceMap dm = c.device_map();
    const sim::Prediction p = predict(c.spec, c.dtype, dm, hw, &cal_of(c), rs.prompt, rs.new_tokens,
                                      sim_semantics(dm, settings_of(c)), sim::Runtime::kDmap, c.batch);
    if (!p.feasible) throw InputError("validation case " + c.model_id + " " + c.placement + " does not fit: " + p.oom);
    row.predicted_prefill_s = p.prefill_s;
    row.predicted_decode_s = p.decode_token_s;
    row.predicted_decode_disk_s = p.decode[sim::Resource::kDisk];
  };
  for (const auto& c : cases) {
    ValidationRow row;
    row.c = c;
    predict_row(row);
    v.rows.push_back(row);
  }
  for (const auto& c : cases) {
    if (build_module_tree(c.spec).dims.num_experts <= 0 || routed_cal.count(c.model_id)) continue;
    RoutingFit f;
    f.model_id = c.model_id;
    if (cal.moe_routing_spread || cal.moe_sequence_spread) {
      f.source = "calibration";
      f.spread = cal.moe_routing_spread.value_or(1.0);
      f.sequence_spread = cal.moe_sequence_spread.value_or(1.0);
    } else if (vs.routing_probe) {
      if (progress) progress("routing probe: " + c.model_id, 0, 1);
      f = probe_routing(c, rs);
    } else {
      f.source = "uniform";
    }
    sim::Calibration& mc = routed_cal.emplace(c.model_id, cal).first->second;
    mc.moe_routing_spread = f.spread;
    mc.moe_sequence_spread = f.sequence_spread;
    v.routing.push_back(f);
  }
  for (auto& row : v.rows) {
    if (routed_cal.count(row.c.model_id)) predict_row(row);
  }
  // Placements the calibration's whole-model runs used (its fit block names them).
  const YAML::Node fit = cal.fit;
  const YAML::Node runs = fit.IsDefined() && fit.IsMap() ? fit["whole_model_runs"] : YAML::Node();
  if (runs.IsDefined() && runs.IsSequence()) {
    for (const auto& run : runs) {
      if (!run.IsMap() || !run["model"] || !run["dtype"] || !run["placement"]) continue;
      for (auto& row : v.rows) {
        if (row.c.model_id == run["model"].Scalar() && dtype_name(row.c.dtype) == run["dtype"].Scalar() &&
            row.c.placement == run["placement"].Scalar() && row.c.backend == "cpu") {
          row.in_fit = true;
        }
      }
    }
  }
  // The trace shows one case: the first that moves weights (disk or GPU), else the first.
  size_t traced = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    if (cases[i].disk_layers > 0 || cases[i].map) {
      traced = i;
      break;
    }
  }
  const double ref = cal.host.reference_probe_ms.value_or(0.0);
  const double page_ref = cal.host.page_cache_probe_gbs.value_or(0.0);
  std::mt19937_64 order_rng(vs.order_seed);
  int total = static_cast<int>(cases.size()) * vs.rounds;
  int done = 0;
  const int passes = vs.rounds + (ref > 0 ? std::max(0, vs.extra_rounds) : 0);
  for (int round = 0; round < passes; ++round) {
    std::vector<size_t> order;
    for (size_t i = 0; i < cases.size(); ++i) {
      // Extra passes: only the placements no round has yet measured with the machine as calibrated.
      if (round < vs.rounds || !any_steady_round(v.rows[i])) order.push_back(i);
    }
    if (order.empty()) break;
    if (round >= vs.rounds) {
      total += static_cast<int>(order.size());
      v.extra_measurements += static_cast<int>(order.size());
    }
    std::shuffle(order.begin(), order.end(), order_rng);
    for (size_t i : order) {
      const ValidationCase& c = cases[i];
      ValidationRow& row = v.rows[i];
      if (progress) {
        progress(std::string(round < vs.rounds ? "round " : "extra round ") + std::to_string(round + 1) + ": " +
                     c.model_id + " " + std::string(dtype_name(c.dtype)) + " " + c.placement,
                 done, total);
      }
      ++done;
      const DeviceMap dm = c.device_map();
      PlacementRun r;
      double foreign = 0, ratio = 0, page_ratio = 0;
      // Placements that read disk-offloaded weights in decode copy them from the page cache.
      const bool paged = page_ref > 0 && row.predicted_decode_disk_s > 0;
      // The probe in the row's dtype where the calibration recorded one (sim::HostCalibration).
      const double row_ref = cal.host.reference_probe_for(c.dtype).value_or(0.0);
      const DType probe_dtype = cal.host.reference_probe_dtype(c.dtype);
      auto ref_probe = [&] { return reference_probe_ms(rs.threads, kReferenceProbeReads, probe_dtype); };
      for (int attempt = 0;; ++attempt) {
        if (vs.quiet.max_wait_s > 0 && !wait_quiet(vs.quiet).quiet) ++v.not_quiet;
        // The probes bracket the decode itself (RunSettings::before_decode / after_decode): before
        // its first step, repeated a second apart until the machine reads as it was calibrated (if
        // it comes back within a few seconds), and after its last.
        double before = 0, page_before = 0, after = 0, page_after = 0;
        RunSettings s = settings_of(c);
        if (row_ref > 0) {
          s.before_decode = [&] {
            auto probe_now = [&] {
              before = ref_probe();
              if (paged) page_before = page_cache_probe_gbs(rs.threads);
              return std::fabs(before / row_ref - 1) <= kSteadyBand &&
                     (!paged || std::fabs(page_ref / page_before - 1) <= kSteadyBand);
            };
            for (int t = 0; !probe_now() && t < vs.steady_tries; ++t) {
              std::this_thread::sleep_for(std::chrono::duration<double>(vs.steady_pause_s));
            }
          };
          s.after_decode = [&] {
            after = ref_probe();
            if (paged) page_after = page_cache_probe_gbs(rs.threads);
          };
        }
        const LoadProbe probe;
        r = run_placement(c.spec, c.dtype, dm, s);
        foreign = probe.foreign_cores();
        bool moved = false;
        if (row_ref > 0 && before > 0 && after > 0) {
          ratio = (before + after) / 2 / row_ref;
          moved = std::fabs(after / before - 1) > vs.moved_limit;
          if (paged) page_ratio = (page_ref / page_before + page_ref / page_after) / 2;
        }
        if ((foreign <= vs.spoiled_cores && !moved) || attempt >= vs.retries) break;
        ++row.remeasured;
        if (moved) ++v.moved;
      }
      row.foreign_cores = std::max(row.foreign_cores, foreign);
      row.decode_device_read_bytes = std::max(row.decode_device_read_bytes, r.decode_device_read_bytes);
      row.prefill_rounds.push_back(r.prefill_s);
      row.decode_rounds.push_back(r.decode_token_s);
      // Routed experts touched: the mean over rounds of each round's mean per sparse-layer forward.
      const double n = static_cast<double>(row.decode_rounds.size());
      const exec::ExpertCounts& e = r.experts;
      if (e.prefill_forwards > 0) {
        const double rows = static_cast<double>(e.prefill_rows) / static_cast<double>(e.prefill_forwards);
        row.prefill_routed = rows;
        row.measured_prefill_touched +=
            (static_cast<double>(e.prefill_touched) / static_cast<double>(e.prefill_forwards) -
             row.measured_prefill_touched) /
            n;
        row.predicted_prefill_touched =
            predicted_touched_experts(c.spec, &cal_of(c), rows, static_cast<double>(c.batch));
      }
      if (e.decode_forwards > 0) {
        const double rows = static_cast<double>(e.decode_rows) / static_cast<double>(e.decode_forwards);
        row.decode_routed = rows;
        row.measured_decode_touched += (static_cast<double>(e.decode_touched) / static_cast<double>(e.decode_forwards) -
                                        row.measured_decode_touched) /
                                       n;
        row.predicted_decode_touched =
            predicted_touched_experts(c.spec, &cal_of(c), rows, static_cast<double>(c.batch));
      }
      row.decode_disk_rounds.push_back(r.decode_disk_read_s);
      if (ratio > 0) row.probe_ratios.push_back(ratio);
      if (page_ratio > 0) row.page_cache_ratios.push_back(page_ratio);
      if (i == traced && round == 0) add_predicted_and_measured_trace(v.trace, c, r, hw, cal_of(c), settings_of(c));
    }
  }
  if (progress) progress("done", total, total);
  v.probed = ref > 0;
  summarize(v);
  return v;
}

}  // namespace dmap::profile
