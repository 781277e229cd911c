// The CUDA backend's executor: the orchestration of exec/device/device_model.h on CUDA devices
// (a CudaRuntime of its own, whose streams and events live as long as the model).
//
// Example:
//   CudaModel m(cfg, weights, placement, {.batch = 1, .max_seq = 256, .threads = 16});
//   GenerateResult r = generate(m, prompt, P, 32);
#pragma once

#include "exec/device/device_model.h"

namespace dmap::exec {

class CudaModel : public DeviceModel {
 public:
  CudaModel(const ExecConfig& cfg, const ModelWeights& weights, Placement placement, RunOptions opt);
};

}  // namespace dmap::exec
