// The GPU trace model: raw record file (write, strict read with line numbers), per-module
// aggregates and the Chrome/Perfetto export. See profile/gpu_trace.h for the contracts.
#include "profile/gpu_trace.h"

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

namespace dmap::profile {

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

bool is_gpu_work(ActivityKind k) { return k != ActivityKind::kRuntime; }

}  // namespace

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

// ==== raw record file: writing ================================================================

namespace {

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

}  // namespace dmap::profile
