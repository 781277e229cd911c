// The executor factory (see backend.h).
#include "exec/backend.h"

#include <algorithm>

#include "core/error.h"
#include "exec/device/device_model.h"
#include "exec/device/emulated.h"
#include "exec/layer_program.h"
#if DMAP_HAVE_CUDA
#include "exec/cuda/cuda_runtime.h"
#endif

namespace dmap::exec {

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::kCpu: return "cpu";
    case Backend::kCuda: return "cuda";
    case Backend::kEmulated: return "emulated";
  }
  return "?";
}

std::optional<Backend> parse_backend(const std::string& s) {
  for (Backend b : {Backend::kCpu, Backend::kCuda, Backend::kEmulated}) {
    if (s == backend_name(b)) return b;
  }
  return std::nullopt;
}

bool cuda_compiled() { return DMAP_HAVE_CUDA != 0; }

Backend choose_backend(const std::string& flag, bool map_has_gpu, std::string* note) {
  note->clear();
  if (flag != "auto" && !parse_backend(flag)) {
    throw InputError("--backend must be auto, cpu, cuda or emulated, not '" + flag + "'");
  }
  if (flag == "cpu") return Backend::kCpu;
  if (flag == "emulated") {
    if (!map_has_gpu) throw InputError("--backend emulated: the placement maps nothing to a GPU");
    return Backend::kEmulated;
  }
  const int gpus = cuda_device_count();
  if (flag == "cuda") {
    if (!map_has_gpu) throw InputError("--backend cuda: the placement maps nothing to a GPU");
    if (!cuda_compiled())
      throw RuntimeFailure(
          "--backend cuda: this dmap was built without CUDA (nvcc was not found when it was configured)");
    if (gpus == 0) throw RuntimeFailure("--backend cuda: no usable CUDA device on this machine");
    return Backend::kCuda;
  }
  if (!map_has_gpu) return Backend::kCpu;
  if (gpus > 0) return Backend::kCuda;
  *note = std::string("no usable CUDA device") + (cuda_compiled() ? "" : " (built without CUDA)") +
          ": GPU-mapped modules compute on the CPU executor (--backend emulated runs the GPU orchestration on an "
          "emulated device)";
  return Backend::kCpu;
}

int cuda_device_count() {
#if DMAP_HAVE_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

std::unique_ptr<Executor> make_executor(const ExecConfig& cfg, const ModelWeights& weights, const Placement& p,
                                        Backend b, const RunOptions& opt) {
  if (b == Backend::kCpu) return std::make_unique<CpuModel>(cfg, weights, opt);
  DMAP_CHECK(p.uses_gpu(), "a GPU backend needs a placement with a GPU");
  std::shared_ptr<DeviceRuntime> rt;
  if (b == Backend::kEmulated) {
    int devices = 0;
    for (const Device& d : p.units)
      if (d.is_gpu()) devices = std::max(devices, d.index + 1);
    EmulatedConfig c;
    c.devices = std::max(devices, p.main_gpu + 1);
    c.memory_bytes = size_t{1} << 42;  // capacity is not emulated here: the host's memory is the limit
    c.threads = opt.threads;
    rt = std::make_shared<EmulatedDevice>(c);
  } else {
#if DMAP_HAVE_CUDA
    rt = std::make_shared<CudaRuntime>();
#else
    throw RuntimeFailure("this dmap was built without CUDA (nvcc was not found when it was configured)");
#endif
  }
  return std::make_unique<DeviceModel>(std::move(rt), cfg, weights, p, opt);
}

}  // namespace dmap::exec
