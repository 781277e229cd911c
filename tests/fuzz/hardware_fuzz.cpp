// libFuzzer target: a scenario's `hardware:` value (a system preset name or an inline mapping
// of host, GPUs, link, disk and their figures), parsed against the shipped presets, with the
// max_memory accelerate would derive from it.
#include <cstdint>

#include "core/yaml_io.h"
#include "sim/hardware.h"
#include "sim/sim_scenario.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = dmap::fuzz::input_file(data, size, "hardware.yaml");
  return dmap::fuzz::accept_or_refuse([&] {
    const YAML::Node root = dmap::load_yaml_file(path);
    const dmap::sim::Hardware hw = dmap::sim::parse_hardware(root, path, DMAP_SOURCE_DIR "/configs/hardware");
    (void)dmap::sim::derived_max_memory(hw);
  });
}
