// What the runtimes' fits share (profile/runtime_probe.h for transformers, profile/llama_fit.h
// for llama.cpp): the operator count of a decode step as the cost model charges it, and the
// efficiency that makes a predicted phase match its measured time.
#pragma once

#include <functional>

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

}  // namespace dmap::profile
