#include "profile/runtime_fit.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "core/error.h"

namespace dmap::profile {

double operators_per_step(sim::RuntimeProfile& p, const std::function<double()>& decode_step) {
  p.op_overhead_us = 0.0;
  p.step_overhead_us = 0.0;
  const double t0 = decode_step();
  p.op_overhead_us = 1.0;
  const double t1 = decode_step();
  p.op_overhead_us = 0.0;
  const double n = (t1 - t0) / 1e-6;
  DMAP_CHECK(n > 0, "a decode step without operators");
  return n;
}

void solve_efficiency(double& e, const std::function<double()>& predicted, double measured) {
  double lo = std::log(0.01), hi = std::log(10.0);
  for (int it = 0; it < 50; ++it) {
    const double mid = (lo + hi) / 2;
    e = std::exp(mid);
    (predicted() > measured ? lo : hi) = mid;  // too slow: more efficiency
  }
  e = std::exp((lo + hi) / 2);
}

double round4(double x) {
  std::ostringstream o;
  o << std::setprecision(4) << x;
  return std::stod(o.str());
}

}  // namespace dmap::profile
