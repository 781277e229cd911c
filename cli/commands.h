// The dmap subcommands. Each takes the arguments after its name and returns the exit code;
// errors are thrown (InputError -> 2, RuntimeFailure -> 1) and reported by main.
#pragma once

#include <string>
#include <vector>

namespace dmap::cli {

int cmd_map(const std::vector<std::string>& args);
int cmd_memory(const std::vector<std::string>& args);
int cmd_simulate(const std::vector<std::string>& args);
int cmd_report(const std::vector<std::string>& args);
int cmd_run(const std::vector<std::string>& args);
int cmd_profile(const std::vector<std::string>& args);
int cmd_export(const std::vector<std::string>& args);

// Scenario files under configs/scenarios that describe hardware (what simulate/report use).
std::vector<std::string> simulated_scenarios();

}  // namespace dmap::cli
