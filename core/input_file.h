// The checks every input file passes before it is read: it exists, it is a regular file (not a
// folder, a FIFO that would block, a socket or a device), a symbolic link leads to one, and a
// text file (YAML, JSON) is not absurdly large. Each failure is an InputError naming the file.
//
// Example:
//   check_input_file(path);                 // InputError: "x.yaml: cannot open: a folder, not a file"
//   check_input_file(path, 64 << 20);       // and at most 64 MiB
#pragma once

#include <cstdint>
#include <string>

namespace dmap {

// `max_bytes` <= 0: no size limit.
void check_input_file(const std::string& path, int64_t max_bytes = 0);

// The size limit for configs, scenarios, hardware and calibration files.
constexpr int64_t kMaxTextInputBytes = int64_t{64} << 20;

}  // namespace dmap
