// Is the machine quiet enough to time on? Measurements on a shared machine are only worth
// something when no other process competes for the cores and the memory bus, so the profiler
// waits for quiet before each measurement and, afterwards, checks how much CPU time other
// processes took while it ran.
//
// Data flow: /proc/stat (all CPUs' busy jiffies) - getrusage(RUSAGE_SELF + RUSAGE_CHILDREN) (this
//            process, every thread, and the children it waited for: a runtime probe's python3)
//            over an interval --> foreign load in cores
//
// Example:
//   wait_quiet({});                    // blocks until others use < 0.05 cores (or gives up)
//   LoadProbe probe;                   // ... measure ...
//   if (probe.foreign_cores() > 0.15) { /* spoiled: measure again */ }
#pragma once

#include <chrono>

namespace dmap::profile {

// CPU time used on the whole machine and by this process since construction.
class LoadProbe {
 public:
  LoadProbe();
  // Cores other processes kept busy, on average, since construction (>= 0; 0 where /proc/stat
  // cannot be read).
  double foreign_cores() const;
  double elapsed_s() const;

 private:
  double machine_busy_s_ = 0, self_s_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

struct QuietSettings {
  double threshold_cores = 0.05;  // others' load below which a window counts as quiet
  double window_s = 1.0;
  int windows = 2;         // consecutive quiet windows wanted
  double max_wait_s = 60;  // then give up and go on (the caller records the load)
};

struct QuietResult {
  bool quiet = false;
  double load_cores = 0;  // of the last window
  double waited_s = 0;
};

// Blocks until other processes' load stays under the threshold for `windows` windows, or
// `max_wait_s` passed. Never throws.
QuietResult wait_quiet(const QuietSettings& s);

}  // namespace dmap::profile
