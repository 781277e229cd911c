// The GPU trace model: what the CUPTI tracer records (kernels, copies, memsets, runtime API calls,
// external correlation of each call to the module and phase that issued it, CPU-backend module
// ranges), dmap's own versioned raw record file, per-module aggregates, and the Chrome/Perfetto
// export. Plain C++: no CUDA or CUPTI header is needed to read, aggregate or export a trace.
//
// Data flow:
//   CuptiTracer::stop() (trace/cupti_tracer.h)  or  parse_gpu_trace(file text)
//     --> GpuTrace --> gpu_trace_json()      dmap's raw record file (exact round trip)
//                  --> module_aggregates()   per (module, phase) kernel/copy/host figures
//                  --> chrome_trace()        Trace (trace/trace.h) for ui.perfetto.dev
//
// Example:
//   GpuTrace t = parse_gpu_trace(read_text_file("run.gpu.json"), "run.gpu.json");  // InputError
//   for (const ModuleAggregate& a : module_aggregates(t)) use(a.module, a.phase, a.kernel_ns);
//   write_text_file("run.trace.json", chrome_trace(t).json());
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/units.h"
#include "trace/trace.h"

namespace dmap::trace {

// ---- records ---------------------------------------------------------------------------------

enum class ActivityKind { kKernel, kMemcpy, kMemset, kRuntime };

// "kernel", "memcpy", "memset", "runtime" (the "kind" field of the raw file).
const char* activity_kind_name(ActivityKind kind);
// Kernels, copies and memsets run on a GPU; runtime calls on the host.
inline bool is_gpu_work(ActivityKind k) { return k != ActivityKind::kRuntime; }

// One CUPTI activity record, reduced to what dmap uses. Times are nanoseconds on CUPTI's
// timestamp clock (the same clock as HostRange). Fields that do not apply to a kind stay at
// their defaults and are neither written nor read by the raw file.
struct GpuActivity {
  ActivityKind kind = ActivityKind::kKernel;
  // kernel: demangled name where the demangler knows it; runtime: the API name
  // ("cudaLaunchKernel", "cudaMemcpy", ...); memcpy and memset: empty.
  std::string name;
  int64_t start_ns = 0, end_ns = 0;  // end_ns >= start_ns
  // Shared by a runtime call and the kernel/copy/memset it launched; the key of the
  // correlation -> external id map (GpuTrace::correlation_to_external).
  uint32_t correlation = 0;
  // kernel, memcpy, memset: where the work ran.
  uint32_t device = 0, context = 0, stream = 0;
  // memcpy, memset: bytes moved or set.
  Bytes bytes = 0;
  // memcpy: "HtoD", "DtoH", "DtoD", "HtoH", "PtoP" (also "HtoA", "AtoH", "AtoA", "AtoD",
  // "DtoA", "unknown"). memcpy src_kind/dst_kind and memset dst_kind: the memory kind,
  // "pageable", "pinned", "device", "managed", "array", "device_static", "managed_static" or
  // "unknown".
  std::string copy_kind, src_kind, dst_kind;
  // runtime: the calling process and thread (CUPTI's thread id: the low 32 bits of
  // pthread_self(), the convention of PyTorch's Kineto).
  uint32_t process_id = 0, thread_id = 0;
  // kernel: launch shape and shared memory per block (static + dynamic), bytes.
  std::array<int32_t, 3> grid{}, block{};
  int64_t shared_bytes = 0;

  bool operator==(const GpuActivity&) const = default;
};

// One push of CuptiTracer::push_module: an external correlation id and what it stands for.
struct ExternalRange {
  uint64_t id = 0;
  std::string module;  // e.g. "model.layers.3.mlp"
  int step = -1;       // -1 = prefill, else the decode step index (0, 1, ...)

  bool operator==(const ExternalRange&) const = default;
};

// A module computed by the CPU backend (in-place semantics), timed on the host and converted to
// CUPTI's clock, so that it lines up with the GPU records.
struct HostRange {
  std::string module;
  int step = -1;  // -1 = prefill, else the decode step index
  int64_t start_ns = 0, end_ns = 0;
  uint32_t thread_id = 0;  // same convention as GpuActivity::thread_id

  bool operator==(const HostRange&) const = default;
};

// Where a trace came from. Every field is free text for people, except `devices`.
struct TraceProvenance {
  std::string source;           // "cupti" (recorded) or "synthetic" (hand-made fixture)
  std::string dmap_version;     // e.g. "0.1.0"
  std::string driver_version;   // e.g. "13.0" (cudaDriverGetVersion)
  std::string runtime_version;  // e.g. "13.0" (cudaRuntimeGetVersion)
  std::string cupti_version;    // CUPTI API version (cuptiGetVersion)
  std::string note;
  std::map<uint32_t, std::string> devices;  // device id -> name ("NVIDIA H200")

  bool operator==(const TraceProvenance&) const = default;
};

struct GpuTrace {
  std::vector<GpuActivity> activities;                   // in record order (not sorted)
  std::map<uint64_t, ExternalRange> externals;           // external id -> module and step
  std::map<uint32_t, uint64_t> correlation_to_external;  // from EXTERNAL_CORRELATION records
  std::vector<HostRange> host_ranges;
  uint64_t dropped_records = 0;  // CUPTI records lost for want of buffer space (0 = complete)
  TraceProvenance provenance;

