// The calibration's guard against other processes' load (see load_guard.h).
#include "profile/load_guard.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"

namespace dmap::profile {

LoadGuard::LoadGuard(LoadGuardSettings s, Watch start) : s_(s), start_(std::move(start)) {
  if (!start_) {
    start_ = [] {
      auto probe = std::make_shared<LoadProbe>();
      return std::function<double()>([probe] { return probe->foreign_cores(); });
    };
  }
}

void LoadGuard::before_try() const {
  if (s_.enabled && s_.quiet.max_wait_s > 0) wait_quiet(s_.quiet);
}

bool LoadGuard::after_try(const std::string& what, double foreign, int attempt) {
  if (!s_.enabled || foreign <= s_.spoiled_cores) {
    max_foreign_ = std::max(max_foreign_, foreign);
    return true;
  }
  if (attempt >= s_.retries) {
    char msg[512];
    std::snprintf(msg, sizeof msg,
                  "other processes kept %.2f cores busy during the %s (more than %.2f), in each of %d tries, so "
                  "nothing was written: a calibration measured beside them would mispredict this machine. Run it "
                  "again when the machine is quiet (top shows what else runs)",
                  foreign, what.c_str(), s_.spoiled_cores, attempt + 1);
    throw RuntimeFailure(std::string("dmap profile: ") + msg);
  }
  ++remeasured_;
  return false;
}

}  // namespace dmap::profile
