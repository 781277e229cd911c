// Rates from datasheets and calibrations.
#include "sim/calibration.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "core/yaml_io.h"

namespace dmap::sim {

double RateCurve::at(double m) const {
  DMAP_CHECK(!points.empty(), "empty rate curve");
  if (points.size() == 1 || m <= points.front().first) return points.front().second;
  if (m >= points.back().first) return points.back().second;
  for (size_t i = 1; i < points.size(); ++i) {
    if (m <= points[i].first) {
      const auto [m0, r0] = points[i - 1];
      const auto [m1, r1] = points[i];
      const double t = (std::log(m) - std::log(m0)) / (std::log(m1) - std::log(m0));
      return r0 + t * (r1 - r0);
    }
  }
  return points.back().second;
}

const RateCurve& DeviceRates::flops_for(DType d) const {
  auto it = flops.find(d);
  if (it != flops.end()) return it->second;
  it = flops.find(DType::kFloat32);
  if (it != flops.end()) return it->second;
  DMAP_CHECK(!flops.empty(), "device without any FLOP rate");
  return flops.begin()->second;
}

double DeviceRates::row_cost(DType d) const {
  auto it = matvec_row.find(d);
  if (it == matvec_row.end()) it = matvec_row.find(DType::kFloat32);
  return it == matvec_row.end() ? 0.0 : it->second.value;
}

double DeviceRates::head_rate(DType d) const {
  const auto it = head_matvec.find(d);
  return it == head_matvec.end() ? 0.0 : it->second.value;
}

double DeviceRates::input_cost(DType d) const {
  auto it = matmul_input.find(d);
  if (it == matmul_input.end()) it = matmul_input.find(DType::kFloat32);
  return it == matmul_input.end() ? 0.0 : it->second.value;
}

const Figure& Rates::page_cache_for(DType d) const {
  auto it = page_cache_read_dtype.find(d);
  return it != page_cache_read_dtype.end() ? it->second : page_cache_read;
}

double Rates::TorchOffload::fresh_share(double bytes) const {
  return bytes >= kGlibcMmapThresholdMax ? 1.0 : heap_fresh.value;
}

double Rates::TorchOffload::fresh_pages(double bytes) const {
  return std::ceil(bytes / kPageBytes) * fresh_share(bytes);
}

double Rates::TorchOffload::fresh_seconds(double bytes) const {
  return fresh_pages(bytes) * (bytes >= kGlibcMmapThresholdMax ? mapped_page.value : fresh_page.value);
}

double Rates::TorchOffload::seconds(double bytes, DType d) const {
  return copy_scale_of(d) * bytes / copy.value + fresh_seconds(bytes);
}

double Rates::TorchOffload::cold_copy_seconds(double bytes, DType d) const {
  return cold_scale_of(d) * copy_scale_of(d) * bytes / copy.value;
}

double Rates::page_cache_rate(DType d, double bytes) const {
  if (torch_offload && bytes > 0) return bytes / torch_offload->seconds(bytes, d);
  if (page_cache_large_from > 0 && bytes >= page_cache_large_from) return page_cache_large.value;
  const auto it = page_cache_curve.find(d);
  return it != page_cache_curve.end() ? it->second.at(bytes / (1024.0 * 1024.0)) : page_cache_for(d).value;
}

double Rates::min_page_cache_rate(DType d) const {
  // The slowest tensor is one that is all fresh pages.
  if (torch_offload) return kGlibcMmapThresholdMax / torch_offload->seconds(kGlibcMmapThresholdMax, d);
  const double large = page_cache_large_from > 0 ? page_cache_large.value : std::numeric_limits<double>::infinity();
  const auto it = page_cache_curve.find(d);
  if (it == page_cache_curve.end()) return std::min(large, page_cache_for(d).value);
  double m = it->second.points.front().second;
  for (const auto& [mib, r] : it->second.points) m = std::min(m, r);
  return std::min(large, m);
}

const Figure& Rates::disk_read_for(DType d) const {
  auto it = disk_read_dtype.find(d);
  return it != disk_read_dtype.end() ? it->second : disk_read;
}

double Rates::disk_read_rate(DType d, double bytes) const {
  if (disk_read_large_from > 0 && bytes >= disk_read_large_from) return disk_read_large.value;
  return disk_read_for(d).value;
}

double Rates::max_disk_read_rate(DType d) const {
  return disk_read_large_from > 0 ? std::max(disk_read_large.value, disk_read_for(d).value) : disk_read_for(d).value;
}

const RateCurve& DeviceRates::attention_flops_for(DType d) const {
  auto it = attention_flops.find(d);
  return it != attention_flops.end() ? it->second : flops_for(d);
}

namespace {

constexpr double kGB = 1e9;
constexpr double kUs = 1e-6;

void check_keys(const std::string& file, const YAML::Node& map, std::initializer_list<const char*> allowed,
                const std::string& where) {
  check_known_keys(file, map, std::vector<std::string>(allowed.begin(), allowed.end()), where);
}

double positive(const std::string& file, const YAML::Node& n, const std::string& what) {
  const double v = yaml_double(file, n, what);
  if (!(v > 0)) fail_at(file, n, what + ": must be positive, found " + n.Scalar());
  return v;
}

double non_negative(const std::string& file, const YAML::Node& n, const std::string& what) {
  const double v = yaml_double(file, n, what);
  if (v < 0) fail_at(file, n, what + ": must not be negative, found " + n.Scalar());
  return v;
}

CurvePoints read_curve(const std::string& file, const YAML::Node& n, const std::string& what) {
  CurvePoints c;
  if (n.IsScalar()) {
    c.push_back({1.0, positive(file, n, what)});
    return c;
  }
  if (!n.IsSequence() || n.size() == 0) fail_at(file, n, what + ": expected a rate or a list of [M, rate] points");
  for (const auto& p : n) {
    if (!p.IsSequence() || p.size() != 2) fail_at(file, p, what + ": expected [M, rate]");
    const double m = positive(file, p[0], what + " M");
    const double r = positive(file, p[1], what + " rate");
    if (!c.empty() && m <= c.back().first) fail_at(file, p[0], what + ": M values must increase");
    c.push_back({m, r});
  }
  return c;
}

DType read_dtype(const std::string& file, const YAML::Node& key, const std::string& what) {
  const std::string d = yaml_string(file, key, "dtype");
  auto dt = parse_dtype(d);
  if (!dt) fail_at(file, key, what + ": unknown dtype '" + d + "'");
  return *dt;
}

std::map<DType, CurvePoints> read_curves(const std::string& file, const YAML::Node& n, const std::string& what) {
  if (!n.IsMap()) fail_at(file, n, what + ": expected a mapping dtype -> rate");
  std::map<DType, CurvePoints> out;
  for (const auto& kv : n)
    out[read_dtype(file, kv.first, what)] = read_curve(file, kv.second, what + "." + kv.first.Scalar());
  return out;
}

// dtype -> non-negative number (a mapping), or one number for every dtype (held under float32).
std::map<DType, double> read_per_dtype(const std::string& file, const YAML::Node& n, const std::string& what) {
  std::map<DType, double> out;
  if (n.IsScalar()) {
    out[DType::kFloat32] = non_negative(file, n, what);
    return out;
  }
  if (!n.IsMap()) fail_at(file, n, what + ": expected a number or a mapping dtype -> number");
  for (const auto& kv : n) {
    out[read_dtype(file, kv.first, what)] = non_negative(file, kv.second, what + "." + kv.first.Scalar());
  }
  return out;
}

// A figure of `map` under `key`, if present: positive (bandwidths), or >= 0 (overheads, latencies).
std::optional<double> read_figure(const std::string& file, const YAML::Node& map, const char* key, bool allow_zero) {
  const YAML::Node n = map[key];
  if (!n.IsDefined()) return std::nullopt;
  return allow_zero ? non_negative(file, n, key) : positive(file, n, key);
}

GpuCalibration read_gpu(const std::string& f, const YAML::Node& g, const std::string& where) {
  check_keys(
      f, g,
      {"memory_bandwidth_gbs", "launch_overhead_us", "matmul_tflops", "attention_tflops", "attention_overhead_us"},
      where);
  GpuCalibration c;
  c.memory_bandwidth_gbs = read_figure(f, g, "memory_bandwidth_gbs", false);
  c.launch_overhead_us = read_figure(f, g, "launch_overhead_us", true);
  c.attention_overhead_us = read_figure(f, g, "attention_overhead_us", true);
  if (g["matmul_tflops"].IsDefined()) c.matmul_tflops = read_curves(f, g["matmul_tflops"], "gpus.matmul_tflops");
  if (g["attention_tflops"].IsDefined())
    c.attention_tflops = read_curves(f, g["attention_tflops"], "gpus.attention_tflops");
  return c;
}

Calibration from_node(const YAML::Node& root, const std::string& f) {
  if (!root.IsMap()) fail_at(f, root, "a calibration must be a mapping");
  check_keys(f, root, {"kind", "name", "provenance", "host", "gpus", "link", "disk", "runtimes", "moe", "fit"},
             "calibration");
  if (!root["kind"].IsDefined() || !root["kind"].IsScalar() || root["kind"].Scalar() != "calibration") {
    fail_at(f, root["kind"], root, "a calibration file needs `kind: calibration`");
  }
  Calibration c;
  c.file = f;
  if (root["name"].IsDefined() && root["name"].IsScalar()) c.name = root["name"].Scalar();
  if (root["provenance"].IsDefined()) c.provenance = root["provenance"];
  if (root["fit"].IsDefined()) c.fit = root["fit"];
  if (const YAML::Node h = root["host"]; h.IsDefined()) {
    check_keys(f, h,
               {"memory_bandwidth_gbs", "page_cache_read_gbs", "dispatch_overhead_us", "offload_tensor_overhead_us",
                "matmul_gflops", "attention_gflops", "attention_overhead_us", "matvec_row_ns", "matmul_input_ns",
                "head_matvec_gbs", "reference_probe_ms", "dtype_reference_probe_ms", "page_cache_probe_gbs",
                "page_cache_large_gbs", "page_cache_large_from_mib"},
               "host");
    HostCalibration& hc = c.host;
    hc.memory_bandwidth_gbs = read_figure(f, h, "memory_bandwidth_gbs", false);
    hc.dispatch_overhead_us = read_figure(f, h, "dispatch_overhead_us", true);
    hc.offload_tensor_overhead_us = read_figure(f, h, "offload_tensor_overhead_us", true);
    hc.attention_overhead_us = read_figure(f, h, "attention_overhead_us", true);
    hc.reference_probe_ms = read_figure(f, h, "reference_probe_ms", false);
    hc.page_cache_probe_gbs = read_figure(f, h, "page_cache_probe_gbs", false);
    hc.page_cache_large_gbs = read_figure(f, h, "page_cache_large_gbs", false);
    hc.page_cache_large_from_mib = read_figure(f, h, "page_cache_large_from_mib", false);
    if (hc.page_cache_large_gbs.has_value() != hc.page_cache_large_from_mib.has_value()) {
      fail_at(f, h[hc.page_cache_large_gbs ? "page_cache_large_gbs" : "page_cache_large_from_mib"],
              "host.page_cache_large_gbs and host.page_cache_large_from_mib go together: the rate and the tensor "
              "size it holds from");
    }
    if (const YAML::Node pc = h["page_cache_read_gbs"]; pc.IsDefined() && pc.IsMap()) {
      // (read_curve: a rate, or [tensor MiB, GB/s] points of increasing size, every one positive)
      hc.page_cache_read_gbs_by_dtype = read_curves(f, pc, "host.page_cache_read_gbs");
      if (hc.page_cache_read_gbs_by_dtype.empty()) fail_at(f, pc, "host.page_cache_read_gbs: an empty mapping");
    } else {
      hc.page_cache_read_gbs = read_figure(f, h, "page_cache_read_gbs", false);
    }
    if (h["matmul_gflops"].IsDefined()) hc.matmul_gflops = read_curves(f, h["matmul_gflops"], "host.matmul_gflops");
    if (h["attention_gflops"].IsDefined()) {
      hc.attention_gflops = read_curves(f, h["attention_gflops"], "host.attention_gflops");
    }
    if (h["matvec_row_ns"].IsDefined()) hc.matvec_row_ns = read_per_dtype(f, h["matvec_row_ns"], "host.matvec_row_ns");
    if (h["matmul_input_ns"].IsDefined()) {
      hc.matmul_input_ns = read_per_dtype(f, h["matmul_input_ns"], "host.matmul_input_ns");
    }
    if (h["dtype_reference_probe_ms"].IsDefined()) {
      hc.dtype_reference_probe_ms = read_per_dtype(f, h["dtype_reference_probe_ms"], "host.dtype_reference_probe_ms");
      for (const auto& [d, v] : hc.dtype_reference_probe_ms) {
        if (!(v > 0))
          fail_at(f, h["dtype_reference_probe_ms"], "host.dtype_reference_probe_ms: a time must be positive");
      }
    }
    if (h["head_matvec_gbs"].IsDefined()) {
      hc.head_matvec_gbs = read_per_dtype(f, h["head_matvec_gbs"], "host.head_matvec_gbs");
      for (const auto& [d, v] : hc.head_matvec_gbs) {
        if (!(v > 0)) fail_at(f, h["head_matvec_gbs"], "host.head_matvec_gbs: a rate must be positive");
      }
    }
  }
  if (const YAML::Node gs = root["gpus"]; gs.IsDefined()) {
    if (!gs.IsMap()) fail_at(f, gs, "gpus: expected a mapping (all | ordinal) -> rates");
    for (const auto& kv : gs) {
      const std::string k = yaml_string(f, kv.first, "gpu");
      if (k == "all") {
        c.all_gpus = read_gpu(f, kv.second, "gpus.all");
        continue;
      }
      if (!is_int_literal(k)) fail_at(f, kv.first, "gpus: key must be 'all' or a GPU ordinal, found '" + k + "'");
      const int64_t idx = yaml_int(f, kv.first, "gpu ordinal");
      if (idx < 0 || idx > 4096) fail_at(f, kv.first, "gpus: a GPU ordinal is 0..4096, found " + k);
      c.gpus[static_cast<int>(idx)] = read_gpu(f, kv.second, "gpus." + k);
    }
  }
  if (const YAML::Node l = root["link"]; l.IsDefined()) {
    check_keys(
        f, l,
        {"h2d_pinned_gbs", "h2d_pageable_gbs", "d2h_pinned_gbs", "d2h_pageable_gbs", "copy_latency_us", "p2p_gbs"},
        "link");
    c.link.h2d_pinned_gbs = read_figure(f, l, "h2d_pinned_gbs", false);
    c.link.h2d_pageable_gbs = read_figure(f, l, "h2d_pageable_gbs", false);
    c.link.d2h_pinned_gbs = read_figure(f, l, "d2h_pinned_gbs", false);
    c.link.d2h_pageable_gbs = read_figure(f, l, "d2h_pageable_gbs", false);
    c.link.copy_latency_us = read_figure(f, l, "copy_latency_us", true);
    c.link.p2p_gbs = read_figure(f, l, "p2p_gbs", false);
  }
  if (const YAML::Node d = root["disk"]; d.IsDefined()) {
    check_keys(f, d, {"read_gbs", "read_latency_us", "read_large_gbs", "read_large_from_mib"}, "disk");
    if (const YAML::Node rg = d["read_gbs"]; rg.IsDefined() && rg.IsMap()) {
      c.disk.read_gbs_by_dtype = read_per_dtype(f, rg, "disk.read_gbs");
      for (const auto& [dt, v] : c.disk.read_gbs_by_dtype) {
        if (!(v > 0)) fail_at(f, rg, "disk.read_gbs: every rate must be positive");
      }
      if (c.disk.read_gbs_by_dtype.empty()) fail_at(f, rg, "disk.read_gbs: an empty mapping");
    } else {
      c.disk.read_gbs = read_figure(f, d, "read_gbs", false);
    }
    c.disk.read_latency_us = read_figure(f, d, "read_latency_us", true);
    c.disk.read_large_gbs = read_figure(f, d, "read_large_gbs", false);
    c.disk.read_large_from_mib = read_figure(f, d, "read_large_from_mib", false);
    if (c.disk.read_large_gbs.has_value() != c.disk.read_large_from_mib.has_value()) {
      fail_at(f, d[c.disk.read_large_gbs ? "read_large_gbs" : "read_large_from_mib"],
              "disk.read_large_gbs and disk.read_large_from_mib go together: the cold rate and the tensor size from "
              "which it holds");
    }
  }
  if (const YAML::Node rt = root["runtimes"]; rt.IsDefined()) c.runtimes = read_runtime_profiles(f, rt);
  if (const YAML::Node m = root["moe"]; m.IsDefined()) {
    if (!m.IsMap()) fail_at(f, m, "moe: expected a mapping (routing_spread, sequence_spread)");
    check_keys(f, m, {"routing_spread", "sequence_spread"}, "moe");
    c.moe_routing_spread = read_figure(f, m, "routing_spread", false);
    if (c.moe_routing_spread && *c.moe_routing_spread > 1) {
      fail_at(f, m["routing_spread"],
              "moe.routing_spread: the share of a layer's experts routing spreads over is at most 1 (uniform)");
    }
    c.moe_sequence_spread = read_figure(f, m, "sequence_spread", false);
    if (c.moe_sequence_spread && *c.moe_sequence_spread > 1) {
      fail_at(f, m["sequence_spread"],
              "moe.sequence_spread: the share of the experts one sequence's tokens spread over is at most 1 "
              "(independent tokens)");
    }
  }
  return c;
}

// ---- writing ---------------------------------------------------------------------------------------

std::string num(double v) {
  std::ostringstream o;
  o << std::setprecision(6) << v;
  return o.str();
}

std::string curve_text(const CurvePoints& pts) {
  std::string s = "[";
  for (size_t i = 0; i < pts.size(); ++i) s += (i ? ", [" : "[") + num(pts[i].first) + ", " + num(pts[i].second) + "]";
  return s + "]";
}

void put(std::ostringstream& y, const std::string& indent, const char* key, const std::optional<double>& v) {
  if (v) y << indent << key << ": " << num(*v) << "\n";
}

void put_curves(std::ostringstream& y, const std::string& indent, const char* key,
                const std::map<DType, CurvePoints>& m) {
  if (m.empty()) return;
  y << indent << key << ":\n";
  for (const auto& [d, c] : m) y << indent << "  " << dtype_name(d) << ": " << curve_text(c) << "\n";
}

void put_per_dtype(std::ostringstream& y, const std::string& indent, const char* key,
                   const std::map<DType, double>& m) {
  if (m.empty()) return;
  y << indent << key << ": {";
  bool first = true;
  for (const auto& [d, v] : m) {
    y << (first ? "" : ", ") << dtype_name(d) << ": " << num(v);
    first = false;
  }
  y << "}\n";
}

void put_gpu(std::ostringstream& y, const std::string& key, const GpuCalibration& g) {
  y << "  " << key << ":\n";
  put(y, "    ", "memory_bandwidth_gbs", g.memory_bandwidth_gbs);
  put(y, "    ", "launch_overhead_us", g.launch_overhead_us);
  put_curves(y, "    ", "matmul_tflops", g.matmul_tflops);
  put_curves(y, "    ", "attention_tflops", g.attention_tflops);
  put(y, "    ", "attention_overhead_us", g.attention_overhead_us);
}

// `n` (a copy) with every numeric scalar in its shortest round-trip spelling: yaml-cpp stores a
// double assigned to a node with 17 digits (0.979 as 0.97899999999999998).
YAML::Node shortest_numbers(const YAML::Node& n) {
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    double v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return n;
    char buf[32];
    const auto [out, ec2] = std::to_chars(buf, buf + sizeof buf, v);
    if (ec2 != std::errc() || static_cast<size_t>(out - buf) >= s.size()) return n;
    return YAML::Node(std::string(buf, out));
  }
  if (n.IsSequence()) {
    YAML::Node out(YAML::NodeType::Sequence);
    for (const auto& item : n) out.push_back(shortest_numbers(item));
    out.SetStyle(n.Style());
    return out;
  }
  if (n.IsMap()) {
    YAML::Node out(YAML::NodeType::Map);
    for (const auto& kv : n) out[kv.first] = shortest_numbers(kv.second);
    out.SetStyle(n.Style());
    return out;
  }
  return n;
}

// A free-form mapping: one line per key, its value in flow style (a sequence of mappings: one
// item per line).
void put_free(std::ostringstream& y, const char* key, const YAML::Node& given) {
  if (!given.IsDefined() || given.IsNull()) return;
  const YAML::Node n = shortest_numbers(given);
  if (!n.IsMap()) {
    YAML::Emitter e;
    e << YAML::Flow << n;
    y << key << ": " << e.c_str() << "\n";
    return;
  }
  y << key << ":\n";
  for (const auto& kv : n) {
    YAML::Emitter k;
    k << kv.first;
    if (kv.second.IsSequence() && kv.second.size() > 0 && kv.second[0].IsMap()) {
      y << "  " << k.c_str() << ":\n";
      for (const auto& item : kv.second) {
        YAML::Emitter e;
        e << YAML::Flow << item;
        y << "    - " << e.c_str() << "\n";
      }
      continue;
    }
    YAML::Emitter e;
    e << YAML::Flow << kv.second;
    y << "  " << k.c_str() << ": " << e.c_str() << "\n";
  }
}

}  // namespace

