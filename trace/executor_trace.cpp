// Executors' records as GpuTraces (see executor_trace.h).
#include "trace/executor_trace.h"

#include <cmath>
#include <map>
#include <utility>

#ifndef DMAP_VERSION
#define DMAP_VERSION "unknown"
#endif

namespace dmap::trace {

GpuTrace emulated_trace(const std::vector<exec::TimelineRecord>& timeline) {
  using Kind = exec::TimelineRecord::Kind;
  GpuTrace t;
  t.provenance.source = "emulated";
  t.provenance.note = "the emulated device's model clock (exec/device/emulated.h), not measured times";
  std::map<std::pair<std::string, int>, uint64_t> external;  // (module, step) -> id
  uint32_t correlation = 0;
  for (const auto& r : timeline) {
    GpuActivity a;
    a.start_ns = static_cast<int64_t>(std::llround(r.start_s * 1e9));
    a.end_ns = std::max(a.start_ns, static_cast<int64_t>(std::llround(r.end_s * 1e9)));
    a.correlation = ++correlation;
    a.device = static_cast<uint32_t>(r.device);
    a.stream = static_cast<uint32_t>(r.stream);
    t.provenance.devices[a.device] = "emulated GPU " + std::to_string(r.device);
    if (r.kind == Kind::kKernel) {
      a.kind = ActivityKind::kKernel;
      a.name = r.op;
    } else {
      a.kind = ActivityKind::kMemcpy;
      a.bytes = static_cast<Bytes>(r.bytes);
      const char* host = r.pinned ? "pinned" : "pageable";
      switch (r.kind) {
        case Kind::kH2D:
          a.copy_kind = "HtoD";
          a.src_kind = host;
          a.dst_kind = "device";
          break;
        case Kind::kD2H:
          a.copy_kind = "DtoH";
          a.src_kind = "device";
          a.dst_kind = host;
          break;
        case Kind::kD2D:
          a.copy_kind = "DtoD";
          a.src_kind = "device";
          a.dst_kind = "device";
          break;
        case Kind::kPeer:
          a.copy_kind = "PtoP";
          a.src_kind = "device";
          a.dst_kind = "device";
          break;
        case Kind::kKernel: break;
      }
    }
    auto [it, fresh] = external.emplace(std::make_pair(r.module, r.step), external.size() + 1);
    if (fresh) t.externals[it->second] = ExternalRange{it->second, r.module, r.step};
    t.correlation_to_external[a.correlation] = it->second;
    t.activities.push_back(std::move(a));
  }
  return t;
}

GpuTrace host_trace(const std::vector<exec::ModuleEvent>& events, const std::vector<exec::ModuleTime>& modules,
                    const std::string& source) {
  GpuTrace t;
  t.provenance.source = source;
  t.provenance.dmap_version = DMAP_VERSION;
  for (const auto& e : events) {
    HostRange r;
    r.module = modules.at(static_cast<size_t>(e.module)).module;
    r.step = e.step;
    r.start_ns = static_cast<int64_t>(std::llround(e.start_s * 1e9));
    r.end_ns = r.start_ns + static_cast<int64_t>(std::llround(e.dur_s * 1e9));
    r.thread_id = 1;
    t.host_ranges.push_back(std::move(r));
  }
  return t;
}

}  // namespace dmap::trace
