// Chrome trace JSON (the "Trace Event Format" that chrome://tracing and ui.perfetto.dev open):
// complete events ("ph": "X") with microsecond timestamps on (process, thread) tracks, plus
// metadata events naming the tracks.
//
// Data flow: executor ModuleEvents / predicted op times --> TraceEvent list --> JSON file
//
// Example:
//   Trace t;
//   t.name_process(1, "measured"); t.name_thread(1, 1, "cpu");
//   t.add({"model.layers.0.mlp", "decode", 1, 1, 1200.0, 85.5, {{"step", "3"}}});
//   write_text_file("run.trace.json", t.json());
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace dmap::profile {

struct TraceEvent {
  std::string name;
  std::string category;
  int pid = 1, tid = 1;
  double ts_us = 0, dur_us = 0;
  std::vector<std::pair<std::string, std::string>> args;  // shown in the UI's details pane
};

class Trace {
 public:
  void name_process(int pid, const std::string& name) { processes_[pid] = name; }
  void name_thread(int pid, int tid, const std::string& name) { threads_[{pid, tid}] = name; }
  void add(TraceEvent e) { events_.push_back(std::move(e)); }
  const std::vector<TraceEvent>& events() const { return events_; }
  std::string json() const;  // {"traceEvents": [...], "displayTimeUnit": "ms"}

 private:
  std::map<int, std::string> processes_;
  std::map<std::pair<int, int>, std::string> threads_;
  std::vector<TraceEvent> events_;
};

// Writes `text` to `path` through a temporary file renamed into place (nothing half-written).
void write_text_file(const std::string& path, const std::string& text);

}  // namespace dmap::profile