// The `# ...` lines above the data (calibration_yaml writes `comment` there): kept, so that a
// calibration read and written back (a runtime profile added) keeps its header.
static std::string leading_comment(const std::string& text) {
  std::istringstream in(text);
  std::string line, out;
  while (std::getline(in, line) && line.rfind('#', 0) == 0) out += line.substr(line.rfind("# ", 0) == 0 ? 2 : 1) + "\n";
  if (!out.empty()) out.pop_back();
  return out;
}

Calibration load_calibration(const std::string& path) {
  Calibration c = from_node(load_yaml_file(path), path);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  c.comment = leading_comment(text.str());
  return c;
}

Calibration parse_calibration(const std::string& text, const std::string& origin) {
  Calibration c = from_node(load_yaml_string(text, origin), origin);
  c.comment = leading_comment(text);
  return c;
}

std::string calibration_yaml(const Calibration& c) {
  std::ostringstream y;
  std::istringstream comment(c.comment);
  for (std::string line; std::getline(comment, line);) y << "# " << line << "\n";
  y << "kind: calibration\n";
  if (!c.name.empty()) {
    YAML::Emitter e;
    e << YAML::DoubleQuoted << c.name;
    y << "name: " << e.c_str() << "\n";
  }
  put_free(y, "provenance", c.provenance);
  const HostCalibration& h = c.host;
  std::ostringstream hy;
  put(hy, "  ", "memory_bandwidth_gbs", h.memory_bandwidth_gbs);
  put(hy, "  ", "page_cache_read_gbs", h.page_cache_read_gbs);
  if (!h.page_cache_read_gbs_by_dtype.empty()) {  // a rate per dtype, or its curve by tensor size
    hy << "  page_cache_read_gbs: {";
    bool first = true;
    for (const auto& [d, c] : h.page_cache_read_gbs_by_dtype) {
      hy << (first ? "" : ", ") << dtype_name(d) << ": " << (c.size() == 1 ? num(c.front().second) : curve_text(c));
      first = false;
    }
    hy << "}\n";
  }
  put(hy, "  ", "page_cache_large_gbs", h.page_cache_large_gbs);
  put(hy, "  ", "page_cache_large_from_mib", h.page_cache_large_from_mib);
  put(hy, "  ", "dispatch_overhead_us", h.dispatch_overhead_us);
  put(hy, "  ", "offload_tensor_overhead_us", h.offload_tensor_overhead_us);
  put_curves(hy, "  ", "matmul_gflops", h.matmul_gflops);
  put_curves(hy, "  ", "attention_gflops", h.attention_gflops);
  put(hy, "  ", "attention_overhead_us", h.attention_overhead_us);
  put_per_dtype(hy, "  ", "matvec_row_ns", h.matvec_row_ns);
  put_per_dtype(hy, "  ", "matmul_input_ns", h.matmul_input_ns);
  put_per_dtype(hy, "  ", "head_matvec_gbs", h.head_matvec_gbs);
  put(hy, "  ", "reference_probe_ms", h.reference_probe_ms);
  put_per_dtype(hy, "  ", "dtype_reference_probe_ms", h.dtype_reference_probe_ms);
  put(hy, "  ", "page_cache_probe_gbs", h.page_cache_probe_gbs);
  if (!hy.str().empty()) y << "host:\n" << hy.str();
  if (c.all_gpus || !c.gpus.empty()) {
    y << "gpus:\n";
    if (c.all_gpus) put_gpu(y, "all", *c.all_gpus);
    for (const auto& [i, g] : c.gpus) put_gpu(y, std::to_string(i), g);
  }
  std::ostringstream ly;
  put(ly, "  ", "h2d_pinned_gbs", c.link.h2d_pinned_gbs);
  put(ly, "  ", "h2d_pageable_gbs", c.link.h2d_pageable_gbs);
  put(ly, "  ", "d2h_pinned_gbs", c.link.d2h_pinned_gbs);
  put(ly, "  ", "d2h_pageable_gbs", c.link.d2h_pageable_gbs);
  put(ly, "  ", "copy_latency_us", c.link.copy_latency_us);
  put(ly, "  ", "p2p_gbs", c.link.p2p_gbs);
  if (!ly.str().empty()) y << "link:\n" << ly.str();
  std::ostringstream dy;
  put(dy, "  ", "read_gbs", c.disk.read_gbs);
  put_per_dtype(dy, "  ", "read_gbs", c.disk.read_gbs_by_dtype);
  put(dy, "  ", "read_latency_us", c.disk.read_latency_us);
  put(dy, "  ", "read_large_gbs", c.disk.read_large_gbs);
  put(dy, "  ", "read_large_from_mib", c.disk.read_large_from_mib);
  if (!dy.str().empty()) y << "disk:\n" << dy.str();
  y << runtime_profiles_yaml(c.runtimes);
  std::ostringstream my;
  put(my, "  ", "routing_spread", c.moe_routing_spread);
  put(my, "  ", "sequence_spread", c.moe_sequence_spread);
  if (!my.str().empty()) y << "moe:\n" << my.str();
  put_free(y, "fit", c.fit);
  return y.str();
}

