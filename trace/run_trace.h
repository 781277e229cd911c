// The trace of one `dmap run` (--trace FILE), whatever ran it:
//   cuda      CUPTI (kernels and copies on their streams, launches linked to kernels, CPU-backend
//             modules as host ranges), started after the scratch prefills so they stay out;
//   emulated  the emulator's timeline (times on its model clock);
//   cpu       the executor's module timers.
// Writes FILE (Chrome/Perfetto JSON) and, for the GPU backends, FILE's stem + ".gpu.json" (the
// raw records, trace/gpu_trace.h).
//
// Data flow: RunTracer::attach(plan) --exec::run_placement--> executor --write()--> files
//
// Example:
//   RunTracer tracer(path, backend);
//   tracer.attach(plan);
//   RunOutcome r = run_placement(cfg, weights, placement, backend, opt, plan);
//   std::vector<std::string> written = tracer.write(*r.executor);
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "exec/backend.h"
#include "exec/executor.h"
#include "exec/run.h"

namespace dmap::trace {

class RunTracer {
 public:
  // RuntimeFailure for a CUDA run in a build without CUPTI.
  RunTracer(std::string path, exec::Backend backend);
  ~RunTracer();
  RunTracer(const RunTracer&) = delete;
  RunTracer& operator=(const RunTracer&) = delete;

  // Hooks the tracer into the run (CUDA: the module observer and the start before the measured run).
  void attach(exec::RunPlan& plan);
  // Writes the trace of the measured run of `model` (the executor run_placement returned); returns
  // the paths written.
  std::vector<std::string> write(const exec::Executor& model);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dmap::trace
