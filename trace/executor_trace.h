// What dmap's own executors record, as GpuTraces (trace/gpu_trace.h), so that the raw record file,
// the per-module aggregates and the Chrome/Perfetto export serve them as they serve CUPTI traces:
// the emulated device's timeline (exec/device/emulated.h; times on its model clock) and the CPU
// executor's module events (host ranges).
//
// Data flow: EmulatedDevice::timeline() --emulated_trace()--> GpuTrace --chrome_trace()--> JSON
//   each copy -> a memcpy record (HtoD/DtoH/DtoD/PtoP; pinned, pageable or device ends), each
//   operator -> a kernel record named by the operator, on its device and stream; each record
//   correlated to the module (unit) and step it was issued in.
//
// Example:
//   GpuTrace t = emulated_trace(rt->timeline());
//   write_text_file("run.trace.json", chrome_trace(t).json());
#pragma once

#include <vector>

#include "exec/device/emulated.h"
#include "exec/executor.h"
#include "trace/gpu_trace.h"

namespace dmap::trace {

GpuTrace emulated_trace(const std::vector<exec::TimelineRecord>& timeline);

// The CPU executor's module events as a trace of host ranges (thread 1), on the same model as
// CUPTI traces so that one Chrome export and one aggregation serve both backends.
GpuTrace host_trace(const std::vector<exec::ModuleEvent>& events, const std::vector<exec::ModuleTime>& modules,
                    const std::string& source);

}  // namespace dmap::trace
