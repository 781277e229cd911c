// The CUDA backend's executor: the same Llama-family forward as CpuModel (exec/model.h), run on
// one or more GPUs under a Placement (exec/placement.h): GPU-mapped units keep their weights
// resident on their GPU; cpu/disk units stream their weights to the map's first GPU
// (`accelerate`: per leaf, pageable, one blocking copy per tensor; `prefetch`: per unit, pinned,
// double-buffered on a copy stream) or compute on the CPU backend (`in-place`). Activations and
// each layer's KV cache live on the layer's execution device and cross devices at unit
// boundaries.
//
// Data flow of one forward:
//   ids --H2D--> embed unit --x--> layer 0 .. layer L-1 --(last row of each sequence)--> norm --> lm_head
//   each unit on its execution device (x moves GPU<->GPU by peer copy, GPU<->CPU through pinned
//   staging, converted to the CPU backend's float32); logits --D2H--> float32 on the host.
// Timing: CUDA events around every module on its stream (host clocks for CPU-backend modules),
// read back after the forward, so module_times()/events() match CpuModel's.
//
// Example:
//   CudaModel m(cfg, weights, placement, {.batch = 1, .max_seq = 256, .threads = 16});
//   GenerateResult r = generate(m, prompt, P, 32);
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "exec/model.h"
#include "exec/placement.h"

namespace dmap::exec {

class CudaModel : public Executor {
 public:
  // Uploads resident weights, pins prefetched ones, allocates KV caches: an OutOfDeviceMemory
  // (a RuntimeFailure) names the device, the allocation, the bytes asked and the bytes free.
  CudaModel(const ExecConfig& cfg, const ModelWeights& weights, Placement placement, RunOptions opt);
  ~CudaModel() override;
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  void forward(const int32_t* ids, int64_t T, int64_t start, float* logits) override;
  void begin_phase(bool prefill) override;
  const std::vector<ModuleTime>& module_times() const override;
  const std::vector<ModuleEvent>& events() const override;
  const ExecConfig& config() const override;
  const RunOptions& options() const override;
  uint64_t disk_bytes_read() const override;
  double disk_read_seconds() const override;

  void set_observer(ModuleObserver* observer);
  void set_drop_page_cache(bool drop) override;
  // Bytes this model holds on each GPU it uses (resident weights, KV caches, buffers).
  std::vector<std::pair<int, size_t>> device_bytes() const;
  // Weight bytes copied host -> device so far (streamed cpu/disk units).
  uint64_t h2d_weight_bytes() const;
  // The execution device of unit u (see Placement::units): a GPU ordinal, or -1 for the CPU.
  int execution_device(size_t unit) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace dmap::exec
