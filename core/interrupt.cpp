// Removal of scratch and temporary outputs on SIGINT/SIGTERM (see interrupt.h).
#include "core/interrupt.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

namespace dmap {

namespace {

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}

std::vector<std::string>& registry() {
  static std::vector<std::string> paths;
  return paths;
}

}  // namespace

void install_interrupt_cleanup() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) return;  // then the default action stays
  std::thread([set] {
    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    {
      std::lock_guard<std::mutex> lock(registry_mutex());
      for (const std::string& p : registry()) {
        std::error_code ec;
        std::filesystem::remove_all(p, ec);
      }
    }
    std::_Exit(128 + sig);
  }).detach();
}

RemoveOnInterrupt::RemoveOnInterrupt(std::string path) : path_(std::move(path)) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry().push_back(path_);
}

RemoveOnInterrupt::~RemoveOnInterrupt() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto& r = registry();
  const auto it = std::find(r.rbegin(), r.rend(), path_);
  if (it != r.rend()) r.erase(std::next(it).base());
}

}  // namespace dmap
