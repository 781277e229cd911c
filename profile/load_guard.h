// The calibration's guard against other processes: every measurement of `dmap profile --real`
// (each dtype's micro-benchmarks, the disk probe, each whole-model run, the dispatch probe) runs
// after waiting for a quiet machine, with a LoadProbe watching; one during which other processes
// kept more than `spoiled_cores` busy is measured again, and refused when the last try is still
// spoiled: a calibration fitted while another process held a core predicted its own whole-model
// runs 2.2x too slow (issue 19), and the self-check alone would not say why.
//
// Data flow: wait_quiet --> measure() under a LoadProbe --> foreign cores
//              > spoiled_cores: again (up to `retries`), then RuntimeFailure naming the measurement
//
// Example:
//   LoadGuard guard(opt.guard);
//   PlacementRun r = guard.run("whole-model run float32 cpu-only", [&] { return run_placement(...); });
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "profile/quiet.h"

namespace dmap::profile {

struct LoadGuardSettings {
  bool enabled = true;
  QuietSettings quiet;          // waited for before every try (max_wait_s 0: do not wait)
  double spoiled_cores = 0.15;  // others' load during a try that spoils it
  int retries = 2;
};

class LoadGuard {
 public:
  // `start` begins watching the load and returns what reads the foreign cores since (LoadProbe by
  // default; tests give synthetic loads).
  using Watch = std::function<std::function<double()>()>;
  explicit LoadGuard(LoadGuardSettings s, Watch start = {});

  template <class F>
  auto run(const std::string& what, F&& measure) {
    for (int attempt = 0;; ++attempt) {
      before_try();
      const std::function<double()> load = start_();
      auto result = measure();
      if (after_try(what, load(), attempt)) return result;
    }
  }

  int remeasured() const { return remeasured_; }
  double max_foreign_cores() const { return max_foreign_; }  // the most during a kept try
  const LoadGuardSettings& settings() const { return s_; }

 private:
  void before_try() const;
  // True to keep the try; false to measure again; throws RuntimeFailure past the retries.
  bool after_try(const std::string& what, double foreign, int attempt);

  LoadGuardSettings s_;
  Watch start_;
  int remeasured_ = 0;
  double max_foreign_ = 0;
};

}  // namespace dmap::profile
