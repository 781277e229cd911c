// dmap's raw GPU trace file (see trace/gpu_trace.h): writing, and the strict reader that names
// the line of every error.
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

namespace {

constexpr const char* kFormat = "dmap-gpu-trace";
constexpr int64_t kVersion = 1;

const std::set<std::string>& copy_kinds() {
  static const std::set<std::string> k = {"HtoD", "DtoH", "DtoD", "HtoH", "PtoP",   "HtoA",
                                          "AtoH", "AtoA", "AtoD", "DtoA", "unknown"};
  return k;
}
const std::set<std::string>& memory_kinds() {
  static const std::set<std::string> k = {"pageable", "pinned",        "device",         "managed",
                                          "array",    "device_static", "managed_static", "unknown"};
  return k;
}

}  // namespace

namespace detail {

void write_provenance(JsonWriter& w, const TraceProvenance& p) {
  w.begin_object();
  w.key("source");
  w.value(p.source);
  w.key("dmap_version");
  w.value(p.dmap_version);
  w.key("driver_version");
  w.value(p.driver_version);
  w.key("runtime_version");
  w.value(p.runtime_version);
  w.key("cupti_version");
  w.value(p.cupti_version);
  w.key("note");
  w.value(p.note);
  w.key("devices");
  w.begin_array();
  for (const auto& [id, name] : p.devices) {
    w.begin_object();
    w.key("id");
    w.value(static_cast<int64_t>(id));
    w.key("name");
    w.value(name);
    w.end_object();
  }
  w.end_array();
  w.end_object();
}

}  // namespace detail

using detail::write_provenance;

// ==== raw record file: writing ================================================================

namespace {

void write_dims(JsonWriter& w, const std::array<int32_t, 3>& d) {
  w.begin_array();
  for (int32_t x : d) w.value(static_cast<int64_t>(x));
  w.end_array();
}

std::string activity_json(const GpuActivity& a) {
  JsonWriter w;
  w.begin_object();
  w.key("kind");
  w.value(activity_kind_name(a.kind));
  if (a.kind == ActivityKind::kKernel || a.kind == ActivityKind::kRuntime) {
    w.key("name");
    w.value(a.name);
  }
  w.key("start_ns");
  w.value(a.start_ns);
  w.key("end_ns");
  w.value(a.end_ns);
  w.key("correlation");
  w.value(static_cast<int64_t>(a.correlation));
  if (is_gpu_work(a.kind)) {
    w.key("device");
    w.value(static_cast<int64_t>(a.device));
    w.key("context");
    w.value(static_cast<int64_t>(a.context));
    w.key("stream");
    w.value(static_cast<int64_t>(a.stream));
  }
  switch (a.kind) {
    case ActivityKind::kKernel:
      w.key("grid");
      write_dims(w, a.grid);
      w.key("block");
      write_dims(w, a.block);
      w.key("shared_bytes");
      w.value(a.shared_bytes);
      break;
    case ActivityKind::kMemcpy:
      w.key("bytes");
      w.value(a.bytes);
      w.key("copy_kind");
      w.value(a.copy_kind);
      w.key("src_kind");
      w.value(a.src_kind);
      w.key("dst_kind");
      w.value(a.dst_kind);
      break;
    case ActivityKind::kMemset:
      w.key("bytes");
      w.value(a.bytes);
      w.key("dst_kind");
      w.value(a.dst_kind);
      break;
    case ActivityKind::kRuntime:
      w.key("process_id");
      w.value(static_cast<int64_t>(a.process_id));
      w.key("thread_id");
      w.value(static_cast<int64_t>(a.thread_id));
      break;
  }
  w.end_object();
  return w.str();
}

// `"key": [\n item,\n item\n]` -- one record per line keeps the file diffable and lets the
// reader name the line of a bad record.
void append_section(std::string& out, const char* key, const std::vector<std::string>& items, bool last) {
  out += JsonWriter::quote(key);
  out += ": [";
  for (size_t i = 0; i < items.size(); ++i) {
    out += i == 0 ? "\n" : ",\n";
    out += items[i];
  }
  out += items.empty() ? "]" : "\n]";
  out += last ? "\n" : ",\n";
}

}  // namespace

