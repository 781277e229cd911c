// A placement run's module times as Chrome trace events (internal to profile/): the measured
// timeline of a whole-model run, and beside it the simulator's predicted one (validation).
#pragma once

#include <string>

#include "profile/profile.h"
#include "trace/trace.h"

namespace dmap::profile {

// Traces keep the prefill and the first decode steps: enough to see every module in both
// phases, small enough to commit (a whole run of a 24-layer model is ~0.7 MB of JSON).
constexpr int kTraceDecodeSteps = 2;

void add_run_to_trace(Trace& t, int pid, const std::string& label, const PlacementRun& r);

// The first case's measured timeline, and the predicted one as the simulator lays it out (each
// op on the device it executes on, disk reads and copies on their own lanes), placed at the
// measured phase starts.
void add_predicted_and_measured_trace(Trace& trace, const ValidationCase& c, const PlacementRun& r,
                                      const sim::Hardware& hw, const sim::Calibration& cal, const RunSettings& rs);

}  // namespace dmap::profile
