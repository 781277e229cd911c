// What `dmap run` prints about a run: a table for people, a JSON document for scripts. The
// command fills a RunReport from the run (exec/run.h) and the placement; this file only formats.
//
// Example:
//   RunReport rep{.model = "tinyllama_1b", ...};
//   std::cout << (json ? run_report_json(rep) + "\n" : run_report_table(rep));
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dmap::report {

struct RunModule {
  std::string module, device;
  double prefill_s = 0, decode_s = 0;  // the prefill; the median decode step
};

// Distinct routed experts per sparse-layer forward of one phase, measured; the simulator's
// uniform-routing figure for the same tokens per forward beside it.
struct RunExperts {
  int64_t forwards = 0;
  double touched = 0;  // mean distinct experts per forward
  double rows = 0;     // mean tokens routed per forward
  double uniform = 0;  // E (1 - (1 - k/E)^rows)
  // The share of the experts the counts say one sequence's tokens spread over (calibration key
  // moe.sequence_spread, with moe.routing_spread 1): only a single sequence's prefill says it
  // (one token per forward always touches k; `dmap run --batch` repeats one prompt).
  std::optional<double> spread;
};

struct RunReport {
  std::string model, family, weights, dtype;  // weights: "checkpoint" or "random"
  std::string placement;                      // how the map was made
  std::string backend, semantics;             // semantics "cpu" for the CPU executor
  std::string executor;                       // the executor line of the table
  int64_t batch = 1, prompt_tokens = 0, new_tokens = 0;
  int threads = 1;
  std::string isa;
  std::vector<std::vector<int32_t>> tokens;
  double prefill_s = 0;
  std::vector<double> decode_s;  // per step
  int64_t disk_bytes_read = 0;
  double decode_disk_read_s = 0;   // mean per decode step spent copying disk-offloaded weights
  int64_t experts = 0, top_k = 0;  // routed experts per sparse layer, picked per token (0: dense)
  RunExperts prefill_experts, decode_experts;
  std::string device_map_json;
  std::vector<RunModule> modules;
};

std::string run_report_json(const RunReport& r);
std::string run_report_table(const RunReport& r);

}  // namespace dmap::report
