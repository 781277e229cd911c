// The run loop `dmap run` and the profiler share: an executor built for a placement (exec/backend.h),
// an optional warm-up and repeated prefills on a scratch executor, then the measured run — a
// prefill and greedy decode (generate()) — with its per-module times, events and counters.
//
// Data flow:
//   weights + placement + backend --make_executor--> scratch: warm-up, prefill_reps - 1 timed prefills
//                                 --make_executor--> measured: reserve (untimed: work buffers touched),
//                                                    prefill (timed), decode steps (timed)
//   --> RunOutcome {tokens, prefill_s (median of the timed prefills), decode_s per step, the executor}
// On the emulated device, prefill_s and decode_s are the emulator's model clock (the sum of the
// modules' times of the measured run), not the host's wall time.
//
// Example:
//   RunPlan plan{.ids = prompt, .prompt_len = P, .new_tokens = 32, .prefill_reps = 3};
//   RunOutcome r = run_placement(cfg, weights, placement, Backend::kCpu, opt, plan);
//   double per_token = median(r.result.decode_s);
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "exec/backend.h"
#include "exec/executor.h"
#include "exec/placement.h"
#include "exec/weights.h"

namespace dmap::exec {

struct RunPlan {
  std::vector<int32_t> ids;  // batch x prompt_len token ids
  int64_t prompt_len = 0;
  int64_t new_tokens = 1;
  // Timed prefills: prefill_reps - 1 on a scratch executor (gone before the measured one is
  // built, so the two never share a GPU's memory) and the measured run's; the reported prefill is
  // their median. The scratch executor first runs an untimed warm-up prefill (thread teams,
  // buffers, first-touch page faults, a GPU's context) when prefill_reps > 1 or `warm_up`.
  int prefill_reps = 1;
  bool warm_up = false;
  // Offloaded weights evicted from the page cache for every prefill (a cold start), kept cached
  // in decode.
  bool cold_prefill = false;
  // The CPU executor times every step of its layers' programs in decode (RunOutcome's
  // decode_weight_s); other executors ignore it.
  bool time_steps = false;
  ModuleObserver* observer = nullptr;              // told about each module (GPU executors)
  std::function<void()> before_run;                // called after the scratch prefills, before the measured run
  std::function<void()> after_prefill;             // called between the measured prefill and the decode
  std::function<void(int64_t, int64_t)> progress;  // (tokens done, tokens wanted) after each forward
};

struct RunOutcome {
  GenerateResult result;          // tokens; prefill_s as RunPlan says; decode_s per step
  double decode_disk_read_s = 0;  // mean time per decode step reading disk-offloaded weights
  // With RunPlan::time_steps: per weight the layers' programs name, the wall time per decode step
  // of the steps that use it (a product, and its read when the weight is offloaded to disk).
  std::map<std::string, double> decode_weight_s;
  std::unique_ptr<Executor> executor;  // the measured executor: module times, events, counters
};

RunOutcome run_placement(const ExecConfig& cfg, const ModelWeights& weights, const Placement& placement,
                         Backend backend, const RunOptions& opt, const RunPlan& plan);

}  // namespace dmap::exec
