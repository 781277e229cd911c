// SimScenario: a scenario file with what `dmap simulate` needs beyond `dmap map` — the
// hardware, the workload, the strategies and semantics to compare, an optional calibration.
//
//   id: llama31_8b_fp16_rtx3060
//   title: Llama-3.1-8B in fp16 on a 12 GB desktop GPU      # optional, for reports
//   model: llama31_8b
//   hardware: {host: desktop_ddr5_dual, gpus: [rtx3060_12gb], link: pcie4_x16, disk: nvme_gen4}
//   workload: {batch: 1, prompt: 512, new_tokens: 128, dtype: float16}
//   max_memory: {0: 11GiB, cpu: 48GiB}   # optional: derived from the hardware as transformers does
//   strategies: [auto, sequential, cpu, optimal, my_map]   # optional: default all + hand-written maps
//   semantics: [accelerate, prefetch, in-place]             # optional: default all
//   runtimes: [transformers, llama.cpp, dmap]               # optional: each row under the runtimes
//                                                           # that run its semantics (sim/runtime.h);
//                                                           # default: dmap's executor alone
//   calibration: ../calibrations/desktop.yaml               # optional
//   device_maps: {my_map: {...}}                            # hand-written maps (see core/scenario.h)
//   crossover_budgets: [4GiB, 6GiB, 8GiB, 10GiB, 12GiB]     # optional: GPU budgets for the report's chart
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/scenario.h"
#include "sim/calibration.h"
#include "sim/cost_model.h"
#include "sim/hardware.h"
#include "sim/simulate.h"

namespace dmap::sim {

// Strategy names a scenario may list besides its hand-written maps.
const std::vector<std::string>&
builtin_strategies();  // auto, balanced, balanced_low_0, sequential, cpu, disk, n_cpu_moe, optimal

struct SimScenario {
  Scenario base;
  std::string title;
  Hardware hardware;
  Workload workload;
  std::vector<std::string> strategies;
  std::vector<Semantics> semantics;
  // The runtimes rows are predicted under, in sim::all_runtimes() order; empty: dmap's executor
  // alone, and rows name no runtime (the output of scenarios written before runtimes existed).
  std::vector<Runtime> runtimes;
  std::optional<Calibration> calibration;
  std::vector<Bytes> crossover_budgets;
  // Set when transformers would dequantize the checkpoint on this hardware (FP8, MXFP4).
  std::string quantization_note;
};

// `config_dir`: the configs/ folder (models/, hardware/ below it).
SimScenario load_sim_scenario(const std::string& path, const std::string& config_dir,
                              const std::optional<std::string>& calibration_override = std::nullopt);

// What the planner is given as max_memory when the scenario states none: what accelerate's
// get_max_memory sees on this hardware (free GPU memory after the CUDA context and other
// programs; available RAM for "cpu").
MaxMemory derived_max_memory(const Hardware& hw);

}  // namespace dmap::sim
