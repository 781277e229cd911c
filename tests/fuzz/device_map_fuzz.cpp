// libFuzzer target: a hand-written device map (`dmap map --device-map FILE`), parsed and
// validated against Llama-3.2-1B's module tree.
#include <cstdint>

#include "core/module_tree.h"
#include "core/scenario.h"
#include "core/yaml_io.h"
#include "strategies/plan.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const dmap::ModuleTree tree =
      dmap::build_module_tree(dmap::load_model_spec(DMAP_SOURCE_DIR "/configs/models/llama32_1b.yaml"));
  const std::string path = dmap::fuzz::input_file(data, size, "map.yaml");
  return dmap::fuzz::accept_or_refuse([&] {
    std::vector<int> lines;
    const auto entries = dmap::parse_device_map_node(dmap::load_yaml_file(path), path, &lines);
    (void)dmap::strategies::validate_manual_map(tree, entries, path, lines);
  });
}