std::string gpu_trace_json(const GpuTrace& t) {
  std::string out =
      std::string("{\"format\": \"") + std::string(kFormat) + "\", \"version\": " + std::to_string(kVersion) + ",\n";
  {
    JsonWriter w;
    write_provenance(w, t.provenance);
    out += std::string("\"provenance\": ") + w.str() + ",\n";
  }
  out += std::string("\"dropped_records\": ") + std::to_string(t.dropped_records) + ",\n";

  std::vector<std::string> items;
  for (const auto& [id, e] : t.externals) {
    JsonWriter w;
    w.begin_object();
    w.key("id");
    w.value(static_cast<int64_t>(id));
    w.key("module");
    w.value(e.module);
    w.key("step");
    w.value(e.step);
    w.end_object();
    items.push_back(w.str());
  }
  append_section(out, "modules", items, false);

  items.clear();
  for (const auto& [corr, ext] : t.correlation_to_external) {
    items.push_back(std::string("[") + std::to_string(corr) + ", " + std::to_string(ext) + "]");
  }
  append_section(out, "correlations", items, false);

  items.clear();
  for (const HostRange& h : t.host_ranges) {
    JsonWriter w;
    w.begin_object();
    w.key("module");
    w.value(h.module);
    w.key("step");
    w.value(h.step);
    w.key("start_ns");
    w.value(h.start_ns);
    w.key("end_ns");
    w.value(h.end_ns);
    w.key("thread_id");
    w.value(static_cast<int64_t>(h.thread_id));
    w.end_object();
    items.push_back(w.str());
  }
  append_section(out, "host_ranges", items, false);

  items.clear();
  for (const GpuActivity& a : t.activities) items.push_back(activity_json(a));
  append_section(out, "activities", items, true);
  out += "}\n";
  return out;
}

// ==== raw record file: reading ================================================================

