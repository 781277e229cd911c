// CUPTI Activity API tracer: records every kernel, copy, memset and runtime API call of the
// process between start() and stop(), ties each call to the module and phase that issued it
// (external correlation ids pushed per module), takes CPU-backend module ranges on the same
// clock, and returns it all as a GpuTrace (trace/gpu_trace.h). Built only with
// DMAP_ENABLE_CUPTI (then dmap_profile defines DMAP_HAVE_CUPTI publicly); this header needs no
// CUDA or CUPTI header.
//
// Example (what the executor does per forward):
//   CuptiTracer tracer;                 // at most one alive-and-started tracer per process
//   tracer.start();                     // RuntimeFailure if CUPTI refuses (message says why)
//   for (module in plan) {
//     if (module runs on a GPU) {
//       tracer.push_module("model.layers.3", step);   // step -1 = prefill, else decode step
//       ... launch kernels, copy weights ...
//       tracer.pop_module();
//     } else {                          // CPU backend (in-place semantics)
//       auto t0 = std::chrono::steady_clock::now(); ... compute ...
//       tracer.add_host_range("model.layers.3", step, t0, std::chrono::steady_clock::now());
//     }
//   }
//   GpuTrace trace = tracer.stop();     // synchronizes the current device, flushes, parses
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "exec/placement.h"
#include "trace/gpu_trace.h"

namespace dmap::trace {

struct CuptiTracerOptions {
  // Size of each activity buffer handed to CUPTI, bytes. Default 8 MiB (about 50 000 kernel
  // records). CUPTI asks for more buffers as they fill; records are dropped (and counted in
  // GpuTrace::dropped_records) only when the buffer callbacks cannot keep up.
  size_t buffer_bytes = size_t{8} << 20;
  // Free text copied into GpuTrace::provenance.note.
  std::string note;
};

class CuptiTracer {
 public:
  explicit CuptiTracer(CuptiTracerOptions options = {});
  // Stops tracing if still running (discarding the records) without throwing.
  ~CuptiTracer();
  CuptiTracer(const CuptiTracer&) = delete;
  CuptiTracer& operator=(const CuptiTracer&) = delete;

  // Registers the buffer callbacks (once per process) and enables the CONCURRENT_KERNEL,
  // MEMCPY, MEMSET, RUNTIME and EXTERNAL_CORRELATION activity kinds. Throws RuntimeFailure when
  // another tracer is running (CUPTI is process-global), when this one already runs, or when a
  // CUPTI call fails (the message holds cuptiGetResultString's text).
  void start();

  // Everything the calling thread issues until the matching pop_module() is attributed to
  // (module, step): a fresh external correlation id (CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0) is
  // pushed. Pushes nest; the innermost owns the work. step: -1 = prefill, else decode step index.
  // Requires start(); RuntimeFailure otherwise.
  void push_module(const std::string& module, int step);
  // Pops the calling thread's innermost push (RuntimeFailure if there is none).
  void pop_module();

  // Records a module computed by the CPU backend on the calling thread between two
  // steady_clock readings; converted to CUPTI's clock at stop() (linear fit of clock pairs read
  // at start() and stop()). Thread-safe. Requires start(); end >= start.
  void add_host_range(const std::string& module, int step, std::chrono::steady_clock::time_point start,
                      std::chrono::steady_clock::time_point end);

  // Synchronizes the current CUDA device (work queued on other devices must be synchronized by
  // the caller first), disables the activity kinds, forces a flush of every buffer, and returns
  // the records. A nonzero dropped-record count is reported in the trace and warned about on
  // stderr. The tracer can be started again afterwards.
  GpuTrace stop();

  bool running() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// An executor's module hooks (exec::ModuleObserver, given to DeviceModel::set_observer) as the
// tracer's pushes, pops and host ranges: what `dmap run --trace` and the GPU profiler attach.
class CuptiModuleObserver : public exec::ModuleObserver {
 public:
  explicit CuptiModuleObserver(CuptiTracer& t) : t_(t) {}
  void begin(const std::string& module, int step) override { t_.push_module(module, step); }
  void end() override { t_.pop_module(); }
  void host_range(const std::string& module, int step, std::chrono::steady_clock::time_point a,
                  std::chrono::steady_clock::time_point b) override {
    t_.add_host_range(module, step, a, b);
  }

 private:
  CuptiTracer& t_;
};

}  // namespace dmap::trace
