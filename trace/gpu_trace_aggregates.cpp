// Per-module aggregates of a GPU trace (see trace/gpu_trace.h).
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

// ==== per-module aggregates ===================================================================

namespace {

// Rows sort by phase (prefill, decode, unattributed), then by first record, then by name.
struct RowKey {
  int phase_order = 0;
  std::string module;
  bool operator<(const RowKey& o) const { return std::tie(phase_order, module) < std::tie(o.phase_order, o.module); }
};

struct Row {
  ModuleAggregate agg;
  int64_t first_ns = std::numeric_limits<int64_t>::max();
  std::set<int> steps;
};

RowKey key_of(const std::string& module, int step) { return {step < 0 ? 0 : 1, module}; }

Row& row_for(std::map<RowKey, Row>& rows, const RowKey& k) {
  Row& r = rows[k];
  if (r.agg.phase.empty() && k.phase_order < 2) {
    r.agg.module = k.module;
    r.agg.phase = k.phase_order == 0 ? "prefill" : "decode";
  }
  return r;
}

}  // namespace

std::vector<ModuleAggregate> module_aggregates(const GpuTrace& t) {
  std::map<RowKey, Row> rows;
  // Per push (external id): the first start and last end of its GPU work.
  std::map<uint64_t, std::pair<int64_t, int64_t>> spans;

  // 1. GPU records and runtime calls, through correlation id -> external id -> (module, step).
  for (const GpuActivity& a : t.activities) {
    const ExternalRange* e = t.module_of(a);
    Row& r = row_for(rows, e ? key_of(e->module, e->step) : RowKey{2, ""});
    if (e) r.steps.insert(e->step);
    r.first_ns = std::min(r.first_ns, a.start_ns);
    const int64_t dur = a.end_ns - a.start_ns;
    ModuleAggregate& g = r.agg;
    switch (a.kind) {
      case ActivityKind::kKernel:
        ++g.kernels;
        g.kernel_ns += dur;
        break;
      case ActivityKind::kMemcpy:
        ++g.copies;
        g.copy_ns += dur;
        if (a.copy_kind == "HtoD") {
          g.bytes_htod += a.bytes;
        } else if (a.copy_kind == "DtoH") {
          g.bytes_dtoh += a.bytes;
        } else if (a.copy_kind == "DtoD") {
          g.bytes_dtod += a.bytes;
        } else {
          g.bytes_other += a.bytes;
        }
        if (a.src_kind == "pageable" || a.dst_kind == "pageable") g.bytes_pageable += a.bytes;
        break;
      case ActivityKind::kMemset:
        ++g.memsets;
        g.memset_bytes += a.bytes;
        g.memset_ns += dur;
        break;
      case ActivityKind::kRuntime:
        ++g.runtime_calls;
        g.runtime_ns += dur;
        break;
    }
    if (e && is_gpu_work(a.kind)) {
      auto [it, fresh] = spans.try_emplace(e->id, a.start_ns, a.end_ns);
      if (!fresh) {
        it->second.first = std::min(it->second.first, a.start_ns);
        it->second.second = std::max(it->second.second, a.end_ns);
      }
    }
  }
  // 2. GPU span of each push, added to its module's row.
  for (const auto& [id, span] : spans) {
    const ExternalRange& e = t.externals.at(id);
    row_for(rows, key_of(e.module, e.step)).agg.gpu_span_ns += span.second - span.first;
  }
  // 3. CPU-backend ranges carry their own module and step.
  for (const HostRange& h : t.host_ranges) {
    Row& r = row_for(rows, key_of(h.module, h.step));
    r.steps.insert(h.step);
    r.first_ns = std::min(r.first_ns, h.start_ns);
    ++r.agg.host_ranges;
    r.agg.host_ns += h.end_ns - h.start_ns;
  }

  std::vector<std::pair<RowKey, Row*>> order;
  for (auto& [k, r] : rows) {
    r.agg.steps = static_cast<int>(r.steps.size());
    order.emplace_back(k, &r);
  }
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return std::tie(a.first.phase_order, a.second->first_ns, a.first.module) <
           std::tie(b.first.phase_order, b.second->first_ns, b.first.module);
  });
  std::vector<ModuleAggregate> out;
  out.reserve(order.size());
  for (const auto& [k, r] : order) out.push_back(r->agg);
  return out;
}

}  // namespace dmap::trace