namespace {

// A 16-bit dtype the calibration did not time (calibrations default to float32 and bfloat16) on a
// host whose float32 it did: dmap's CPU executor streams its weights as 16-bit values and computes
// in float32 (no CPU it runs has float16 arithmetic), so its estimate is the measured float32 curve
// for M >= 2, with bfloat16's one-row rate (the same bytes streamed) where that was measured, and
// float32's attention — not the datasheet's figure for the dtype, which the calibrated figures
// around it no longer match (2026-12-06, AMD EPYC VM: TinyLlama float16 prefill predicted 2-3x
// slow from it, and a validation's choice between dmap and llama.cpp wrong on every float16 row).
void fill_uncalibrated_16bit(DeviceRates& h) {
  const auto f32 = h.flops.find(DType::kFloat32);
  if (f32 == h.flops.end() || f32->second.source != Source::kCalibrated) return;
  const auto calibrated = [&](DType d) {
    const auto it = h.flops.find(d);
    return it != h.flops.end() && it->second.source == Source::kCalibrated;
  };
  for (DType d : {DType::kBFloat16, DType::kFloat16}) {
    if (calibrated(d)) continue;
    RateCurve c = f32->second;
    c.source = Source::kEstimate;
    const DType other = d == DType::kFloat16 ? DType::kBFloat16 : DType::kFloat16;
    if (calibrated(other) && !c.points.empty() && c.points.front().first <= 1.0)
      c.points.front().second = h.flops.at(other).at(1.0);
    h.flops[d] = c;
    if (!h.attention_flops.count(d)) {
      if (const auto a = h.attention_flops.find(DType::kFloat32); a != h.attention_flops.end()) {
        h.attention_flops[d] = a->second;
        h.attention_flops[d].source = Source::kEstimate;
      }
    }
  }
}

}  // namespace

