// The GPU trace model's records (see trace/gpu_trace.h): kind and phase names, the module a
// record was issued in. The raw file, the aggregates and the Chrome export have their own files.
#include "trace/gpu_trace.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <set>
#include <string_view>
#include <tuple>
#include <utility>

#include "core/error.h"
#include "core/json.h"
#include "core/json_parse.h"

#ifndef DMAP_VERSION
#define DMAP_VERSION "unknown"
#endif

namespace dmap::trace {

const char* activity_kind_name(ActivityKind kind) {
  switch (kind) {
    case ActivityKind::kKernel: return "kernel";
    case ActivityKind::kMemcpy: return "memcpy";
    case ActivityKind::kMemset: return "memset";
    case ActivityKind::kRuntime: return "runtime";
  }
  return "?";
}

const char* phase_name(int step) { return step < 0 ? "prefill" : "decode"; }

const ExternalRange* GpuTrace::module_of(const GpuActivity& a) const {
  const auto c = correlation_to_external.find(a.correlation);
  if (c == correlation_to_external.end()) return nullptr;
  const auto e = externals.find(c->second);
  return e == externals.end() ? nullptr : &e->second;
}

bool cupti_compiled() {
#ifdef DMAP_HAVE_CUPTI
  return true;
#else
  return false;
#endif
}

}  // namespace dmap::trace
