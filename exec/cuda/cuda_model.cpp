// The CUDA backend's executor (see cuda_model.h).
#include "exec/cuda/cuda_model.h"

#include <memory>

#include "exec/cuda/cuda_runtime.h"

namespace dmap::exec {

CudaModel::CudaModel(const ExecConfig& cfg, const ModelWeights& weights, Placement placement, RunOptions opt)
    : DeviceModel(std::make_shared<CudaRuntime>(), cfg, weights, std::move(placement), opt) {}

}  // namespace dmap::exec
