// Shared by the libFuzzer targets: the input as a file (the readers under test take paths, so
// the file checks run too), and the one rule every target enforces — an input either loads or
// raises dmap::InputError; any other exception (an internal error, std::bad_alloc, a YAML
// exception that escaped) is a finding, and so is anything ASan or UBSan reports.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>

#include "core/error.h"

namespace dmap::fuzz {

// Writes the input to <tmp>/dmap_fuzz_<pid>/<name> (one folder per process, reused).
inline std::string input_file(const uint8_t* data, size_t size, const std::string& name) {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string d = std::string(tmp && *tmp ? tmp : "/tmp") + "/dmap_fuzz_" + std::to_string(::getpid());
    std::string cmd = "mkdir -p '" + d + "'";
    if (std::system(cmd.c_str()) != 0) std::abort();
    return d;
  }();
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// Runs `body`; InputError is the accepted way to refuse an input, anything else aborts.
template <class F>
int accept_or_refuse(F&& body) {
  try {
    body();
  } catch (const dmap::InputError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "finding: %s escaped: %s\n", typeid(e).name(), e.what());
    std::abort();
  }
  return 0;
}

}  // namespace dmap::fuzz
