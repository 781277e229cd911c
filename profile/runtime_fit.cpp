#include "profile/runtime_fit.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "core/error.h"
#include "exec/config.h"
#include "exec/exec_dtype.h"
#include "profile/fit.h"

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

std::vector<std::pair<int64_t, int64_t>> matvec_shapes(const ModelSpec& spec) {
  const exec::ExecConfig c = exec::exec_config(spec);
  const int64_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  std::vector<std::pair<int64_t, int64_t>> v = {{q, c.hidden},       {kv, c.hidden},      {c.hidden, q},
                                                {c.inter, c.hidden}, {c.hidden, c.inter}, {c.vocab, c.hidden}};
  for (int64_t k : {512, 896, 1024, 4096}) v.push_back({4096, k});
  for (int64_t n : {1024, 2048, 4096, 8192, 16384}) v.push_back({n, (int64_t{8} << 20) / n});
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& s : v) {
    if (s.first > 0 && s.second > 0 && std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

MatvecTerms fit_matvec_terms(const std::vector<MatvecSample>& samples, DType dtype) {
  DMAP_CHECK(samples.size() >= 3, "a one-row product fit needs three shapes");
  const double elt = static_cast<double>(exec::elt_size(dtype));
  std::vector<double> xb, xr, ts;
  for (const auto& m : samples) {
    xb.push_back(static_cast<double>(m.n) * static_cast<double>(m.k) * elt);
    xr.push_back(static_cast<double>(m.n));
    ts.push_back(m.seconds);
  }
  const StreamFit sf = fit_stream(xb, xr, ts);
  MatvecTerms t;
  t.samples = static_cast<int>(ts.size());
  t.gbs = (sf.stream.slope > 0 ? 1.0 / sf.stream.slope : xb.back() / ts.back()) / 1e9;
  t.row_ns = sf.row_cost * 1e9;
  t.intercept_us = sf.stream.intercept * 1e6;
  t.median_abs_residual = sf.stream.fit.median_abs_residual;
  t.max_abs_residual = sf.stream.fit.max_abs_residual;
  return t;
}

YAML::Node matvec_terms_node(const MatvecTerms& t) {
  YAML::Node mv;
  mv["samples"] = t.samples;
  mv["gbs"] = round4(t.gbs);
  mv["row_ns"] = round4(t.row_ns);
  mv["intercept_us"] = round4(t.intercept_us);
  mv["median_abs_residual"] = round4(t.median_abs_residual);
  mv["max_abs_residual"] = round4(t.max_abs_residual);
  return mv;
}

std::string matvec_terms_text(const MatvecTerms& t) {
  std::ostringstream s;
  s << std::setprecision(3) << t.gbs << " GB/s + " << t.row_ns << " ns per row over " << t.samples
    << " shapes (median residual " << t.median_abs_residual * 100 << " %)";
  return s.str();
}

}  // namespace dmap::profile
