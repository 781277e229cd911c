// The scenario report: `dmap report` writes reports/<scenario>/index.md with SVG charts —
// time per token by strategy with its breakdown, the crossover chart (time per token against
// the GPU memory budget for auto, CPU-only, in-place and the optimum) and memory per device —
// plus results.json (the `dmap simulate --format json` document).
//
// Data flow: SimScenario --sim::evaluate--> Evaluation --write_report--> index.md + *.svg + results.json
#pragma once

#include <string>
#include <vector>

#include "sim/recommend.h"
#include "sim/sim_scenario.h"

namespace dmap::report {

// GPU budgets of the crossover chart: the scenario's, else 14 steps from 5% to 130% of the
// model's weights.
std::vector<Bytes> crossover_budgets(const sim::SimScenario& s, const sim::Evaluation& ev);

// Writes the report into `out_dir` (created). Returns the files written.
std::vector<std::string> write_report(const sim::SimScenario& s, const sim::Evaluation& ev, const std::string& out_dir);

}  // namespace dmap::report
