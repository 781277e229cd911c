// libFuzzer target: a scenario file, read and evaluated as `dmap simulate --format json` does
// (every strategy x semantics, the optimal search, the verdict, the JSON output). Presets come
// from the source tree's configs/. Build and run: tests/fuzz/run_fuzz.sh.
#include <cstdint>

#include "sim/recommend.h"
#include "sim/render.h"
#include "sim/sim_scenario.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = dmap::fuzz::input_file(data, size, "scenario.yaml");
  return dmap::fuzz::accept_or_refuse([&] {
    const dmap::sim::SimScenario s = dmap::sim::load_sim_scenario(path, DMAP_SOURCE_DIR "/configs");
    const dmap::sim::Evaluation ev = dmap::sim::evaluate(s);
    if (dmap::sim::evaluation_json(s, ev).empty()) std::abort();
  });
}