namespace {

// Lines of the top-level keys and of each element of the top-level arrays, found by a scan of
// text that parse_json has accepted (so it is well-formed): the JSON DOM keeps no positions.
struct Layout {
  std::map<std::string, int> key_line;
  std::map<std::string, std::vector<int>> element_lines;
};

Layout scan_layout(std::string_view t) {
  Layout out;
  int line = 1, depth = 0, str_line = 1;
  bool in_str = false, esc = false, expect_key = false, in_array = false, elem_expected = false;
  std::string cur, key, array_key;
  for (char c : t) {
    if (in_str) {
      if (esc) {
        esc = false;
      } else if (c == '\\') {
        esc = true;
      } else if (c == '"') {
        in_str = false;
        if (depth == 1 && expect_key) {
          key = cur;
          out.key_line.emplace(key, str_line);
          expect_key = false;
        }
        continue;
      }
      if (depth == 1) cur += c;
      continue;
    }
    if (c == '\n') {
      ++line;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r') continue;
    if (depth == 2 && in_array && elem_expected && c != ']' && c != ',') {
      out.element_lines[array_key].push_back(line);
      elem_expected = false;
    }
    switch (c) {
      case '"':
        in_str = true;
        cur.clear();
        str_line = line;
        break;
      case '{':
      case '[':
        if (depth == 0 && c == '{') expect_key = true;
        if (depth == 1 && c == '[') {
          in_array = true;
          array_key = key;
          elem_expected = true;
          out.element_lines[key];
        }
        ++depth;
        break;
      case '}':
      case ']':
        --depth;
        if (depth == 1) in_array = false;
        break;
      case ',':
        if (depth == 1) expect_key = true;
        if (depth == 2 && in_array) elem_expected = true;
        break;
      default: break;
    }
  }
  return out;
}

// 1-based line and column of byte `pos` of `t`.
std::pair<int, int> line_column(std::string_view t, size_t pos) {
  int line = 1, col = 1;
  for (size_t i = 0; i < pos && i < t.size(); ++i) {
    if (t[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return {line, col};
}

const char* json_kind_name(JsonValue::Kind k) {
  switch (k) {
    case JsonValue::Kind::kNull: return "null";
    case JsonValue::Kind::kBool: return "a boolean";
    case JsonValue::Kind::kInt: return "an integer";
    case JsonValue::Kind::kDouble: return "a number with a fraction or exponent";
    case JsonValue::Kind::kString: return "a string";
    case JsonValue::Kind::kArray: return "an array";
    case JsonValue::Kind::kObject: return "an object";
  }
  return "?";
}

constexpr int64_t kU32 = std::numeric_limits<uint32_t>::max();
constexpr int64_t kI32 = std::numeric_limits<int32_t>::max();
constexpr int64_t kI64 = std::numeric_limits<int64_t>::max();

// Where a value sits: "activities[3]" on line 42 (0 = unknown).
struct Where {
  std::string what;
  int line = 0;
};

class RawReader {
 public:
  RawReader(const std::string& text, const std::string& file) : text_(text), file_(file) {}

  GpuTrace read() {
    JsonValue doc;
    try {
      doc = parse_json(text_, file_);
    } catch (const InputError& e) {
      // parse_json reports a byte offset; turn it into the line and column people look for.
      const std::string& m = e.message();
      const size_t at = m.rfind(" at byte ");
      if (at != std::string::npos) {
        const auto [line, col] = line_column(text_, std::stoull(m.substr(at + 9)));
        throw InputError(file_, line, col, m);
      }
      throw;
    }
    layout_ = scan_layout(text_);
    const Where top{"", 1};
    if (doc.kind != JsonValue::Kind::kObject)
      fail(top, std::string("a dmap GPU trace is one JSON object, got ") + std::string(json_kind_name(doc.kind)));
    only_keys(
        doc,
        {"format", "version", "provenance", "dropped_records", "modules", "correlations", "host_ranges", "activities"},
        top);

    const std::string format = str(doc, "format", at_key("format"));
    if (format != kFormat)
      fail(at_key("format"),
           std::string("not a dmap GPU trace: \"format\" is \"") + format + "\", expected \"" + kFormat + "\"");
    const int64_t version = integer(doc, "version", at_key("version"), 0, kI64);
    if (version != kVersion) {
      fail(at_key("version"), std::string("unsupported version ") + std::to_string(version) +
                                  " (this dmap reads version " + std::to_string(kVersion) + ")");
    }

    GpuTrace t;
    t.provenance = provenance(field(doc, "provenance", top), at_key("provenance"));
    t.dropped_records = static_cast<uint64_t>(integer(doc, "dropped_records", at_key("dropped_records"), 0, kI64));

    for_each(doc, "modules", [&](const JsonValue& v, const Where& w) {
      expect_object(v, w);
      only_keys(v, {"id", "module", "step"}, w);
      ExternalRange e;
      e.id = static_cast<uint64_t>(integer(v, "id", w, 0, kI64));
      e.module = nonempty_str(v, "module", w);
      e.step = static_cast<int>(integer(v, "step", w, -1, kI32));
      if (!t.externals.emplace(e.id, e).second)
        fail(w, std::string("external id ") + std::to_string(e.id) + " appears twice");
    });
    for_each(doc, "correlations", [&](const JsonValue& v, const Where& w) {
      if (v.kind != JsonValue::Kind::kArray || v.items.size() != 2 || !v.items[0].is_int() || !v.items[1].is_int()) {
        fail(w, "expected [correlation id, external id] (two integers)");
      }
      const int64_t corr = v.items[0].i, ext = v.items[1].i;
      if (corr < 0 || corr > kU32)
        fail(w, std::string("correlation id ") + std::to_string(corr) + " is out of range [0, 4294967295]");
      if (ext < 0) fail(w, std::string("external id ") + std::to_string(ext) + " is negative");
      if (!t.externals.count(static_cast<uint64_t>(ext))) {
        fail(w, std::string("external id ") + std::to_string(ext) + " is not in \"modules\"");
      }
      if (!t.correlation_to_external.emplace(static_cast<uint32_t>(corr), static_cast<uint64_t>(ext)).second) {
        fail(w, std::string("correlation id ") + std::to_string(corr) + " appears twice");
      }
    });
    for_each(doc, "host_ranges", [&](const JsonValue& v, const Where& w) {
      expect_object(v, w);
      only_keys(v, {"module", "step", "start_ns", "end_ns", "thread_id"}, w);
      HostRange h;
      h.module = nonempty_str(v, "module", w);
      h.step = static_cast<int>(integer(v, "step", w, -1, kI32));
      std::tie(h.start_ns, h.end_ns) = times(v, w);
      h.thread_id = static_cast<uint32_t>(integer(v, "thread_id", w, 0, kU32));
      t.host_ranges.push_back(std::move(h));
    });
    for_each(doc, "activities", [&](const JsonValue& v, const Where& w) { t.activities.push_back(activity(v, w)); });
    return t;
  }

 private:
  [[noreturn]] void fail(const Where& w, const std::string& msg) const {
    throw InputError(file_, w.line, 0, w.what.empty() ? msg : w.what + ": " + msg);
  }
  Where at_key(const std::string& key) const {
    const auto it = layout_.key_line.find(key);
    return {"", it == layout_.key_line.end() ? 0 : it->second};
  }
  void expect_object(const JsonValue& v, const Where& w) const {
    if (v.kind != JsonValue::Kind::kObject)
      fail(w, std::string("expected an object, got ") + std::string(json_kind_name(v.kind)));
  }
  void only_keys(const JsonValue& o, std::initializer_list<std::string_view> allowed, const Where& w) const {
    for (const std::string& k : o.keys) {
      if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
        fail(w, std::string("unknown field \"") + k + "\"");
    }
  }
  const JsonValue& field(const JsonValue& o, const char* key, const Where& w) const {
    const JsonValue* v = o.find(key);
    if (v == nullptr) fail(w, std::string("missing field \"") + std::string(key) + "\"");
    return *v;
  }
  int64_t integer(const JsonValue& o, const char* key, const Where& w, int64_t lo, int64_t hi) const {
    const JsonValue& v = field(o, key, w);
    if (!v.is_int())
      fail(w, std::string("field \"") + std::string(key) + "\" must be an integer, got " + json_kind_name(v.kind));
    if (v.i < lo || v.i > hi) {
      fail(w, std::string("field \"") + std::string(key) + "\" is " + std::to_string(v.i) + ", outside [" +
                  std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return v.i;
  }
  std::string str(const JsonValue& o, const char* key, const Where& w) const {
    const JsonValue& v = field(o, key, w);
    if (v.kind != JsonValue::Kind::kString)
      fail(w, std::string("field \"") + std::string(key) + "\" must be a string, got " + json_kind_name(v.kind));
    return v.s;
  }
  std::string nonempty_str(const JsonValue& o, const char* key, const Where& w) const {
    std::string s = str(o, key, w);
    if (s.empty()) fail(w, std::string("field \"") + std::string(key) + "\" is empty");
    return s;
  }
  std::string one_of(const JsonValue& o, const char* key, const std::set<std::string>& allowed, const Where& w) const {
    std::string s = str(o, key, w);
    if (!allowed.count(s)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      fail(w, std::string("field \"") + std::string(key) + "\" is \"" + s + "\", expected one of " + list);
    }
    return s;
  }
  std::pair<int64_t, int64_t> times(const JsonValue& o, const Where& w) const {
    const int64_t start = integer(o, "start_ns", w, 0, kI64);
    const int64_t end = integer(o, "end_ns", w, 0, kI64);
    if (end < start)
      fail(w, std::string("end_ns ") + std::to_string(end) + " is before start_ns " + std::to_string(start));
    return {start, end};
  }
  std::array<int32_t, 3> dims(const JsonValue& o, const char* key, const Where& w) const {
    const JsonValue& v = field(o, key, w);
    if (v.kind != JsonValue::Kind::kArray || v.items.size() != 3)
      fail(w, std::string("field \"") + std::string(key) + "\" must be [x, y, z]");
    std::array<int32_t, 3> d{};
    for (size_t i = 0; i < 3; ++i) {
      if (!v.items[i].is_int() || v.items[i].i < 0 || v.items[i].i > kI32) {
        fail(w, std::string("field \"") + std::string(key) + "\" must hold three integers in [0, 2147483647]");
      }
      d[i] = static_cast<int32_t>(v.items[i].i);
    }
    return d;
  }

  template <typename F>
  void for_each(const JsonValue& doc, const char* key, F&& f) const {
    const JsonValue& arr = field(doc, key, {"", 1});
    if (arr.kind != JsonValue::Kind::kArray)
      fail(at_key(key), std::string("\"") + std::string(key) + "\" must be an array, got " + json_kind_name(arr.kind));
    const auto lines = layout_.element_lines.find(key);
    for (size_t i = 0; i < arr.items.size(); ++i) {
      int line = 0;
      if (lines != layout_.element_lines.end() && i < lines->second.size()) line = lines->second[i];
      f(arr.items[i], Where{std::string(key) + "[" + std::to_string(i) + "]", line});
    }
  }

  TraceProvenance provenance(const JsonValue& v, const Where& at) const {
    const Where w{"provenance", at.line};
    expect_object(v, w);
    only_keys(v, {"source", "dmap_version", "driver_version", "runtime_version", "cupti_version", "note", "devices"},
              w);
    TraceProvenance p;
    p.source = str(v, "source", w);
    p.dmap_version = str(v, "dmap_version", w);
    p.driver_version = str(v, "driver_version", w);
    p.runtime_version = str(v, "runtime_version", w);
    p.cupti_version = str(v, "cupti_version", w);
    p.note = str(v, "note", w);
    const JsonValue& devs = field(v, "devices", w);
    if (devs.kind != JsonValue::Kind::kArray) fail(w, "field \"devices\" must be an array");
    for (size_t i = 0; i < devs.items.size(); ++i) {
      const Where dw{std::string("provenance.devices[") + std::to_string(i) + "]", at.line};
      expect_object(devs.items[i], dw);
      only_keys(devs.items[i], {"id", "name"}, dw);
      const auto id = static_cast<uint32_t>(integer(devs.items[i], "id", dw, 0, kU32));
      if (!p.devices.emplace(id, str(devs.items[i], "name", dw)).second)
        fail(dw, std::string("device ") + std::to_string(id) + " appears twice");
    }
    return p;
  }

  GpuActivity activity(const JsonValue& v, const Where& w) const {
    expect_object(v, w);
    GpuActivity a;
    const std::string kind = str(v, "kind", w);
    if (kind == "kernel") {
      a.kind = ActivityKind::kKernel;
      only_keys(v,
                {"kind", "name", "start_ns", "end_ns", "correlation", "device", "context", "stream", "grid", "block",
                 "shared_bytes"},
                w);
    } else if (kind == "memcpy") {
      a.kind = ActivityKind::kMemcpy;
      only_keys(v,
                {"kind", "start_ns", "end_ns", "correlation", "device", "context", "stream", "bytes", "copy_kind",
                 "src_kind", "dst_kind"},
                w);
    } else if (kind == "memset") {
      a.kind = ActivityKind::kMemset;
      only_keys(v, {"kind", "start_ns", "end_ns", "correlation", "device", "context", "stream", "bytes", "dst_kind"},
                w);
    } else if (kind == "runtime") {
      a.kind = ActivityKind::kRuntime;
      only_keys(v, {"kind", "name", "start_ns", "end_ns", "correlation", "process_id", "thread_id"}, w);
    } else {
      fail(w, std::string("unknown kind \"") + kind + "\" (expected kernel, memcpy, memset or runtime)");
    }
    if (a.kind == ActivityKind::kKernel || a.kind == ActivityKind::kRuntime) a.name = nonempty_str(v, "name", w);
    std::tie(a.start_ns, a.end_ns) = times(v, w);
    a.correlation = static_cast<uint32_t>(integer(v, "correlation", w, 0, kU32));
    if (is_gpu_work(a.kind)) {
      a.device = static_cast<uint32_t>(integer(v, "device", w, 0, kU32));
      a.context = static_cast<uint32_t>(integer(v, "context", w, 0, kU32));
      a.stream = static_cast<uint32_t>(integer(v, "stream", w, 0, kU32));
    }
    switch (a.kind) {
      case ActivityKind::kKernel:
        a.grid = dims(v, "grid", w);
        a.block = dims(v, "block", w);
        a.shared_bytes = integer(v, "shared_bytes", w, 0, kI64);
        break;
      case ActivityKind::kMemcpy:
        a.bytes = integer(v, "bytes", w, 0, kI64);
        a.copy_kind = one_of(v, "copy_kind", copy_kinds(), w);
        a.src_kind = one_of(v, "src_kind", memory_kinds(), w);
        a.dst_kind = one_of(v, "dst_kind", memory_kinds(), w);
        break;
      case ActivityKind::kMemset:
        a.bytes = integer(v, "bytes", w, 0, kI64);
        a.dst_kind = one_of(v, "dst_kind", memory_kinds(), w);
        break;
      case ActivityKind::kRuntime:
        a.process_id = static_cast<uint32_t>(integer(v, "process_id", w, 0, kU32));
        a.thread_id = static_cast<uint32_t>(integer(v, "thread_id", w, 0, kU32));
        break;
    }
    return a;
  }

  const std::string& text_;
  const std::string& file_;
  Layout layout_;
};

}  // namespace

GpuTrace parse_gpu_trace(const std::string& text, const std::string& file) { return RawReader(text, file).read(); }

}  // namespace dmap::trace
