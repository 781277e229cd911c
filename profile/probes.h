// The CPU profiler's micro-benchmarks (internal to profile/): weight streaming and matrix
// products over a pool of weight copies larger than the caches, disk reads cold and warm,
// attention over contexts, and the per-operator dispatch probe. profile_cpu fits a calibration
// to what they measure.
//
// Example:
//   WeightStore store;
//   WeightPool pool(store, DType::kBFloat16, 4096, 4096, dram_pool_bytes(512u << 20));
//   double s = time_linear(pool, /*M=*/1, /*threads=*/2, /*reps=*/7);
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/module_tree.h"
#include "exec/config.h"
#include "exec/cpu/kernels.h"
#include "profile/fit.h"
#include "profile/profile.h"

namespace dmap::profile {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t);

// Bytes a weight pool needs so that its copies come from DRAM: `at_least`, or four times the
// last-level cache when that is larger (capped at 4 GiB): a pool the size of the cache is partly
// read from it. On the AMD EPYC VM of 2026-12-04, whose L3 reads as 508 MiB, 32 MiB reads cycling
// through a pool ran at 53 GB/s from 256 MiB, 52 from 512 MiB, 46 from 2 GiB (medians of 128, two
// threads) — a 12 % effect there. DMAP_PROFILE_POOL_MIB overrides the size (a diagnostic).
size_t dram_pool_bytes(size_t at_least);

// The memory weight pools read: buffers per dtype, each filled once with ordinary numbers and
// shared by every pool that fits in it (a multi-GiB pool is not re-filled per shape). clear()
// frees them (pools made from the store must not be used after).
class WeightStore {
 public:
  const uint8_t* get(DType d, size_t bytes);  // a filled buffer of at least `bytes`
  void clear() { buffers_.clear(); }

 private:
  std::map<DType, std::vector<std::unique_ptr<std::vector<uint8_t>>>> buffers_;
};

// A pool of weight copies larger than the caches: each timed product reads the next copy, so
// its weights come from DRAM as they do in a forward pass. The copies are `pool_bytes` of the
// store's memory.
class WeightPool {
 public:
  WeightPool(WeightStore& store, DType d, int64_t n, int64_t k, size_t pool_bytes);
  exec::cpu::Weight next() {
    const uint8_t* p = data_ + (i_++ % copies_) * bytes_;
    return exec::cpu::Weight{p, d_, n_, k_};
  }
  size_t bytes() const { return bytes_; }
  size_t copies() const { return copies_; }

 private:
  DType d_;
  int64_t n_, k_;
  size_t bytes_ = 0, copies_ = 0, i_ = 0;
  const uint8_t* data_ = nullptr;
};

// Median seconds of `reps` products y = x W^T with M rows.
double time_linear(WeightPool& pool, int64_t M, int threads, int reps);

struct DiskFit {
  LineFit cold, warm;
  int samples = 0;
  // One tensor past exec::kMapCopyBytes read warm (copied out of the file's map by `threads`):
  // its size and the median rate (GB/s) of its timed reads.
  size_t large_bytes = 0;
  double large_gbs = 0;
  // Each timed warm read of it came right after a page-cache probe (page_cache_probe_gbs): the
  // median of its rate over that probe's. A burst of reads samples one moment of a rate that
  // drifts by +-20 % within minutes here; the ratio carries over to the probe's level over the
  // whole calibration (profile_cpu: host.page_cache_large_gbs = ratio x the probes' median).
  double large_probe_ratio = 0;
  // The same tensor cold (its pages evicted, copied back out of the map by one thread, as the
  // executor's cold prefill reads it): the median rate (GB/s) of its cold reads.
  double large_cold_gbs = 0;
};

// The tensor size from which a cold read runs at the large tensor's cold rate (disk.read_large_*).
// Measured on the AMD EPYC VM (2026-12-07, `drift_bench cold 4`, medians of 4 reads as the executor
// reads cold): 16 MiB 2.1 GB/s, 32 MiB 3.6, 64 MiB 2.4, 128 MiB 4.7, 256 MiB 4.8, 512 MiB 4.8 — the
// kernel's readahead has ramped up by 128 MiB.
constexpr size_t kColdStreamBytes = size_t{128} << 20;

