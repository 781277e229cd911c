// `dmap simulate`: every strategy x semantics of a scenario, the recommendation and the
// verdict; `--update-golden` rewrites the planner-decision regression records.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <set>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/output.h"
#include "sim/recommend.h"
#include "sim/render.h"
#include "sim/sim_scenario.h"

namespace dmap::cli {

namespace {

const char* kSimulateHelp = R"(usage: dmap simulate SCENARIO.yaml [options]
       dmap simulate --update-golden [SCENARIO.yaml ...]

Predicts, for every strategy of the scenario under every execution semantics (accelerate,
prefetch, in-place, cpu), the memory per device, prefill time, time per output token,
tokens/s, end-to-end time, bytes moved per token and the bottleneck; searches the optimal
placement; recommends the fastest and says when CPU-only beats partial GPU offload.

options:
  --format F           table (default) | json | markdown
  --calibration FILE   achieved rates from `dmap profile --real` (overrides the scenario's)
  --runtimes R,...     predict each row under the runtimes that run it: transformers (accelerate
                       and CPU-only rows), llama.cpp (in-place and CPU-only), dmap (every
                       semantics); overrides the scenario's `runtimes` (default: dmap alone)
  --update-golden      rewrite tests/golden/<id>.json for the given scenarios (default: every
                       scenario in configs/scenarios with hardware); use it only when a change
                       of the cost model or a planner is intended, and say why in the commit
  --golden-dir DIR     where golden records live (default: tests/golden of the source tree)
  --help               this text

exit codes: 0 ok, 1 runtime failure, 2 bad input
)";

std::string golden_dir_default() {
  return (std::filesystem::path(config_dir()).parent_path() / "tests" / "golden").string();
}

}  // namespace

std::vector<std::string> simulated_scenarios() {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(config_dir()) / "scenarios", ec)) {
    if (e.path().extension() != ".yaml") continue;
    const YAML::Node n = YAML::LoadFile(e.path().string());
    // (Relative to the working directory where it can be: reports name their scenario file, and
    // `report --all` from the project root must write what `report configs/scenarios/X` writes.)
    if (n.IsMap() && n["hardware"].IsDefined()) out.push_back(fs::proximate(e.path(), ec).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

int cmd_simulate(const std::vector<std::string>& argv) {
  Args args(argv, {"format", "calibration", "golden-dir", "runtimes"}, {"help", "update-golden"});
  if (args.has("help")) {
    std::cout << kSimulateHelp;
    return 0;
  }
  const std::string format = args.get("format").value_or("table");
  if (format != "table" && format != "json" && format != "markdown") {
    throw InputError("--format: unknown format '" + format + "' (table, json, markdown)");
  }
  if (args.has("update-golden")) {
    if (args.has("runtimes")) throw InputError("--runtimes cannot be combined with --update-golden");
    if (args.has("calibration")) {
      throw InputError(
          "--calibration cannot be combined with --update-golden: golden files record the scenarios' own figures");
    }
    std::vector<std::string> files = args.positional();
    if (files.empty()) files = simulated_scenarios();
    const std::string dir = args.get("golden-dir").value_or(golden_dir_default());
    // Every scenario is loaded and evaluated before any golden file is written: bad input
    // leaves the golden files as they were.
    std::vector<std::pair<std::string, std::string>> goldens;  // path, contents
    std::set<std::string> ids;
    for (const auto& f : files) {
      const sim::SimScenario s = sim::load_sim_scenario(f, config_dir());
      if (!ids.insert(s.base.id).second) {
        throw InputError(f, 0, 0,
                         "a second scenario with id '" + s.base.id + "': its golden file would replace the first's");
      }
      goldens.emplace_back(dir + "/" + s.base.id + ".json", sim::golden_json(s, sim::evaluate(s)));
    }
    check_output_folder(dir, "--golden-dir");
    for (const auto& [path, text] : goldens) {
      write_file_atomic(path, text);
      std::cerr << "wrote " << path << "\n";
    }
    return 0;
  }
  if (args.positional().size() != 1) throw InputError("dmap simulate: expected one SCENARIO.yaml (see --help)");
  sim::SimScenario s = sim::load_sim_scenario(args.positional()[0], config_dir(), args.get("calibration"));
  if (auto r = args.get("runtimes")) {
    std::vector<sim::Runtime> listed;
    for (const auto& name : split_commas(*r)) {
      const auto rt = sim::parse_runtime(name);
      if (!rt) throw InputError("--runtimes: unknown runtime '" + name + "' (transformers, llama.cpp, dmap)");
      listed.push_back(*rt);
    }
    if (listed.empty()) throw InputError("--runtimes: no runtime given");
    s.runtimes.clear();
    for (sim::Runtime rt : sim::all_runtimes()) {
      if (std::find(listed.begin(), listed.end(), rt) != listed.end()) s.runtimes.push_back(rt);
    }
  }
  const sim::Evaluation ev = sim::evaluate(s);
  if (format == "json") {
    std::cout << sim::evaluation_json(s, ev);
  } else if (format == "markdown") {
    std::cout << sim::evaluation_markdown(s, ev);
  } else {
    std::cout << sim::evaluation_table(s, ev);
  }
  return 0;
}

}  // namespace dmap::cli
