// Rates from datasheets and calibrations.
#include "sim/calibration.h"

#include <algorithm>
#include <cmath>

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

double DeviceRates::input_cost(DType d) const {
  auto it = matmul_input.find(d);
  if (it == matmul_input.end()) it = matmul_input.find(DType::kFloat32);
  return it == matmul_input.end() ? 0.0 : it->second.value;
}

const Figure& Rates::page_cache_for(DType d) const {
  auto it = page_cache_read_dtype.find(d);
  return it != page_cache_read_dtype.end() ? it->second : page_cache_read;
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

RateCurve read_curve(const std::string& file, const YAML::Node& n, const std::string& what, double scale) {
  RateCurve c;
  c.source = Source::kCalibrated;
  if (n.IsScalar()) {
    c.points.push_back({1.0, positive(file, n, what) * scale});
    return c;
  }
  if (!n.IsSequence() || n.size() == 0) fail_at(file, n, what + ": expected a rate or a list of [M, rate] points");
  for (const auto& p : n) {
    if (!p.IsSequence() || p.size() != 2) fail_at(file, p, what + ": expected [M, rate]");
    const double m = positive(file, p[0], what + " M");
    const double r = positive(file, p[1], what + " rate");
    if (!c.points.empty() && m <= c.points.back().first) fail_at(file, p[0], what + ": M values must increase");
    c.points.push_back({m, r * scale});
  }
  return c;
}

void apply_flops(const std::string& file, const YAML::Node& n, const std::string& what, double scale,
                 std::map<DType, RateCurve>& out) {
  if (!n.IsMap()) fail_at(file, n, what + ": expected a mapping dtype -> rate");
  for (const auto& kv : n) {
    const std::string d = yaml_string(file, kv.first, "dtype");
    auto dt = parse_dtype(d);
    if (!dt) fail_at(file, kv.first, what + ": unknown dtype '" + d + "'");
    out[*dt] = read_curve(file, kv.second, what + "." + d, scale);
  }
}

// dtype -> non-negative number (a mapping), or one number for every dtype (stored under float32,
// which DeviceRates::row_cost falls back to).
void apply_per_dtype(const std::string& file, const YAML::Node& n, const std::string& what, double scale,
                     std::map<DType, Figure>& out) {
  if (n.IsScalar()) {
    out[DType::kFloat32] = {non_negative(file, n, what) * scale, Source::kCalibrated};
    return;
  }
  if (!n.IsMap()) fail_at(file, n, what + ": expected a number or a mapping dtype -> number");
  for (const auto& kv : n) {
    const std::string d = yaml_string(file, kv.first, "dtype");
    auto dt = parse_dtype(d);
    if (!dt) fail_at(file, kv.first, what + ": unknown dtype '" + d + "'");
    out[*dt] = {non_negative(file, kv.second, what + "." + d) * scale, Source::kCalibrated};
  }
}

void set_figure(const std::string& file, const YAML::Node& map, const char* key, double scale, Figure& out,
                bool allow_zero = false) {
  const YAML::Node n = map[key];
  if (!n.IsDefined()) return;
  out.value = (allow_zero ? non_negative(file, n, key) : positive(file, n, key)) * scale;
  out.source = Source::kCalibrated;
}

void validate(const Calibration& c) {
  const std::string& f = c.file;
  const YAML::Node& root = c.node;
  check_keys(f, root, {"kind", "name", "provenance", "host", "gpus", "link", "disk", "fit"}, "calibration");
  if (!root["kind"].IsDefined() || !root["kind"].IsScalar() || root["kind"].Scalar() != "calibration") {
    fail_at(f, root["kind"], root, "a calibration file needs `kind: calibration`");
  }
  if (root["host"].IsDefined()) {
    check_keys(f, root["host"],
               {"memory_bandwidth_gbs", "page_cache_read_gbs", "dispatch_overhead_us", "offload_tensor_overhead_us",
                "matmul_gflops", "attention_gflops", "attention_overhead_us", "matvec_row_ns", "matmul_input_ns"},
               "host");
  }
  if (root["gpus"].IsDefined()) {
    if (!root["gpus"].IsMap()) fail_at(f, root["gpus"], "gpus: expected a mapping (all | ordinal) -> rates");
    for (const auto& kv : root["gpus"]) {
      const std::string k = yaml_string(f, kv.first, "gpu");
      if (k != "all" && !is_int_literal(k))
        fail_at(f, kv.first, "gpus: key must be 'all' or a GPU ordinal, found '" + k + "'");
      check_keys(
          f, kv.second,
          {"memory_bandwidth_gbs", "launch_overhead_us", "matmul_tflops", "attention_tflops", "attention_overhead_us"},
          "gpus." + k);
    }
  }
  if (root["link"].IsDefined()) {
    check_keys(
        f, root["link"],
        {"h2d_pinned_gbs", "h2d_pageable_gbs", "d2h_pinned_gbs", "d2h_pageable_gbs", "copy_latency_us", "p2p_gbs"},
        "link");
  }
  if (root["disk"].IsDefined()) check_keys(f, root["disk"], {"read_gbs", "read_latency_us"}, "disk");
  // Parse every figure once so errors surface at load time.
  Hardware dummy;
  dummy.host.peak_flops[DType::kFloat32] = {1, Source::kDatasheet};
  dummy.host.memory_bandwidth = {1, Source::kDatasheet};
  GpuSpec g;
  g.peak_flops[DType::kFloat32] = {1, Source::kDatasheet};
  g.memory_bandwidth = {1, Source::kDatasheet};
  dummy.gpus.assign(1, g);
  make_rates(dummy, &c);
}

}  // namespace

