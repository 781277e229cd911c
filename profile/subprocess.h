// Running a probe program (python3 with torch, llama.cpp's probe) from the profiler.
#pragma once

#include <string>
#include <vector>

namespace dmap::profile {

// Runs argv (PATH searched); stdout and stderr to /dev/null when `quiet`, else its stdout goes
// to our standard error (never our data). Its exit status, or -1 when it could not be started
// or was killed. The command is sent SIGTERM when this process dies first. `env`: variables set
// (NAME=value) in its environment on top of ours.
int run_command(const std::vector<std::string>& argv, bool quiet, const std::vector<std::string>& env = {});

}  // namespace dmap::profile
