// The Chrome/Perfetto export of a GPU trace (see trace/gpu_trace.h).
#include "trace/gpu_trace.h"
#include "trace/gpu_trace_detail.h"

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

using detail::write_provenance;

// ==== Chrome / Perfetto export ================================================================

namespace {

constexpr int kHostPid = 1;
constexpr int kGpuPidBase = 100;

// Lanes such that the slices of one lane are disjoint or properly nested (the only shapes the
// viewers draw on one track): slices taken by start, longer first, each into the first lane
// whose innermost open slice has ended or contains it.
std::vector<int> assign_lanes(const std::vector<std::pair<int64_t, int64_t>>& iv) {
  std::vector<size_t> order(iv.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (iv[a].first != iv[b].first) return iv[a].first < iv[b].first;
    if (iv[a].second != iv[b].second) return iv[a].second > iv[b].second;
    return a < b;
  });
  std::vector<std::vector<int64_t>> open;  // per lane: ends of the open (enclosing) slices
  std::vector<int> lane(iv.size(), 0);
  for (size_t i : order) {
    const auto [s, e] = iv[i];
    size_t l = 0;
    for (; l < open.size(); ++l) {
      auto& st = open[l];
      while (!st.empty() && st.back() <= s) st.pop_back();
      if (st.empty() || e <= st.back()) break;
    }
    if (l == open.size()) open.emplace_back();
    open[l].push_back(e);
    lane[i] = static_cast<int>(l);
  }
  return lane;
}

struct Slice {
  int64_t start = 0, end = 0;
  TraceEvent ev;      // pid/tid filled once lanes are known
  int activity = -1;  // index into GpuTrace::activities, or -1
};

// A family of tracks drawn under one name ("stream 7", "stream 7 (2)", ...).
struct Group {
  int pid = 0;
  std::string name;
  std::vector<Slice> slices;
};

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string dims_text(const std::array<int32_t, 3>& d) {
  return std::string("(") + std::to_string(d[0]) + ", " + std::to_string(d[1]) + ", " + std::to_string(d[2]) + ")";
}

void add_module_args(TraceEvent& ev, const ExternalRange* e) {
  if (e == nullptr) return;
  ev.args.emplace_back("module", e->module);
  ev.args.emplace_back("phase", phase_name(e->step));
  ev.args.emplace_back("step", std::to_string(e->step));
}

void write_aggregate(JsonWriter& w, const ModuleAggregate& a) {
  w.begin_object();
  w.key("module");
  w.value(a.module);
  w.key("phase");
  w.value(a.phase);
  w.key("steps");
  w.value(a.steps);
  w.key("kernels");
  w.value(a.kernels);
  w.key("kernel_ns");
  w.value(a.kernel_ns);
  w.key("copies");
  w.value(a.copies);
  w.key("copy_ns");
  w.value(a.copy_ns);
  w.key("bytes_htod");
  w.value(a.bytes_htod);
  w.key("bytes_dtoh");
  w.value(a.bytes_dtoh);
  w.key("bytes_dtod");
  w.value(a.bytes_dtod);
  w.key("bytes_other");
  w.value(a.bytes_other);
  w.key("bytes_pageable");
  w.value(a.bytes_pageable);
  w.key("memsets");
  w.value(a.memsets);
  w.key("memset_bytes");
  w.value(a.memset_bytes);
  w.key("memset_ns");
  w.value(a.memset_ns);
  w.key("runtime_calls");
  w.value(a.runtime_calls);
  w.key("runtime_ns");
  w.value(a.runtime_ns);
  w.key("gpu_span_ns");
  w.value(a.gpu_span_ns);
  w.key("host_ranges");
  w.value(a.host_ranges);
  w.key("host_ns");
  w.value(a.host_ns);
  w.end_object();
}

}  // namespace

