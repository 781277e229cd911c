// Other processes' load on this machine (see quiet.h): /proc/stat and this process's own CPU time
// sampled over a window, and the wait for a quiet machine before measuring.
#include "profile/quiet.h"

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace dmap::profile {

namespace {

// Seconds of CPU time all CPUs spent busy (user, nice, system, irq, softirq, steal), as
// ../shared/bench/wait_quiet.py counts them; -1 where /proc/stat is unreadable.
double machine_busy_s() {
  std::ifstream in("/proc/stat");
  std::string line;
  if (!std::getline(in, line) || line.rfind("cpu ", 0) != 0) return -1;
  std::istringstream s(line.substr(4));
  long long v[8] = {};
  for (auto& x : v) {
    if (!(s >> x)) return -1;
  }
  const long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
  return static_cast<double>(busy) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// This process and its children that ended and were waited for (the runtime probes' python3).
double self_cpu_s() {
  rusage u{}, c{};
  getrusage(RUSAGE_SELF, &u);
  getrusage(RUSAGE_CHILDREN, &c);
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return sec(u.ru_utime) + sec(u.ru_stime) + sec(c.ru_utime) + sec(c.ru_stime);
}

}  // namespace

LoadProbe::LoadProbe()
    : machine_busy_s_(machine_busy_s()), self_s_(self_cpu_s()), t0_(std::chrono::steady_clock::now()) {}

double LoadProbe::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

double LoadProbe::foreign_cores() const {
  const double busy = machine_busy_s();
  const double dt = elapsed_s();
  if (busy < 0 || machine_busy_s_ < 0 || dt <= 0) return 0;
  // Jiffies are coarse (10 ms): a short interval can read slightly negative.
  const double foreign = (busy - machine_busy_s_) - (self_cpu_s() - self_s_);
  return foreign > 0 ? foreign / dt : 0;
}

QuietResult wait_quiet(const QuietSettings& s) {
  QuietResult r;
  const auto t0 = std::chrono::steady_clock::now();
  int ok = 0;
  for (;;) {
    LoadProbe p;
    std::this_thread::sleep_for(std::chrono::duration<double>(s.window_s));
    r.load_cores = p.foreign_cores();
    r.waited_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ok = r.load_cores < s.threshold_cores ? ok + 1 : 0;
    if (ok >= s.windows) {
      r.quiet = true;
      return r;
    }
    if (r.waited_s > s.max_wait_s) return r;
  }
}

}  // namespace dmap::profile
