// Robust least squares (see fit.h): Huber-weighted fits on relative residuals through Eigen's QR,
// the line fits of bandwidth and latency (medians: core/stats.h).
#include "profile/fit.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dmap::profile {

RobustFit robust_fit(const Eigen::MatrixXd& A, const Eigen::VectorXd& y) {
  const Eigen::Index n = A.rows(), p = A.cols();
  DMAP_CHECK(n == y.size() && n >= p && p > 0, "robust_fit: need at least as many samples as parameters");
  for (Eigen::Index i = 0; i < n; ++i) DMAP_CHECK(y(i) > 0, "robust_fit: times must be positive");
  constexpr double kHuber = 1.345;  // 95 % efficiency at the normal
  Eigen::VectorXd w = Eigen::VectorXd::Ones(n);
  RobustFit r;
  double scale = 0;
  for (int iter = 0; iter < 50; ++iter) {
    // Rows scaled by sqrt(w) / y: least squares on relative residuals.
    Eigen::MatrixXd As = A;
    Eigen::VectorXd ys = y;
    for (Eigen::Index i = 0; i < n; ++i) {
      const double s = std::sqrt(w(i)) / y(i);
      As.row(i) *= s;
      ys(i) *= s;
    }
    const Eigen::VectorXd c = As.colPivHouseholderQr().solve(ys);
    const Eigen::VectorXd rel = ((A * c) - y).cwiseQuotient(y);
    std::vector<double> abs_rel(static_cast<size_t>(n));
    for (Eigen::Index i = 0; i < n; ++i) abs_rel[static_cast<size_t>(i)] = std::fabs(rel(i));
    // Robust scale, floored so that a near-perfect fit does not call ordinary noise an outlier.
    scale = std::max(1.4826 * median(abs_rel), 1e-3);
    Eigen::VectorXd nw(n);
    for (Eigen::Index i = 0; i < n; ++i) {
      const double u = std::fabs(rel(i)) / scale;
      nw(i) = u <= kHuber ? 1.0 : kHuber / u;
    }
    const bool done = iter > 0 && (c - r.coef).norm() <= 1e-10 * std::max(1.0, c.norm());
    r.coef = c;
    w = nw;
    if (done) break;
  }
  const Eigen::VectorXd rel = ((A * r.coef) - y).cwiseQuotient(y);
  r.residuals.assign(rel.data(), rel.data() + n);
  std::vector<double> abs_rel;
  for (double v : r.residuals) abs_rel.push_back(std::fabs(v));
  r.median_abs_residual = median(abs_rel);
  r.max_abs_residual = *std::max_element(abs_rel.begin(), abs_rel.end());
  for (Eigen::Index i = 0; i < n; ++i) r.downweighted += w(i) < 1.0 ? 1 : 0;
  return r;
}

LineFit fit_line(const std::vector<double>& x, const std::vector<double>& y) {
  DMAP_CHECK(x.size() == y.size(), "fit_line: sizes differ");
  Eigen::MatrixXd A(static_cast<Eigen::Index>(x.size()), 2);
  Eigen::VectorXd b(static_cast<Eigen::Index>(y.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    A(static_cast<Eigen::Index>(i), 0) = 1.0;
    A(static_cast<Eigen::Index>(i), 1) = x[i];
    b(static_cast<Eigen::Index>(i)) = y[i];
  }
  LineFit f;
  f.fit = robust_fit(A, b);
  f.intercept = f.fit.coef(0);
  f.slope = f.fit.coef(1);
  return f;
}

StreamFit fit_stream(const std::vector<double>& bytes, const std::vector<double>& rows,
                     const std::vector<double>& seconds) {
  DMAP_CHECK(bytes.size() == seconds.size() && rows.size() == seconds.size(), "fit_stream: sizes differ");
  Eigen::MatrixXd A(static_cast<Eigen::Index>(seconds.size()), 3);
  Eigen::VectorXd y(static_cast<Eigen::Index>(seconds.size()));
  for (size_t i = 0; i < seconds.size(); ++i) {
    const auto r = static_cast<Eigen::Index>(i);
    A(r, 0) = 1;
    A(r, 1) = bytes[i];
    A(r, 2) = rows[i];
    y(r) = seconds[i];
  }
  StreamFit out;
  const RobustFit f = robust_fit(A, y);
  if (f.coef(1) > 0 && f.coef(2) >= 0) {
    out.stream.intercept = f.coef(0);
    out.stream.slope = f.coef(1);
    out.stream.fit = f;
    out.row_cost = f.coef(2);
  } else {
    out.stream = fit_line(bytes, seconds);  // no per-row cost to be seen
  }
  return out;
}

LineFit fit_proportional(const std::vector<double>& x, const std::vector<double>& y) {
  DMAP_CHECK(x.size() == y.size(), "fit_proportional: sizes differ");
  Eigen::MatrixXd A(static_cast<Eigen::Index>(x.size()), 1);
  Eigen::VectorXd b(static_cast<Eigen::Index>(y.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    A(static_cast<Eigen::Index>(i), 0) = x[i];
    b(static_cast<Eigen::Index>(i)) = y[i];
  }
  LineFit f;
  f.fit = robust_fit(A, b);
  f.slope = f.fit.coef(0);
  return f;
}

ProductFit fit_products(const std::vector<ProductSample>& samples) {
  DMAP_CHECK(samples.size() >= 2, "fit_products needs at least two products");
  const auto n = static_cast<Eigen::Index>(samples.size());
  Eigen::MatrixXd A(n, 2);
  Eigen::VectorXd y(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const ProductSample& s = samples[static_cast<size_t>(i)];
    A(i, 0) = 2.0 * s.m * s.n * s.k;
    A(i, 1) = s.m * s.k;
    y(i) = s.seconds;
  }
  ProductFit f;
  f.fit = robust_fit(A, y);
  if (f.fit.coef(0) > 0 && f.fit.coef(1) >= 0) {
    f.rate = 1.0 / f.fit.coef(0);
    f.input_cost = f.fit.coef(1);
  } else {
    // No per-element cost to be seen (or noise made it negative): the rate alone.
    std::vector<double> flops, secs;
    for (const auto& s : samples) {
      flops.push_back(2.0 * s.m * s.n * s.k);
      secs.push_back(s.seconds);
    }
    const LineFit p = fit_proportional(flops, secs);
    f.fit = p.fit;
    f.rate = p.slope > 0 ? 1.0 / p.slope : 0.0;
  }
  return f;
}

}  // namespace dmap::profile
