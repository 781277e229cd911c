// `dmap report`: simulate a scenario and write reports/<scenario>/ (Markdown + SVG + JSON).
#include <filesystem>
#include <iostream>
#include <set>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/output.h"
#include "report/report.h"
#include "sim/recommend.h"
#include "sim/sim_scenario.h"

namespace dmap::cli {

namespace {

const char* kReportHelp = R"(usage: dmap report SCENARIO.yaml [...] [options]
       dmap report --all

Simulates each scenario and writes reports/<scenario id>/index.md with SVG charts (time per
token by strategy and its breakdown; the crossover chart of time per token against the GPU
memory budget for auto, CPU-only, in-place and the optimum; memory per device) and
results.json.

options:
  --out DIR            parent folder of the reports (default: reports/ of the source tree)
  --calibration FILE   achieved rates from `dmap profile --real`
  --all                every scenario in configs/scenarios that describes hardware
  --help               this text

exit codes: 0 ok, 1 runtime failure, 2 bad input
)";

}  // namespace

int cmd_report(const std::vector<std::string>& argv) {
  Args args(argv, {"out", "calibration"}, {"help", "all"});
  if (args.has("help")) {
    std::cout << kReportHelp;
    return 0;
  }
  std::vector<std::string> files = args.positional();
  if (args.has("all")) {
    const auto all = simulated_scenarios();
    files.insert(files.end(), all.begin(), all.end());
  }
  if (files.empty()) throw InputError("dmap report: expected SCENARIO.yaml or --all (see --help)");
  const std::string out =
      args.get("out").value_or((std::filesystem::path(config_dir()).parent_path() / "reports").string());
  // Load every scenario and check the output folder first: bad input is reported before
  // anything is written.
  std::vector<sim::SimScenario> scenarios;
  std::set<std::string> ids;
  for (const auto& f : files) {
    scenarios.push_back(sim::load_sim_scenario(f, config_dir(), args.get("calibration")));
    if (!ids.insert(scenarios.back().base.id).second) {
      throw InputError(
          f, 0, 0,
          "a second scenario with id '" + scenarios.back().base.id + "': its report would replace the first's");
    }
  }
  check_output_folder(out, "--out");
  // Each report is built in a folder aside and swapped in whole: an error or a kill leaves the
  // previous report or the new one, never a mix.
  for (const auto& s : scenarios) {
    const sim::Evaluation ev = sim::evaluate(s);
    StagedFolder dir(out + "/" + s.base.id);
    const auto written = report::write_report(s, ev, dir.path());
    dir.commit();
    std::cout << out << "/" << s.base.id << "/index.md (" << written.size() << " files)\n";
  }
  return 0;
}

}  // namespace dmap::cli
