// The emulated device's timeline (exec/device/emulated.h) as a GpuTrace (profile/gpu_trace.h), so
// that the raw record file, the per-module aggregates and the Chrome/Perfetto export serve runs on
// the emulated device as they serve CUPTI traces. Times are the emulator's model clock.
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
#include "profile/gpu_trace.h"

namespace dmap::profile {

GpuTrace emulated_trace(const std::vector<exec::TimelineRecord>& timeline);

}  // namespace dmap::profile
