// libFuzzer target: a Hugging Face config.json, read as `dmap map --model config.json` reads it
// (JSON duplicate keys as Python's json), its module tree built and sized, and
// device_map="auto" planned under a small GPU cap so that the planner splits it.
#include <cstdint>

#include "core/module_tree.h"
#include "core/scenario.h"
#include "strategies/plan.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = dmap::fuzz::input_file(data, size, "config.json");
  return dmap::fuzz::accept_or_refuse([&] {
    dmap::Scenario sc;
    sc.file = "fuzz";
    sc.model = dmap::load_model_spec(path);
    sc.max_memory = dmap::parse_max_memory_flag("0=200MiB,cpu=1GiB", "fuzz");
    const dmap::ModuleTree tree = dmap::build_module_tree(sc.model);
    const auto plan = dmap::strategies::plan_device_map(dmap::strategies::plan_request_for(sc, tree));
    if (plan.device_map.size() == 0) std::abort();
  });
}
