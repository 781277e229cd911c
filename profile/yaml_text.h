// Numbers and rate curves as the calibration YAML writes them (shared by the CPU and GPU
// profilers).
//
// Example:
//   y << "memory_bandwidth_gbs: " << fmt(bw / 1e9) << "\n";          // 4 significant digits
//   y << "float32: " << curve_yaml({{1, 15.9}, {16, 77}}) << "\n";    // [[1, 15.9], [16, 77]]
#pragma once

#include <iomanip>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace dmap::profile {

inline std::string fmt(double v, int digits = 4) {
  std::ostringstream o;
  o << std::setprecision(digits) << v;
  return o.str();
}

// [[x, y], ...] in flow style: x to 6 significant digits, y to 5.
inline std::string curve_yaml(const std::vector<std::pair<double, double>>& pts) {
  std::string s = "[";
  for (size_t i = 0; i < pts.size(); ++i) {
    s.append(i ? ", " : "")
        .append("[")
        .append(fmt(pts[i].first, 6))
        .append(", ")
        .append(fmt(pts[i].second, 5))
        .append("]");
  }
  return s + "]";
}

}  // namespace dmap::profile