Rates make_rates(const Hardware& hw, const Calibration* cal) {
  Rates r;
  auto derate_flops = [](const std::map<DType, Figure>& peak, double frac) {
    std::map<DType, RateCurve> out;
    for (const auto& [d, f] : peak) out[d] = RateCurve::constant(f.value * frac, Source::kDatasheet);
    return out;
  };
  r.host.memory_bandwidth = {hw.host.memory_bandwidth.value * hw.host.achievable_memory, Source::kDatasheet};
  r.host.flops = derate_flops(hw.host.peak_flops, hw.host.achievable_compute);
  r.host.dispatch = hw.host.dispatch_overhead;
  r.host.dequant = hw.host.dequant;
  for (const auto& g : hw.gpus) {
    DeviceRates d;
    d.dequant = g.dequant;
    d.memory_bandwidth = {g.memory_bandwidth.value * g.achievable_memory, Source::kDatasheet};
    d.flops = derate_flops(g.peak_flops, g.achievable_compute);
    d.dispatch = g.launch_overhead;
    r.gpus.push_back(d);
  }
  r.h2d_pinned = hw.link.h2d_pinned;
  r.h2d_pageable = hw.link.h2d_pageable;
  r.d2h_pinned = hw.link.d2h_pinned;
  r.d2h_pageable = hw.link.d2h_pageable;
  r.copy_latency = hw.link.copy_latency;
  r.offload_tensor_overhead = hw.host.offload_tensor_overhead;
  r.disk_read = hw.disk.read_bandwidth;
  r.disk_latency = hw.disk.read_latency;
  // A warm file read is a memcpy out of the page cache: about half the memory bandwidth.
  r.page_cache_read = {r.host.memory_bandwidth.value / 2, Source::kDatasheet};
  const size_t n = hw.gpus.size();
  r.p2p.assign(n, std::vector<double>(n, 0));
  for (size_t a = 0; a < n; ++a) {
    for (size_t b = 0; b < n; ++b) {
      double bw = hw.link.p2p_bandwidth.value_or(hw.link.d2h_pinned.value);
      if (hw.gpus[a].p2p_bandwidth && hw.gpus[b].p2p_bandwidth)
        bw = std::min(*hw.gpus[a].p2p_bandwidth, *hw.gpus[b].p2p_bandwidth);
      r.p2p[a][b] = bw;
    }
  }
  if (!cal) return r;

  r.calibration_name = cal->name.empty() ? cal->file : cal->name;
  auto set = [](const std::optional<double>& v, double scale, Figure& out) {
    if (v) out = {*v * scale, Source::kCalibrated};
  };
  auto curves = [](const std::map<DType, CurvePoints>& in, double scale, std::map<DType, RateCurve>& out) {
    for (const auto& [d, pts] : in) {
      RateCurve c;
      c.source = Source::kCalibrated;
      for (const auto& [m, v] : pts) c.points.push_back({m, v * scale});
      out[d] = c;
    }
  };
  auto per_dtype = [](const std::map<DType, double>& in, double scale, std::map<DType, Figure>& out) {
    for (const auto& [d, v] : in) out[d] = {v * scale, Source::kCalibrated};
  };
  set(cal->moe_routing_spread, 1.0, r.routing_spread);
  set(cal->moe_sequence_spread, 1.0, r.sequence_spread);
  const HostCalibration& h = cal->host;
  set(h.memory_bandwidth_gbs, kGB, r.host.memory_bandwidth);
  set(h.dispatch_overhead_us, kUs, r.host.dispatch);
  set(h.offload_tensor_overhead_us, kUs, r.offload_tensor_overhead);
  if (!h.page_cache_read_gbs_by_dtype.empty()) {
    for (const auto& [d, c] : h.page_cache_read_gbs_by_dtype) {
      r.page_cache_read_dtype[d] = {c.back().second * kGB, Source::kCalibrated};
      if (c.size() > 1) {
        RateCurve& rc = r.page_cache_curve[d];
        rc.source = Source::kCalibrated;
        for (const auto& [mib, gbs] : c) rc.points.push_back({mib, gbs * kGB});
      }
    }
    // Other dtypes: the slowest given (a conservative guess).
    r.page_cache_read = r.page_cache_read_dtype.begin()->second;
    for (const auto& [d, fig] : r.page_cache_read_dtype) {
      if (fig.value < r.page_cache_read.value) r.page_cache_read = fig;
    }
  } else if (h.page_cache_read_gbs) {
    set(h.page_cache_read_gbs, kGB, r.page_cache_read);
  } else if (h.memory_bandwidth_gbs) {
    r.page_cache_read = {r.host.memory_bandwidth.value / 2, Source::kCalibrated};
  }
  if (h.page_cache_large_gbs && h.page_cache_large_from_mib) {
    set(h.page_cache_large_gbs, kGB, r.page_cache_large);
    r.page_cache_large_from = *h.page_cache_large_from_mib * 1024.0 * 1024.0;
  }
  curves(h.matmul_gflops, 1e9, r.host.flops);
  curves(h.attention_gflops, 1e9, r.host.attention_flops);
  fill_uncalibrated_16bit(r.host);
  set(h.attention_overhead_us, kUs, r.host.attention_overhead);
  per_dtype(h.matvec_row_ns, 1e-9, r.host.matvec_row);
  per_dtype(h.matmul_input_ns, 1e-9, r.host.matmul_input);
  per_dtype(h.head_matvec_gbs, kGB, r.host.head_matvec);
  auto apply_gpu = [&](const GpuCalibration& g, DeviceRates& d) {
    set(g.memory_bandwidth_gbs, kGB, d.memory_bandwidth);
    set(g.launch_overhead_us, kUs, d.dispatch);
    curves(g.matmul_tflops, 1e12, d.flops);
    curves(g.attention_tflops, 1e12, d.attention_flops);
    set(g.attention_overhead_us, kUs, d.attention_overhead);
  };
  if (cal->all_gpus) {
    for (auto& d : r.gpus) apply_gpu(*cal->all_gpus, d);
  }
  for (const auto& [i, g] : cal->gpus) {
    if (i < static_cast<int>(r.gpus.size()))
      apply_gpu(g, r.gpus[static_cast<size_t>(i)]);  // else: a GPU this scenario lacks
  }
  const LinkCalibration& l = cal->link;
  set(l.h2d_pinned_gbs, kGB, r.h2d_pinned);
  set(l.h2d_pageable_gbs, kGB, r.h2d_pageable);
  set(l.d2h_pinned_gbs, kGB, r.d2h_pinned);
  set(l.d2h_pageable_gbs, kGB, r.d2h_pageable);
  set(l.copy_latency_us, kUs, r.copy_latency);
  if (l.p2p_gbs) {
    for (auto& row : r.p2p) std::fill(row.begin(), row.end(), *l.p2p_gbs * kGB);
  }
  set(cal->disk.read_gbs, kGB, r.disk_read);
  if (!cal->disk.read_gbs_by_dtype.empty()) {
    for (const auto& [d, v] : cal->disk.read_gbs_by_dtype) r.disk_read_dtype[d] = {v * kGB, Source::kCalibrated};
    // Other dtypes: the slowest given (a conservative guess).
    r.disk_read = r.disk_read_dtype.begin()->second;
    for (const auto& [d, fig] : r.disk_read_dtype) {
      if (fig.value < r.disk_read.value) r.disk_read = fig;
    }
  }
  set(cal->disk.read_latency_us, kUs, r.disk_latency);
  if (cal->disk.read_large_gbs && cal->disk.read_large_from_mib) {
    set(cal->disk.read_large_gbs, kGB, r.disk_read_large);
    r.disk_read_large_from = *cal->disk.read_large_from_mib * 1024.0 * 1024.0;
  }
  return r;
}

