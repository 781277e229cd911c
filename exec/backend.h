// Which executor runs a placement, and the one place that builds it:
//   cpu       CpuModel: every module on the CPU, whatever the map says (disk modules re-read);
//   cuda      DeviceModel on CUDA devices (exec/cuda, built when nvcc is present);
//   emulated  DeviceModel on the emulated device (exec/device/emulated.h): the GPU orchestration
//             on the host, stream ordering checked, times on the emulator's model clock — what
//             CI runs, and what a user can run to see a placement's copies and kernels without a GPU.
//
// Example:
//   std::unique_ptr<Executor> m = make_executor(cfg, weights, placement, Backend::kEmulated, opt);
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "exec/model.h"
#include "exec/placement.h"

namespace dmap::exec {

enum class Backend { kCpu, kCuda, kEmulated };
const char* backend_name(Backend b);
std::optional<Backend> parse_backend(const std::string& s);

// True when this build has the CUDA backend.
bool cuda_compiled();
// Usable CUDA devices here (0 without a driver or a device, or when built without CUDA).
int cuda_device_count();

// The backend for `flag` (auto | cpu | cuda | emulated; InputError otherwise) and a map that does or
// does not name a GPU: auto takes CUDA when a device is usable, else the CPU executor, and says so
// in `*note` (empty otherwise). RuntimeFailure when cuda is asked for and cannot be had.
Backend choose_backend(const std::string& flag, bool map_has_gpu, std::string* note);

// The executor of `p` on backend `b`. cuda and emulated need a placement with a GPU
// (p.uses_gpu()); the emulated device gets as many GPUs as the placement names.
std::unique_ptr<Executor> make_executor(const ExecConfig& cfg, const ModelWeights& weights, const Placement& p,
                                        Backend b, const RunOptions& opt);

}  // namespace dmap::exec
