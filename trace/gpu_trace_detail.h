// Internal to the GPU trace files (profile/gpu_trace_*.cpp): what the raw file and the Chrome
// export both write.
#pragma once

#include "core/json.h"
#include "trace/gpu_trace.h"

namespace dmap::trace::detail {

// The provenance object of the raw file, also embedded in the Chrome export's otherData.
void write_provenance(JsonWriter& w, const TraceProvenance& p);

}  // namespace dmap::trace::detail
