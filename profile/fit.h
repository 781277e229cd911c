// Robust least squares for the calibration: the cost model's parameters are fitted from timed
// measurements, some of which a shared machine spoils (a page fault, a preempted thread). Times
// span orders of magnitude, so residuals are relative ((measured - fitted) / measured) and the
// fit minimises Huber's loss of them by iteratively reweighted least squares (Eigen QR).
//
// Data flow: samples (features a_i, time y_i) --robust_fit--> coefficients + relative residuals
//
// Example (a copy: t = latency + bytes / bandwidth):
//   LineFit f = fit_line(bytes, seconds);
//   double bandwidth = 1.0 / f.slope, latency = f.intercept;
#pragma once

#include <Eigen/Dense>

#include <vector>

#include "core/stats.h"

namespace dmap::profile {

struct RobustFit {
  Eigen::VectorXd coef;
  std::vector<double> residuals;  // relative, per sample
  double median_abs_residual = 0;
  double max_abs_residual = 0;
  int downweighted = 0;  // samples the Huber weights treated as outliers at the end
};

// Minimises sum_i huber(((A c)_i - y_i) / y_i / s), s a robust scale (1.4826 MAD) of the
// relative residuals; y must be positive. Needs rows >= cols.
RobustFit robust_fit(const Eigen::MatrixXd& A, const Eigen::VectorXd& y);

struct LineFit {
  double intercept = 0, slope = 0;
  RobustFit fit;
};
// y = intercept + slope x.
LineFit fit_line(const std::vector<double>& x, const std::vector<double>& y);
// y = slope x (no intercept).
LineFit fit_proportional(const std::vector<double>& x, const std::vector<double>& y);

// One-row products (decode): t = intercept + bytes / bandwidth + rows x row_cost, robust. Where
// the fit finds no per-row cost (or a negative one), a line in the bytes alone (row_cost 0).
struct StreamFit {
  LineFit stream;       // intercept and seconds per byte (slope)
  double row_cost = 0;  // seconds per output row
};
StreamFit fit_stream(const std::vector<double>& bytes, const std::vector<double>& rows,
                     const std::vector<double>& seconds);

// Products with M >= 2 rows (prefill): t = 2 M N K / rate + M K x input_cost. The second term
// is the work per activation element (converting and packing the M x K input), which no rate
// can express: measured on the 2-vCPU VM, a 128 x 896 product at M = 64 ran at 86 GFLOP/s in
// float32 against 310 for 5632 x 2048.
struct ProductSample {
  double m = 0, n = 0, k = 0, seconds = 0;
};
struct ProductFit {
  double rate = 0;        // FLOP/s
  double input_cost = 0;  // seconds per input element (M x K); 0 when the fit finds none
  RobustFit fit;
};
ProductFit fit_products(const std::vector<ProductSample>& samples);

// median and percentile: core/stats.h.

}  // namespace dmap::profile
