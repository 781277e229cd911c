// dmap profile --runtime transformers|llama.cpp: the runtime's profile on this machine (--real,
// added to a calibration) and its validation (--validate), through scripts/runtime_probe.py
// (profile/runtime_probe.h) or llama.cpp's probe (profile/llama_fit.h), profile/runtime_validate.h.
#pragma once

#include <string>
#include <vector>

#include "cli/args.h"
#include "profile/profile.h"
#include "sim/hardware.h"
#include "sim/runtime.h"

namespace dmap::cli {

struct ProfileContext {
  sim::Hardware hw;
  std::string name, command;
  profile::RunSettings run;
  std::vector<DType> dtypes;
  bool dtypes_given = false;  // --dtype was given (else the runtime's default list)
};

int profile_runtime(const Args& a, sim::Runtime runtime, const ProfileContext& ctx);

}  // namespace dmap::cli
