#include "profile/subprocess.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <string_view>

extern char** environ;

namespace dmap::profile {

int run_command(const std::vector<std::string>& argv, bool quiet, const std::vector<std::string>& env) {
  std::vector<char*> args;
  for (const auto& s : argv) args.push_back(const_cast<char*>(s.c_str()));
  args.push_back(nullptr);
  // The child's environment, built before fork (nothing but async-signal-safe calls after it): ours,
  // less the names `env` sets, then `env`.
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e) {
    const std::string_view v(*e);
    const bool replaced = std::any_of(env.begin(), env.end(), [&](const std::string& s) {
      const size_t eq = s.find('=');
      return v.size() > eq && v.substr(0, eq + 1) == std::string_view(s).substr(0, eq + 1);
    });
    if (!replaced) envp.push_back(*e);
  }
  for (const auto& s : env) envp.push_back(const_cast<char*>(s.c_str()));
  envp.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    // The probe ends with the profiler: a killed validation leaves no python3 streaming memory
    // under the next measurement (found: one kept a core busy for minutes).
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    if (quiet) {
      const int null = ::open("/dev/null", O_WRONLY);
      if (null >= 0) {
        ::dup2(null, 1);
        ::dup2(null, 2);
      }
    } else {
      ::dup2(2, 1);  // the probe's own output goes to our standard error, never our data
    }
    ::execvpe(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace dmap::profile