// Reads of 0.25..64 MiB tensors from scratch files: cold (evicted from the page cache first, by
// one thread) and warm (by `threads` threads), as the executor reads them; then one large tensor
// (512 MiB; quick: 96 MiB) warm, which the executor copies out of the file's map, and cold.
DiskFit measure_disk(const std::string& dir, bool quick, int threads, const ProgressFn& progress);

// Attention alone (exec::CpuModel::attention_only) over context lengths, on a one-layer model
// with the model's attention shapes (heads, KV heads, head size, window) and nothing else of
// size: decode steps (one query) at growing contexts and prefills of growing prompts.
struct AttentionProbe {
  std::vector<std::pair<double, double>> decode;   // (context, seconds)
  std::vector<std::pair<double, double>> prefill;  // (prompt, seconds)
  LineFit decode_fit;                              // seconds = intercept + slope x context
  double overhead_s = 0;                           // the intercept, >= 0
  std::vector<std::pair<double, double>> curve;    // (query rows M, FLOP/s)
};

AttentionProbe measure_attention(const exec::ExecConfig& full, DType d, int threads, bool quick,
                                 const std::function<void(const std::string&)>& tick);

// Per-operator overhead seen directly: decode steps of a model with the real one's layers and
// operators but tiny shapes (hidden 64), whose arithmetic and weight traffic are negligible.
struct DispatchProbe {
  double decode_s = 0;      // median forward
  double weight_bytes = 0;  // of the tiny model
  exec::ExecConfig config;
};

DispatchProbe measure_dispatch(const exec::ExecConfig& full, DType d, int threads);

// Bytes (at `d`) of each parameter of decoder layers [first, last): what a disk-offloaded layer
// re-reads per forward, tensor by tensor.
std::vector<double> disk_tensor_bytes(const ModuleTree& tree, DType d, int64_t first, int64_t last);

// What a disk layer's module adds to a decode step against the same module resident in the same
// run (the same machine state, the same step): per module kind holding at least 1 MiB, the median
// over the run's repetitions of (median over the disk layers - median over the resident ones) of
// the module's median decode time. As a rate (its bytes over that extra) at its bytes-weighted mean
// tensor size: a just-copied tensor that fits the cache is read back from it by the product
// (TinyLlama: attention 16 + 2 MiB tensors, MLP 44 MiB in float32; half that in bfloat16).
struct WarmSizes {
  sim::CurvePoints points;           // (MiB, bytes/s), by increasing size
  std::vector<std::string> modules;  // the module kind of each point
  std::vector<double> extra_s;       // its extra per decode step
};
WarmSizes warm_by_tensor_size(const ModuleTree& tree, const exec::ExecConfig& c, DType d,
                              const std::vector<PlacementRun>& reps, int64_t disk_layers);

// The same tensor by tensor, from the disk runs' step times (PlacementRun::decode_weight_s): per
// layer weight of at least 256 KiB, the median over the repetitions of (median over the disk
// layers - median over the resident ones) of the time its steps take per decode step (its read
// and its product, or the product alone). Weights of about one size (within 10 %) make one point:
// their bytes over their summed extra, at that size — the first read of each module runs slower
// than the rest (docs/PERFORMANCE.md, eighteenth session), so q_proj and o_proj share a point as
// they share the cost. Kinds whose extra is not positive are left out. Empty when the runs were
// not step-timed.
WarmSizes warm_by_tensor(const exec::ExecConfig& c, DType d, const std::vector<PlacementRun>& reps,
                         int64_t disk_layers);

// The machine's state in a disk run against its CPU-only partner, measured by the modules both
// runs hold in memory (every module outside the layers from `first_disk_layer` on): the sum of
// their median decode times in the disk run over the same sum in the CPU-only run. 1 when the
// runs share no timed module. profile_cpu scales the CPU-only run by it before taking what the
// disk layers add.
double resident_ratio(const PlacementRun& cpu, const PlacementRun& disk, int64_t first_disk_layer);

}  // namespace dmap::profile
