// Rendering an Evaluation: the JSON of `dmap simulate --format json`, the terminal table, the
// Markdown table, and the golden-file form (recommendation, ranking, predicted times).
#pragma once

#include <string>
#include <vector>

#include "sim/recommend.h"
#include "sim/sim_scenario.h"

namespace dmap::sim {

// The figures the cost model used (achieved rates and overheads) and where each comes from.
struct FigureRow {
  std::string name;
  double value;
  std::string unit;
  Source source;
};
std::vector<FigureRow> figures(const Evaluation& ev);

// {"scenario": {...}, "figures": [...], "results": [...], "recommendation": {...}, "verdict": "..."}
std::string evaluation_json(const SimScenario& s, const Evaluation& ev);
std::string evaluation_table(const SimScenario& s, const Evaluation& ev);
std::string evaluation_markdown(const SimScenario& s, const Evaluation& ev);

// The golden regression record: {"scenario", "tolerance", "recommendation", "ranking", "results"}.
std::string golden_json(const SimScenario& s, const Evaluation& ev);
// Compares a fresh evaluation with a golden record; returns the differences ("" = equal).
std::string compare_golden(const SimScenario& s, const Evaluation& ev, const std::string& golden_file);

}  // namespace dmap::sim