Calibration load_calibration(const std::string& path) {
  Calibration c;
  c.file = path;
  c.node = load_yaml_file(path);
  if (!c.node.IsMap()) fail_at(path, c.node, "a calibration must be a mapping");
  if (c.node["name"].IsDefined() && c.node["name"].IsScalar()) c.name = c.node["name"].Scalar();
  validate(c);
  return c;
}

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

  const std::string& f = cal->file;
  const YAML::Node& root = cal->node;
  r.calibration_name = cal->name.empty() ? f : cal->name;
  if (const YAML::Node h = root["host"]; h.IsDefined()) {
    set_figure(f, h, "memory_bandwidth_gbs", kGB, r.host.memory_bandwidth);
    set_figure(f, h, "dispatch_overhead_us", kUs, r.host.dispatch, true);
    set_figure(f, h, "offload_tensor_overhead_us", kUs, r.offload_tensor_overhead, true);
    if (const YAML::Node pc = h["page_cache_read_gbs"]; pc.IsDefined() && pc.IsMap()) {
      apply_per_dtype(f, pc, "host.page_cache_read_gbs", kGB, r.page_cache_read_dtype);
      for (const auto& [d, fig] : r.page_cache_read_dtype) {
        if (!(fig.value > 0)) fail_at(f, pc, "host.page_cache_read_gbs: every rate must be positive");
      }
      // Other dtypes: the slowest given (a conservative guess).
      r.page_cache_read = r.page_cache_read_dtype.begin()->second;
      for (const auto& [d, fig] : r.page_cache_read_dtype) {
        if (fig.value < r.page_cache_read.value) r.page_cache_read = fig;
      }
    } else if (pc.IsDefined()) {
      set_figure(f, h, "page_cache_read_gbs", kGB, r.page_cache_read);
    } else if (h["memory_bandwidth_gbs"].IsDefined()) {
      r.page_cache_read = {r.host.memory_bandwidth.value / 2, Source::kCalibrated};
    }
    if (h["matmul_gflops"].IsDefined()) apply_flops(f, h["matmul_gflops"], "host.matmul_gflops", 1e9, r.host.flops);
    if (h["attention_gflops"].IsDefined()) {
      apply_flops(f, h["attention_gflops"], "host.attention_gflops", 1e9, r.host.attention_flops);
    }
    set_figure(f, h, "attention_overhead_us", kUs, r.host.attention_overhead, true);
    if (h["matvec_row_ns"].IsDefined())
      apply_per_dtype(f, h["matvec_row_ns"], "host.matvec_row_ns", 1e-9, r.host.matvec_row);
    if (h["matmul_input_ns"].IsDefined()) {
      apply_per_dtype(f, h["matmul_input_ns"], "host.matmul_input_ns", 1e-9, r.host.matmul_input);
    }
  }
  if (const YAML::Node gs = root["gpus"]; gs.IsDefined()) {
    auto apply_gpu = [&](const YAML::Node& g, DeviceRates& d) {
      set_figure(f, g, "memory_bandwidth_gbs", kGB, d.memory_bandwidth);
      set_figure(f, g, "launch_overhead_us", kUs, d.dispatch, true);
      if (g["matmul_tflops"].IsDefined()) apply_flops(f, g["matmul_tflops"], "gpus.matmul_tflops", 1e12, d.flops);
      if (g["attention_tflops"].IsDefined()) {
        apply_flops(f, g["attention_tflops"], "gpus.attention_tflops", 1e12, d.attention_flops);
      }
      set_figure(f, g, "attention_overhead_us", kUs, d.attention_overhead, true);
    };
    if (gs["all"].IsDefined()) {
      for (auto& d : r.gpus) apply_gpu(gs["all"], d);
    }
    for (const auto& kv : gs) {
      const std::string k = kv.first.Scalar();
      if (k == "all") continue;
      const int64_t idx = yaml_int(f, kv.first, "gpu ordinal");
      if (idx < 0 || idx >= static_cast<int64_t>(r.gpus.size())) continue;  // calibration of a GPU this scenario lacks
      apply_gpu(kv.second, r.gpus[idx]);
    }
  }
  if (const YAML::Node l = root["link"]; l.IsDefined()) {
    set_figure(f, l, "h2d_pinned_gbs", kGB, r.h2d_pinned);
    set_figure(f, l, "h2d_pageable_gbs", kGB, r.h2d_pageable);
    set_figure(f, l, "d2h_pinned_gbs", kGB, r.d2h_pinned);
    set_figure(f, l, "d2h_pageable_gbs", kGB, r.d2h_pageable);
    set_figure(f, l, "copy_latency_us", kUs, r.copy_latency, true);
    if (l["p2p_gbs"].IsDefined()) {
      const double bw = positive(f, l["p2p_gbs"], "p2p_gbs") * kGB;
      for (auto& row : r.p2p) std::fill(row.begin(), row.end(), bw);
    }
  }
  if (const YAML::Node d = root["disk"]; d.IsDefined()) {
    set_figure(f, d, "read_gbs", kGB, r.disk_read);
    set_figure(f, d, "read_latency_us", kUs, r.disk_latency, true);
  }
  return r;
}

}  // namespace dmap::sim