  // The push that issued `a` (through its correlation id), or nullptr when it ran outside any.
  const ExternalRange* module_of(const GpuActivity& a) const;

  bool operator==(const GpuTrace&) const = default;
};

// "prefill" for step -1, "decode" for step >= 0.
const char* phase_name(int step);

// ---- dmap's raw record file --------------------------------------------------------------------
//
// One JSON document, one record per line (diffable):
//   {"format": "dmap-gpu-trace", "version": 1,
//    "provenance": {"source": "cupti", "dmap_version": "0.1.0", "driver_version": "13.0",
//                   "runtime_version": "13.0", "cupti_version": "28", "note": "",
//                   "devices": [{"id": 0, "name": "NVIDIA H200"}]},
//    "dropped_records": 0,
//    "modules": [{"id": 1, "module": "model.layers.0", "step": -1}, ...],
//    "correlations": [[correlation, external id], ...],
//    "host_ranges": [{"module": ..., "step": ..., "start_ns": ..., "end_ns": ..., "thread_id": ...}],
//    "activities": [
//      {"kind": "kernel", "name", "start_ns", "end_ns", "correlation", "device", "context",
//       "stream", "grid": [x, y, z], "block": [x, y, z], "shared_bytes"},
//      {"kind": "memcpy", "start_ns", "end_ns", "correlation", "device", "context", "stream",
//       "bytes", "copy_kind", "src_kind", "dst_kind"},
//      {"kind": "memset", "start_ns", "end_ns", "correlation", "device", "context", "stream",
//       "bytes", "dst_kind"},
//      {"kind": "runtime", "name", "start_ns", "end_ns", "correlation", "process_id", "thread_id"}]}
// Every listed field is required, no other is allowed; integers are exact (int64).

std::string gpu_trace_json(const GpuTrace& trace);

// Reads gpu_trace_json's output back exactly. Bad input throws InputError naming `file`, the line
// (of the record, or of the JSON syntax error) and what is wrong: malformed JSON, a missing,
// unknown or mistyped field, an unknown kind or copy/memory kind, end before start, a negative
// time, a duplicate id, a correlation to an external id that "modules" does not hold.
GpuTrace parse_gpu_trace(const std::string& text, const std::string& file);

// ---- per-module aggregates -----------------------------------------------------------------------

// Everything one module did in one phase. GPU work (kernels, copies, memsets, runtime calls) is
// attributed through its correlation id -> external id -> (module, step); host (CPU-backend)
// ranges carry their own module and step. Figures are TOTALS over every step of the phase; divide
// by `steps` (per_step) for the mean per decode step. Durations are sums of record durations, so
// work overlapping on two streams counts twice (gpu_span_ns does not).
struct ModuleAggregate {
  std::string module;  // "" = GPU work issued outside any pushed module
  std::string phase;   // "prefill", "decode", or "" with module ""
  int steps = 0;       // distinct steps with any record (prefill: 1)

  int64_t kernels = 0;
  int64_t kernel_ns = 0;  // sum of kernel durations
  int64_t copies = 0;
  int64_t copy_ns = 0;  // sum of copy durations
  Bytes bytes_htod = 0, bytes_dtoh = 0, bytes_dtod = 0;
  Bytes bytes_other = 0;     // HtoH, PtoP and array copies
  Bytes bytes_pageable = 0;  // of all copies, those from or to pageable host memory
  int64_t memsets = 0;
  Bytes memset_bytes = 0;
  int64_t memset_ns = 0;
  int64_t runtime_calls = 0;
  int64_t runtime_ns = 0;   // time spent inside runtime API calls on the host
  int64_t gpu_span_ns = 0;  // per push: last GPU end - first GPU start, summed over pushes
  int64_t host_ranges = 0;
  int64_t host_ns = 0;  // CPU-backend compute time

  double per_step(int64_t total) const { return steps > 0 ? static_cast<double>(total) / steps : 0.0; }
  bool operator==(const ModuleAggregate&) const = default;
};

// One row per (module, phase): prefill rows first, then decode, then the unattributed row (if
// any GPU work ran outside a push); within a phase in order of the module's first record.
std::vector<ModuleAggregate> module_aggregates(const GpuTrace& trace);

// ---- Chrome / Perfetto export ----------------------------------------------------------------------

// The trace as Chrome Trace Event Format JSON (open in ui.perfetto.dev or chrome://tracing):
//   process "host (pid N)": one track per host thread ("thread T") holding the runtime API calls
//     and the CPU-backend module ranges of that thread;
//   process "GPU d (name)" per device: a "modules" track (per push of a module: the span from its
//     first to its last GPU record on that device) and one track per stream ("stream 7") holding
//     kernels, copies ("HtoD 64.00 MiB pageable→device", args bytes and GB/s) and memsets;
//   a flow arrow from each runtime call to each GPU record with its correlation id;
//   top-level "otherData": {"dmap": {provenance, dropped_records, module_aggregates}}.
// Records that would overlap without nesting on one track go to an extra track of the same name
// with " (2)", " (3)", ... appended. Timestamps are microseconds after the earliest record.
Trace chrome_trace(const GpuTrace& trace);

// ---- build options -------------------------------------------------------------------------------

// True when dmap was built with DMAP_ENABLE_CUPTI (trace/cupti_tracer.h usable; callers may
// also test the DMAP_HAVE_CUPTI macro, which dmap_profile defines publicly in that case).
bool cupti_compiled();

}  // namespace dmap::trace
