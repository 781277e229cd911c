#include "profile/trace.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "core/error.h"
#include "core/json.h"

namespace dmap::profile {

std::string Trace::json() const {
  JsonWriter w;
  w.begin_object();
  w.key("traceEvents");
  w.begin_array();
  auto meta = [&](const char* what, int pid, int tid, const std::string& name) {
    w.begin_object();
    w.key("name"); w.value(what);
    w.key("ph"); w.value("M");
    w.key("pid"); w.value(pid);
    w.key("tid"); w.value(tid);
    w.key("args"); w.begin_object(); w.key("name"); w.value(name); w.end_object();
    w.end_object();
  };
  for (const auto& [pid, name] : processes_) meta("process_name", pid, 0, name);
  for (const auto& [key, name] : threads_) meta("thread_name", key.first, key.second, name);
  for (const auto& e : events_) {
    w.begin_object();
    w.key("name"); w.value(e.name);
    w.key("cat"); w.value(e.category);
    w.key("ph"); w.value("X");
    w.key("pid"); w.value(e.pid);
    w.key("tid"); w.value(e.tid);
    w.key("ts"); w.value(e.ts_us);
    w.key("dur"); w.value(e.dur_us);
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
  w.end_array();
  w.key("displayTimeUnit"); w.value("ms");
  w.end_object();
  return w.str();
}

void write_text_file(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  const std::string tmp = path + ".tmp" + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw RuntimeFailure("cannot write " + tmp);
  }
  fs::rename(tmp, p);
}

}  // namespace dmap::profile
