// Recommender: every strategy of a scenario under every execution semantics, plus the
// optimal search, ranked by predicted end-to-end time; the recommendation and the verdict
// sentence comparing it with device_map="auto" and with CPU-only.
//
// Data flow: SimScenario --plan_device_map / DP--> DeviceMaps --simulate--> rows --> ranking
//
// Example:
//   Evaluation ev = evaluate(scenario);
//   std::cout << ev.verdict << "\n" << ev.rows[ev.recommended].strategy << "\n";
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/device_map.h"
#include "core/module_tree.h"
#include "sim/calibration.h"
#include "sim/cost_model.h"
#include "sim/graph.h"
#include "sim/optimal.h"
#include "sim/sim_scenario.h"
#include "sim/simulate.h"

namespace dmap::sim {

struct ResultRow {
  std::string strategy;   // auto, balanced, ..., cpu, disk, optimal, or a hand-written map's name
  std::string semantics;  // accelerate | prefetch | in-place | cpu, or the optimum's mix ("prefetch+in-place")
  std::string runtime;    // transformers | llama.cpp | dmap when the scenario lists runtimes, else ""
  DeviceMap map;
  std::vector<Semantics> per_entry;
  Prediction pred;
  std::string error;    // the strategy could not produce a map (the planner raised)
  std::string same_as;  // an earlier row with the identical placement and semantics
};

struct Evaluation {
  std::shared_ptr<const ModuleTree> tree;
  std::shared_ptr<const ModelGraph> graph;
  Rates rates;
  MaxMemory max_memory;  // what the planner was given
  bool max_memory_derived = false;
  std::vector<ResultRow> rows;
  std::vector<int> ranking;  // feasible rows by total time, then the rest
  int recommended = -1;      // row index, -1 when nothing fits
  int auto_row = -1, cpu_row = -1, optimal_row = -1;
  std::optional<OptimalResult> optimal;
  double break_even_fraction = 0;  // h2d pageable bandwidth / CPU memory bandwidth
  std::string verdict;
  std::string how_to_run;  // transformers device_map=... or llama.cpp -ngl N, or dmap run
};

Evaluation evaluate(const SimScenario& s);

// "accelerate", or "accelerate under transformers" when the row names its runtime.
std::string semantics_label(const ResultRow& r);

// The placements of the optimal search's space that the feasible strategy rows are (its seeds:
// the optimum is never slower than any of them).
std::vector<Placement> contained_placements(const std::vector<ResultRow>& rows, const CostModel& cm,
                                            const Hardware& hw);

// Evaluates the scenario with GPU memory capped at `budget` bytes per GPU (the crossover
// chart): auto/accelerate, cpu, in-place for auto's map, and the optimum.
struct BudgetPoint {
  Bytes budget = 0;
  double auto_s = -1, cpu_s = -1, in_place_s = -1, optimal_s = -1;  // decode s/token; -1 = infeasible
  double auto_offloaded = 0;
};
BudgetPoint evaluate_budget(const SimScenario& s, Bytes budget);

std::string format_seconds(double s);  // "41.2 ms", "2.41 s"

}  // namespace dmap::sim