RuntimeProfile profile_for(const Calibration* cal, Runtime r) {
  if (cal) {
    auto it = cal->runtimes.find(r);
    if (it != cal->runtimes.end()) return it->second;
  }
  return estimated_profile(r);
}

Rates runtime_rates(const Rates& base, Runtime r, const RuntimeProfile& p) {
  if (r == Runtime::kDmap) return base;
  Rates out = base;
  out.runtime = r;
  // The head's own rate is dmap's executor's (the runtimes' efficiencies were fitted without it).
  out.host.head_matvec.clear();
  const Source src = p.measured ? Source::kCalibrated : Source::kEstimate;
  if (p.op_overhead_us) out.host.dispatch = {*p.op_overhead_us * kUs, src};
  if (p.gpu_op_overhead_us) {
    for (auto& g : out.gpus) g.dispatch = {*p.gpu_op_overhead_us * kUs, src};
  }
  if (p.offload_tensor_overhead_us) out.offload_tensor_overhead = {*p.offload_tensor_overhead_us * kUs, src};
  if (p.step_overhead_us) out.step_overhead = {*p.step_overhead_us * kUs, src};
  // Every dtype the host has a rate for, or the profile an efficiency for.
  std::vector<DType> dtypes;
  for (const auto& [d, c] : base.host.flops) dtypes.push_back(d);
  for (const auto* m : {&p.matvec_efficiency, &p.matmul_efficiency}) {
    for (const auto& [d, e] : *m) {
      if (std::find(dtypes.begin(), dtypes.end(), d) == dtypes.end()) dtypes.push_back(d);
    }
  }
  for (DType d : dtypes) {
    const RateCurve& c = base.host.flops_for(d);
    RateCurve scaled;
    scaled.source = src;
    // A one-row product streams its weights: its rate is the lesser of the curve's and the
    // memory bandwidth's (2 FLOPs per weight element), so that the efficiency slows it even
    // where the curve is a datasheet peak far above what memory feeds.
    const double stream_flops =
        2.0 * base.host.memory_bandwidth.value * 8.0 / static_cast<double>(torch_bits_per_element(d));
    // The runtime's own streaming rate where measured (its kernels, not dmap's curve).
    const auto own = p.matvec_gbs.find(d);
    const double own_flops = own == p.matvec_gbs.end()
                                 ? 0.0
                                 : 2.0 * own->second * 1e9 * 8.0 / static_cast<double>(torch_bits_per_element(d));
    auto rate = [&](double m, double v) {
      if (m < 2 && own_flops > 0) return own_flops * p.matvec_for(d);
      return m < 2 ? std::min(v, stream_flops) * p.matvec_for(d) : v * p.matmul_for(d);
    };
    for (const auto& [m, v] : c.points) scaled.points.push_back({m, rate(m, v)});
    // A curve without a point from M = 2 on (one rate for every M) gets one: the two
    // efficiencies differ.
    if (scaled.points.back().first < 2) scaled.points.push_back({2.0, c.points.back().second * p.matmul_for(d)});
    out.host.flops[d] = scaled;
  }
  for (const auto& [d, ns] : p.matvec_row_ns) out.host.matvec_row[d] = {ns * 1e-9, src};
  // The runtime's own reads of disk-offloaded weights: in decode its copies (RuntimeProfile), in a
  // cold prefill factors on the executor's disk rate.
  if (p.offload_copy_gbs && p.fresh_page_us) {
    Rates::TorchOffload t;
    t.copy = {*p.offload_copy_gbs * 1e9, src};
    t.fresh_page = {*p.fresh_page_us * kUs, src};
    t.mapped_page = {p.mapped_page_us.value_or(*p.fresh_page_us) * kUs, src};
    if (p.heap_fresh_share) t.heap_fresh = {*p.heap_fresh_share, src};
    t.copy_scale = p.offload_copy_scale;
    t.cold_scale = p.offload_cold_scale;
    out.torch_offload = t;
  }
  return out;
}

}  // namespace dmap::sim
