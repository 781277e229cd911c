// ReferenceBracket and refer_decode (see reference_bracket.h).
#include "profile/reference_bracket.h"

#include <chrono>
#include <cmath>
#include <thread>

#include "profile/profile.h"

namespace dmap::profile {

ReferenceBracket::ReferenceBracket(double calibration_ms, int threads, int tries, double pause_s)
    : calibration_ms_(calibration_ms), threads_(threads), tries_(tries), pause_s_(pause_s) {}

void ReferenceBracket::open() {
  if (!probed()) return;
  before_ms_ = reference_probe_ms(threads_);
  for (int t = 0; t < tries_ && std::fabs(before_ms_ / calibration_ms_ - 1) > kSteadyBand; ++t) {
    std::this_thread::sleep_for(std::chrono::duration<double>(pause_s_));
    before_ms_ = reference_probe_ms(threads_);
  }
}

void ReferenceBracket::close() {
  if (!probed()) return;
  last_ = (before_ms_ + reference_probe_ms(threads_)) / 2 / calibration_ms_;
  ratios_.push_back(last_);
}

void refer_decode(PlacementRun& r, double ratio) {
  if (!(ratio > 0)) return;
  r.decode_token_s /= ratio;
  for (double& s : r.decode_s) s /= ratio;
  for (exec::ModuleTime& m : r.modules) {
    for (double& s : m.decode_s) s /= ratio;
  }
  for (auto& [name, s] : r.decode_weight_s) s /= ratio;
}

}  // namespace dmap::profile
