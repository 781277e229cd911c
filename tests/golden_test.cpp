// CI regression of planner decisions: every shipped scenario's recommendation, ranking and
// predicted times must match tests/golden/<id>.json (times within the recorded tolerance).
// After an intended change: `dmap simulate --update-golden` (see README).
#include <catch2/catch.hpp>

#include <filesystem>
#include <set>

#include "core/yaml_io.h"
#include "sim/recommend.h"
#include "sim/render.h"
#include "sim/sim_scenario.h"

namespace fs = std::filesystem;

namespace {

const std::string kConfigs = std::string(DMAP_SOURCE_DIR) + "/configs";
const std::string kGolden = std::string(DMAP_SOURCE_DIR) + "/tests/golden";

std::vector<fs::path> scenarios_with_hardware() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(kConfigs + "/scenarios")) {
    if (e.path().extension() != ".yaml") continue;
    const YAML::Node n = dmap::load_yaml_file(e.path().string());
    if (n["hardware"].IsDefined()) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("every shipped scenario matches its golden planner decisions", "[golden]") {
  const auto files = scenarios_with_hardware();
  REQUIRE(files.size() >= 5);
  std::set<std::string> ids;
  for (const auto& f : files) {
    const dmap::sim::SimScenario s = dmap::sim::load_sim_scenario(f.string(), kConfigs);
    ids.insert(s.base.id);
    const std::string golden = kGolden + "/" + s.base.id + ".json";
    INFO("scenario " << f.string() << " (golden " << golden
                     << "; rewrite with `dmap simulate --update-golden` if intended)");
    REQUIRE(fs::exists(golden));
    const dmap::sim::Evaluation ev = dmap::sim::evaluate(s);
    CHECK(dmap::sim::compare_golden(s, ev, golden) == "");
  }
  // No stale golden file without its scenario.
  for (const auto& e : fs::directory_iterator(kGolden)) {
    if (e.path().extension() == ".json") CHECK(ids.count(e.path().stem().string()) == 1);
  }
}

TEST_CASE("the golden comparison notices a changed prediction", "[golden]") {
  const std::string file = kConfigs + "/scenarios/llama31_8b_fp16_rtx3060.yaml";
  dmap::sim::SimScenario s = dmap::sim::load_sim_scenario(file, kConfigs);
  const std::string golden = kGolden + "/" + s.base.id + ".json";
  REQUIRE(dmap::sim::compare_golden(s, dmap::sim::evaluate(s), golden) == "");
  // A slower link changes the accelerate rows' times beyond the tolerance.
  s.hardware.link.h2d_pageable.value *= 0.5;
  const std::string diff = dmap::sim::compare_golden(s, dmap::sim::evaluate(s), golden);
  CHECK(diff.find("auto/accelerate: decode_token_s") != std::string::npos);
  // A different workload changes the ranking or the times.
  dmap::sim::SimScenario t = dmap::sim::load_sim_scenario(file, kConfigs);
  t.workload.new_tokens = 2000;
  CHECK_FALSE(dmap::sim::compare_golden(t, dmap::sim::evaluate(t), golden).empty());
}
