// Chrome/Perfetto trace events (see trace.h): the event list and its JSON.
#include "trace/trace.h"

#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/json.h"
#include "core/output.h"

namespace dmap::trace {

std::string Trace::json() const {
  JsonWriter w;
  w.begin_object();
  w.key("traceEvents");
  w.begin_array();
  auto meta_begin = [&](const char* what, int pid, int tid) {
    w.begin_object();
    w.key("name");
    w.value(what);
    w.key("ph");
    w.value("M");
    w.key("pid");
    w.value(pid);
    w.key("tid");
    w.value(tid);
    w.key("args");
    w.begin_object();
  };
  auto meta_end = [&] {
    w.end_object();
    w.end_object();
  };
  auto meta = [&](const char* what, int pid, int tid, const std::string& name) {
    meta_begin(what, pid, tid);
    w.key("name");
    w.value(name);
    meta_end();
  };
  auto sort_meta = [&](const char* what, int pid, int tid, int index) {
    meta_begin(what, pid, tid);
    w.key("sort_index");
    w.value(index);
    meta_end();
  };
  for (const auto& [pid, name] : processes_) meta("process_name", pid, 0, name);
  for (const auto& [key, name] : threads_) meta("thread_name", key.first, key.second, name);
  for (const auto& [pid, index] : process_order_) sort_meta("process_sort_index", pid, 0, index);
  for (const auto& [key, index] : thread_order_) sort_meta("thread_sort_index", key.first, key.second, index);
  for (const auto& e : events_) {
    w.begin_object();
    w.key("name");
    w.value(e.name);
    w.key("cat");
    w.value(e.category);
    w.key("ph");
    w.value("X");
    w.key("pid");
    w.value(e.pid);
    w.key("tid");
    w.value(e.tid);
    w.key("ts");
    w.value(e.ts_us);
    w.key("dur");
    w.value(e.dur_us);
    if (!e.args.empty()) {
      w.key("args");
      w.begin_object();
      for (const auto& [k, v] : e.args) {
        w.key(k);
        w.value(v);
      }
      w.end_object();
    }
    w.end_object();
  }
  auto flow_end = [&](const TraceFlow& f, bool start) {
    w.begin_object();
    w.key("name");
    w.value(f.name);
    w.key("cat");
    w.value(f.category);
    w.key("ph");
    w.value(start ? "s" : "f");
    w.key("id");
    w.value(static_cast<int64_t>(f.id));
    w.key("pid");
    w.value(start ? f.from_pid : f.to_pid);
    w.key("tid");
    w.value(start ? f.from_tid : f.to_tid);
    w.key("ts");
    w.value(start ? f.from_ts_us : f.to_ts_us);
    if (!start) {
      w.key("bp");
      w.value("e");
    }
    w.end_object();
  };
  for (const auto& f : flows_) {
    flow_end(f, true);
    flow_end(f, false);
  }
  w.end_array();
  w.key("displayTimeUnit");
  w.value("ms");
  if (!other_data_.empty()) {
    w.key("otherData");
    w.raw(other_data_);
  }
  w.end_object();
  return w.str();
}

void write_text_file(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  write_file_atomic(path, text);
}

}  // namespace dmap::trace
