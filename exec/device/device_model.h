// The executor of GPU placements: the same layer programs as CpuModel (exec/layer_program.h; every
// family, the sparse MoE layers included), run on one or more devices of a DeviceRuntime (exec/device/runtime.h: CUDA,
// or the emulated device CI runs) under a Placement (exec/placement.h). GPU-mapped units keep their weights resident on
// their GPU; cpu/disk units stream their weights to the map's first GPU (`accelerate`: per leaf, pageable, one blocking
// copy per tensor into a fresh allocation; `prefetch`: per unit, pinned, double-buffered on a copy stream) or compute
// on the CPU backend (`in-place`). Activations and each layer's KV cache live on the layer's execution device and cross
// devices at unit boundaries.
//
// Data flow of one forward:
//   ids --H2D--> embed unit --x--> layer 0 .. layer L-1 --(last row of each sequence)--> norm --> lm_head
//   each unit on its execution device (x moves GPU<->GPU by peer copy, GPU<->CPU through pinned
//   staging, converted to the CPU backend's float32); logits --D2H--> float32 on the host.
// Prefetch, per streamed unit i (slot s = i % 2):
//   copy stream:    [wait compute_done[s]] copies of unit i -> slot s, record copy_done[s]
//   compute stream: [wait copy_done[s]] unit i's kernels reading slot s, record compute_done[s],
//                   then unit i + 1's copy is issued (it overlaps unit i's kernels).
// Timing: events around every module on its stream (host clocks for CPU-backend modules), read
// back after the forward, so module_times()/events() match CpuModel's.
//
// Example:
//   auto rt = std::make_shared<EmulatedDevice>();             // or cuda_runtime()
//   DeviceModel m(rt, cfg, weights, placement, {.batch = 1, .max_seq = 256, .threads = 2});
//   GenerateResult r = generate(m, prompt, P, 32);
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "exec/device/runtime.h"
#include "exec/model.h"
#include "exec/placement.h"

namespace dmap::exec {

class DeviceModel : public Executor {
 public:
  // Uploads resident weights, pins prefetched ones, allocates KV caches: an OutOfDeviceMemory
  // (a RuntimeFailure) names the device, the allocation, the bytes asked and the bytes free.
  DeviceModel(std::shared_ptr<DeviceRuntime> rt, const ExecConfig& cfg, const ModelWeights& weights,
              Placement placement, RunOptions opt);
  ~DeviceModel() override;
  DeviceModel(const DeviceModel&) = delete;
  DeviceModel& operator=(const DeviceModel&) = delete;

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
  // Sparse layers' experts touched (GPU layers: counted on the device, read back per forward).
  ExpertCounts expert_counts() const override;
  // The execution device of unit u (see Placement::units): a GPU ordinal, or -1 for the CPU.
  int execution_device(size_t unit) const;
  DeviceRuntime& runtime() const;

  // Deliberate ordering bugs, for the tests that prove the emulated device catches them.
  enum class Fault {
    kNone,
    kNoCopyWait,  // prefetch: a unit's kernels do not wait for its slot's copy
    kNoSlotWait,  // prefetch: a copy into a slot does not wait for the slot's previous reader
  };
  void set_fault(Fault f);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace dmap::exec
