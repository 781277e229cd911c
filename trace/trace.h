// Chrome trace JSON (the "Trace Event Format" that chrome://tracing and ui.perfetto.dev open):
// complete events ("ph": "X") with microsecond timestamps on (process, thread) tracks, metadata
// events naming and ordering the tracks, flow arrows between slices ("ph": "s" / "f" with
// "bp": "e"), and an optional top-level "otherData" object (ignored by the viewers' timelines).
//
// Data flow: executor ModuleEvents / predicted op times --> TraceEvent list --> JSON file
//
// Example:
//   Trace t;
//   t.name_process(1, "measured"); t.name_thread(1, 1, "cpu");
//   t.add({"model.layers.0.mlp", "decode", 1, 1, 1200.0, 85.5, {{"step", "3"}}});
//   write_text_file("run.trace.json", t.json());
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace dmap::trace {

struct TraceEvent {
  std::string name;
  std::string category;
  int pid = 1, tid = 1;
  double ts_us = 0, dur_us = 0;
  std::vector<std::pair<std::string, std::string>> args;  // shown in the UI's details pane
};

// An arrow from the slice enclosing (from_pid, from_tid, from_ts_us) to the slice enclosing
// (to_pid, to_tid, to_ts_us), e.g. from a kernel launch on a host thread to the kernel on its
// stream. Written as a "s" event and a "f" event with "bp": "e" (bind to the enclosing slice, as
// PyTorch's profiler does); `id` must be unique among the trace's flows.
struct TraceFlow {
  std::string name;
  std::string category;
  uint64_t id = 0;
  int from_pid = 1, from_tid = 1;
  double from_ts_us = 0;
  int to_pid = 1, to_tid = 1;
  double to_ts_us = 0;
};

class Trace {
 public:
  void name_process(int pid, const std::string& name) { processes_[pid] = name; }
  void name_thread(int pid, int tid, const std::string& name) { threads_[{pid, tid}] = name; }
  // Display order of processes and of the threads inside one (lower first); unset = by id.
  void sort_process(int pid, int index) { process_order_[pid] = index; }
  void sort_thread(int pid, int tid, int index) { thread_order_[{pid, tid}] = index; }
  void add(TraceEvent e) { events_.push_back(std::move(e)); }
  void add_flow(TraceFlow f) { flows_.push_back(std::move(f)); }
  // Top-level "otherData": `json_object` must be one JSON object (written as is).
  void set_other_data(std::string json_object) { other_data_ = std::move(json_object); }
  const std::vector<TraceEvent>& events() const { return events_; }
  const std::vector<TraceFlow>& flows() const { return flows_; }
  // {"traceEvents": [names, sort orders, events, flows], "displayTimeUnit": "ms"[, "otherData": {...}]}
  // ("traceEvents" comes first: Perfetto stops reading at a top-level key it does not know).
  std::string json() const;

 private:
  std::map<int, std::string> processes_;
  std::map<std::pair<int, int>, std::string> threads_;
  std::map<int, int> process_order_;
  std::map<std::pair<int, int>, int> thread_order_;
  std::vector<TraceEvent> events_;
  std::vector<TraceFlow> flows_;
  std::string other_data_;
};

// Writes `text` to `path` through a temporary file renamed into place (nothing half-written).
void write_text_file(const std::string& path, const std::string& text);

}  // namespace dmap::trace
