// The calibration's check of itself (see profile.h: SelfCheckRow, check_self).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "core/stats.h"
#include "profile/profile.h"

namespace dmap::profile {

double SelfCheckRow::worst_error() const {
  return std::max(prefill_checked ? std::fabs(predicted_prefill_s / measured_prefill_s - 1) : 0.0,
                  decode_checked ? std::fabs(predicted_decode_s * state_ratio / measured_decode_s - 1) : 0.0);
}

double disk_state_ratio(double disk_decode_s, double cpu_decode_s, const std::vector<double>& pair_extras_s) {
  if (pair_extras_s.empty() || !(disk_decode_s > 0)) return 1;
  const double at_cpu_state = cpu_decode_s + median(pair_extras_s);
  return at_cpu_state > 0 ? disk_decode_s / at_cpu_state : 1;
}

SelfCheckVerdict check_self(const std::vector<SelfCheckRow>& rows, double limit) {
  SelfCheckVerdict v;
  v.text =
      "the calibration's own whole-model runs, predicted (limit: " + std::to_string(static_cast<int>(limit * 100)) +
      " % in either phase):\n";
  int width = 20;  // the placement column
  for (const auto& s : rows) width = std::max(width, static_cast<int>(s.placement.size()));
  for (const auto& s : rows) {
    v.worst = std::max(v.worst, s.worst_error());
    char state[96] = "";
    if (s.state_ratio != 1) {
      std::snprintf(state, sizeof state, " (%.2f at the CPU-only runs' machine state: / %.3f)",
                    s.measured_decode_s / s.state_ratio * 1e3, s.state_ratio);
    }
    char line[480];
    std::snprintf(line, sizeof line,
                  "  %-9s %-*s prefill %8.1f ms measured, %8.1f predicted (%+5.1f %%%s); decode %7.2f "
                  "ms/token measured%s, %7.2f predicted (%+5.1f %%%s)%s\n",
                  std::string(dtype_name(s.dtype)).c_str(), width, s.placement.c_str(), s.measured_prefill_s * 1e3,
                  s.predicted_prefill_s * 1e3, (s.predicted_prefill_s / s.measured_prefill_s - 1) * 100,
                  s.prefill_checked ? "" : ", not checked", s.measured_decode_s * 1e3, state,
                  s.predicted_decode_s * 1e3, (s.predicted_decode_s * s.state_ratio / s.measured_decode_s - 1) * 100,
                  s.decode_checked ? "" : ", not checked", s.worst_error() > limit ? "  <- off" : "");
    v.text += line;
  }
  v.passed = !rows.empty() && v.worst <= limit;
  return v;
}

}  // namespace dmap::profile