Trace chrome_trace(const GpuTrace& t) {
  // 1. Time origin: the earliest record; every timestamp is microseconds after it.
  int64_t origin = std::numeric_limits<int64_t>::max();
  for (const GpuActivity& a : t.activities) origin = std::min(origin, a.start_ns);
  for (const HostRange& h : t.host_ranges) origin = std::min(origin, h.start_ns);
  if (origin == std::numeric_limits<int64_t>::max()) origin = 0;
  auto us = [&](int64_t ns) { return static_cast<double>(ns - origin) / 1000.0; };

  // 2. Slices per track family: host threads, and per GPU its modules and its streams.
  std::vector<Group> groups;
  std::map<uint32_t, size_t> host_group;                         // thread id -> group
  std::map<uint32_t, size_t> module_group;                       // device -> group
  std::map<std::pair<uint32_t, uint32_t>, size_t> stream_group;  // (device, stream) -> group
  auto group = [&](auto& index, const auto& key, int pid, const std::string& name) -> Group& {
    auto [it, fresh] = index.try_emplace(key, groups.size());
    if (fresh) groups.push_back({pid, name, {}});
    return groups[it->second];
  };
  auto gpu_pid = [](uint32_t device) { return kGpuPidBase + static_cast<int>(device); };
  auto slice = [&](int64_t start, int64_t end, std::string name, const char* cat) {
    Slice s;
    s.start = start;
    s.end = end;
    s.ev.name = std::move(name);
    s.ev.category = cat;
    s.ev.ts_us = us(start);
    s.ev.dur_us = static_cast<double>(end - start) / 1000.0;
    return s;
  };

  uint32_t host_pid = 0;
  std::set<uint32_t> devices;
  for (size_t i = 0; i < t.activities.size(); ++i) {
    const GpuActivity& a = t.activities[i];
    const ExternalRange* e = t.module_of(a);
    Slice s;
    if (a.kind == ActivityKind::kRuntime) {
      if (host_pid == 0) host_pid = a.process_id;
      s = slice(a.start_ns, a.end_ns, a.name, "cuda_runtime");
      s.ev.args.emplace_back("correlation", std::to_string(a.correlation));
      add_module_args(s.ev, e);
      s.activity = static_cast<int>(i);
      group(host_group, a.thread_id, kHostPid, std::string("thread ") + std::to_string(a.thread_id))
          .slices.push_back(std::move(s));
      continue;
    }
    devices.insert(a.device);
    const double dur_ns = static_cast<double>(a.end_ns - a.start_ns);
    if (a.kind == ActivityKind::kKernel) {
      s = slice(a.start_ns, a.end_ns, a.name, "kernel");
      s.ev.args.emplace_back("grid", dims_text(a.grid));
      s.ev.args.emplace_back("block", dims_text(a.block));
      s.ev.args.emplace_back("shared_bytes", std::to_string(a.shared_bytes));
    } else if (a.kind == ActivityKind::kMemcpy) {
      s = slice(a.start_ns, a.end_ns,
                a.copy_kind + " " + format_bytes_human(static_cast<double>(a.bytes)) + " " + a.src_kind + "\u2192" +
                    a.dst_kind,
                "memcpy");
      s.ev.args.emplace_back("bytes", std::to_string(a.bytes));
      s.ev.args.emplace_back("GB/s", dur_ns > 0 ? fmt("%.2f", static_cast<double>(a.bytes) / dur_ns) : "inf");
      s.ev.args.emplace_back("copy_kind", a.copy_kind);
      s.ev.args.emplace_back("src_kind", a.src_kind);
      s.ev.args.emplace_back("dst_kind", a.dst_kind);
    } else {
      s = slice(a.start_ns, a.end_ns, std::string("memset ") + format_bytes_human(static_cast<double>(a.bytes)),
                "memset");
      s.ev.args.emplace_back("bytes", std::to_string(a.bytes));
      s.ev.args.emplace_back("dst_kind", a.dst_kind);
    }
    s.ev.args.emplace_back("correlation", std::to_string(a.correlation));
    s.ev.args.emplace_back("device", std::to_string(a.device));
    s.ev.args.emplace_back("stream", std::to_string(a.stream));
    add_module_args(s.ev, e);
    s.activity = static_cast<int>(i);
    group(stream_group, std::make_pair(a.device, a.stream), gpu_pid(a.device),
          std::string("stream ") + std::to_string(a.stream))
        .slices.push_back(std::move(s));
  }
  // CPU-backend module ranges on their host thread.
  for (const HostRange& h : t.host_ranges) {
    Slice s = slice(h.start_ns, h.end_ns, h.module, "cpu_module");
    s.ev.args.emplace_back("phase", phase_name(h.step));
    s.ev.args.emplace_back("step", std::to_string(h.step));
    s.ev.args.emplace_back("backend", "cpu");
    group(host_group, h.thread_id, kHostPid, std::string("thread ") + std::to_string(h.thread_id))
        .slices.push_back(std::move(s));
  }
  // Module ranges: per push and device, first to last GPU record.
  {
    std::map<std::pair<uint64_t, uint32_t>, std::tuple<int64_t, int64_t, int64_t, int64_t>>
        spans;  // start, end, kernels, copies
    for (const GpuActivity& a : t.activities) {
      const ExternalRange* e = t.module_of(a);
      if (!e || !is_gpu_work(a.kind)) continue;
      auto [it, fresh] = spans.try_emplace({e->id, a.device}, a.start_ns, a.end_ns, 0, 0);
      auto& [s, en, k, c] = it->second;
      if (!fresh) {
        s = std::min(s, a.start_ns);
        en = std::max(en, a.end_ns);
      }
      if (a.kind == ActivityKind::kKernel) ++k;
      if (a.kind == ActivityKind::kMemcpy) ++c;
    }
    for (const auto& [key, v] : spans) {
      const ExternalRange& e = t.externals.at(key.first);
      const auto& [s0, s1, k, c] = v;
      Slice s = slice(s0, s1, e.module, "module");
      s.ev.args.emplace_back("phase", phase_name(e.step));
      s.ev.args.emplace_back("step", std::to_string(e.step));
      s.ev.args.emplace_back("external_id", std::to_string(e.id));
      s.ev.args.emplace_back("kernels", std::to_string(k));
      s.ev.args.emplace_back("copies", std::to_string(c));
      group(module_group, key.second, gpu_pid(key.second), "modules").slices.push_back(std::move(s));
    }
  }

  // 3. Name the processes; lanes -> thread ids, in display order (modules above the streams).
  Trace out;
  const bool any_host = !host_group.empty();
  if (any_host) {
    out.name_process(kHostPid,
                     host_pid ? std::string("host (pid ") + std::to_string(host_pid) + ")" : std::string("host"));
    out.sort_process(kHostPid, 0);
  }
  for (uint32_t d : devices) {
    const auto name = t.provenance.devices.find(d);
    out.name_process(gpu_pid(d),
                     std::string("GPU ") + std::to_string(d) +
                         (name == t.provenance.devices.end() ? std::string() : std::string(" (") + name->second + ")"));
    out.sort_process(gpu_pid(d), 1 + static_cast<int>(d));
  }
  std::vector<size_t> group_order;
  for (const auto& [k, g] : host_group) group_order.push_back(g);
  for (const auto& [k, g] : module_group) group_order.push_back(g);
  for (const auto& [k, g] : stream_group) group_order.push_back(g);
  std::stable_sort(group_order.begin(), group_order.end(),
                   [&](size_t a, size_t b) { return groups[a].pid < groups[b].pid; });

  std::map<int, int> next_tid;
  std::vector<std::pair<int, int>> placed(t.activities.size(), {0, 0});  // activity -> (pid, tid)
  std::vector<Slice> all;
  for (size_t gi : group_order) {
    Group& g = groups[gi];
    std::vector<std::pair<int64_t, int64_t>> iv;
    for (const Slice& s : g.slices) iv.emplace_back(s.start, s.end);
    const std::vector<int> lane = assign_lanes(iv);
    const int lanes = g.slices.empty() ? 0 : *std::max_element(lane.begin(), lane.end()) + 1;
    int& next = next_tid[g.pid];
    const int first_tid = next + 1;
    for (int l = 0; l < lanes; ++l) {
      const int tid = first_tid + l;
      out.name_thread(g.pid, tid, l == 0 ? g.name : g.name + " (" + std::to_string(l + 1) + ")");
      out.sort_thread(g.pid, tid, tid);
    }
    next += lanes;
    for (size_t i = 0; i < g.slices.size(); ++i) {
      Slice& s = g.slices[i];
      s.ev.pid = g.pid;
      s.ev.tid = first_tid + lane[i];
      if (s.activity >= 0) placed[static_cast<size_t>(s.activity)] = {s.ev.pid, s.ev.tid};
      all.push_back(std::move(s));
    }
  }
  // Enclosing slices first when two start together, so that the viewers nest them.
  std::stable_sort(all.begin(), all.end(), [](const Slice& a, const Slice& b) {
    return a.start != b.start ? a.start < b.start : a.end > b.end;
  });
  for (Slice& s : all) out.add(std::move(s.ev));

  // 4. Flow arrows: runtime call -> GPU record with the same correlation id (mid-points, so that
  // each end falls strictly inside its slice when it has a duration).
  std::map<uint32_t, std::vector<size_t>> launches;
  for (size_t i = 0; i < t.activities.size(); ++i) {
    const GpuActivity& a = t.activities[i];
    if (a.kind == ActivityKind::kRuntime && a.correlation != 0) launches[a.correlation].push_back(i);
  }
  uint64_t flow_id = 0;
  auto mid = [&](const GpuActivity& a) { return us(a.start_ns) + static_cast<double>(a.end_ns - a.start_ns) / 2000.0; };
  for (size_t i = 0; i < t.activities.size(); ++i) {
    const GpuActivity& a = t.activities[i];
    if (!is_gpu_work(a.kind)) continue;
    const auto l = launches.find(a.correlation);
    if (l == launches.end()) continue;
    for (size_t r : l->second) {
      TraceFlow f;
      f.name = t.activities[r].name;
      f.category = "launch";
      f.id = ++flow_id;
      std::tie(f.from_pid, f.from_tid) = placed[r];
      f.from_ts_us = mid(t.activities[r]);
      std::tie(f.to_pid, f.to_tid) = placed[i];
      f.to_ts_us = mid(a);
      out.add_flow(std::move(f));
    }
  }

  // 5. Provenance and per-module aggregates where the viewers keep metadata ("otherData").
  JsonWriter w;
  w.begin_object();
  w.key("dmap");
  w.begin_object();
  w.key("format");
  w.value("dmap-gpu-trace chrome export");
  w.key("provenance");
  write_provenance(w, t.provenance);
  w.key("dropped_records");
  w.value(static_cast<int64_t>(t.dropped_records));
  w.key("clock_origin_ns");
  w.value(origin);
  w.key("module_aggregates");
  w.begin_array();
  for (const ModuleAggregate& a : module_aggregates(t)) write_aggregate(w, a);
  w.end_array();
  w.end_object();
  w.end_object();
  out.set_other_data(w.str());
  return out;
}

}  // namespace dmap::trace
