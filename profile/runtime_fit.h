// What the runtimes' fits share (profile/runtime_probe.h for transformers, profile/llama_fit.h
// for llama.cpp): the operator count of a decode step as the cost model charges it, the
// efficiency that makes a predicted phase match its measured time, and the runtime's own one-row
// product terms fitted over a grid of shapes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "core/dtype.h"
#include "core/model_spec.h"
#include "sim/runtime.h"

namespace dmap::profile {

// The operators one decode step charges per-operator overhead for: what 1 us per operator adds
// to `decode_step()` (which predicts with `p`). Leaves p.op_overhead_us at 0 and
// p.step_overhead_us at 0. InternalError when the step has no operators.
double operators_per_step(sim::RuntimeProfile& p, const std::function<double()>& decode_step);

// Sets `e` so that predicted() == measured. A phase's predicted time falls as its efficiency
// rises, so e is found by bisection in log space over [0.01, 10] (overhead can dominate a small
// model's step, where a fixed-point iteration would crawl); solve the one-row efficiency (decode)
// before the M >= 2 one (the prefill depends on both).
void solve_efficiency(double& e, const std::function<double()>& predicted, double measured);

// `x` to 4 significant digits, as the fits write their figures into a calibration.
double round4(double x);

// The grid of one-row product shapes (N output rows, K row length) a runtime's profile times: the
// model's own products, then rows of other lengths and one weight count as many row counts.
std::vector<std::pair<int64_t, int64_t>> matvec_shapes(const ModelSpec& spec);

// One timed one-row product: an N x K weight times one row, seconds per product (weights streamed
// from memory, not the caches).
struct MatvecSample {
  int64_t n = 0, k = 0;
  double seconds = 0;
};

// time = intercept + bytes / bandwidth + rows x row_cost over the samples (robust; no per-row
// cost where the fit finds none).
struct MatvecTerms {
  double gbs = 0, row_ns = 0, intercept_us = 0;
  double median_abs_residual = 0, max_abs_residual = 0;
  int samples = 0;
};
MatvecTerms fit_matvec_terms(const std::vector<MatvecSample>& samples, DType dtype);
// The terms as the calibration's fit block records them (samples, gbs, row_ns, intercept_us,
// median and max residual).
YAML::Node matvec_terms_node(const MatvecTerms& t);
// As the fits' summaries print them: "48.2 GB/s + 6.06 ns per row over 14 shapes (median residual 2.84 %)".
std::string matvec_terms_text(const MatvecTerms& t);

}  // namespace dmap::profile
