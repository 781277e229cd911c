// Interruption: SIGINT or SIGTERM removes what the process was writing — scratch folders,
// temporary files, staged report folders — and exits 130 (SIGINT) or 143 (SIGTERM). The
// signals are blocked in every thread and taken by one watcher thread (sigwait), so the
// removal runs in ordinary code, not in a signal handler.
//
// Example:
//   install_interrupt_cleanup();                 // main(), before any other thread starts
//   RemoveOnInterrupt guard(scratch_dir);        // while `guard` lives, an interrupt removes it
#pragma once

#include <string>

namespace dmap {

void install_interrupt_cleanup();

// Registers `path` (a file or a folder) for removal on interrupt while this object lives.
class RemoveOnInterrupt {
 public:
  explicit RemoveOnInterrupt(std::string path);
  ~RemoveOnInterrupt();
  RemoveOnInterrupt(const RemoveOnInterrupt&) = delete;
  RemoveOnInterrupt& operator=(const RemoveOnInterrupt&) = delete;

 private:
  std::string path_;
};

}  // namespace dmap
