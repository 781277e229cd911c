// The weights an executor runs on: each tensor a view into a memory-mapped checkpoint or owned
// (seeded random weights at the real shapes), optionally offloaded to disk as accelerate does.
//
// Example:
//   ModelWeights w = ModelWeights::from_checkpoint(cfg, std::make_shared<Checkpoint>(Checkpoint::open("ckpt")));
//   w.offload_to_disk({"model.layers.3.mlp.up_proj.weight"}, "/tmp/offload");
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/units.h"
#include "exec/config.h"
#include "exec/cpu/kernels.h"
#include "exec/safetensors.h"

namespace dmap::exec {

// One weight: its storage (a view into a mapped file, or owned) and shape.
struct WeightRef {
  cpu::Weight w;  // rows x cols (1-D tensors: rows = 1)
  std::string name;
  std::string file;      // where the bytes live on disk ("" = memory only)
  uint64_t offset = 0;   // byte offset in `file`
  bool on_disk = false;  // disk-offloaded: read from `file` before every use
};

// Bytes of a weight's storage, and of one of its rows.
size_t weight_bytes(const cpu::Weight& w);
size_t row_bytes(const cpu::Weight& w);

// A weight's memory, on 2 MiB pages where the kernel grants them (transparent huge pages asked
// for with MADV_HUGEPAGE; THP mode `madvise` is this VM's and Debian's default). Measured on the
// AMD EPYC VM, five alternating pairs each: Qwen2.5-0.5B float32 and TinyLlama bfloat16 decode
// 3 % faster (median of pair ratios 0.975, 0.969), the cold prefill 12 % faster (page faults).
// Buffers under 2 MiB (norms, biases, tiny test models) stay on ordinary pages: a huge page each
// would make every small tensor cost 2 MiB of memory. DMAP_WEIGHT_PAGES=small keeps every
// buffer on 4 KiB pages (for measuring what the pages do).
using WeightBuffer = std::unique_ptr<uint8_t, void (*)(uint8_t*)>;
WeightBuffer weight_buffer(size_t bytes);

class ModelWeights {
 public:
  // Views into the checkpoint (kept alive by the returned object); every tensor checked.
  static ModelWeights from_checkpoint(const ExecConfig& cfg, std::shared_ptr<const Checkpoint> ck);
  // Seeded random weights in `dtype` (float32, float16, bfloat16): N(0, 1/in) matrices, norm
  // gains 1 + N(0, 0.1) (gemma: N(0, 0.1) offsets), for timing at real shapes.
  static ModelWeights random(const ExecConfig& cfg, DType dtype, uint64_t seed);

  const WeightRef& get(const std::string& name) const;
  bool has(const std::string& name) const;
  // Offloads tensors to disk as accelerate does: from then on they are read from their file on
  // every forward. Checkpoint tensors are read from the checkpoint; random ones are first
  // written to `offload_dir` (one .dat file per tensor, like accelerate's offload folder).
  void offload_to_disk(const std::vector<std::string>& names, const std::string& offload_dir);
  // Reads every checkpoint tensor that stays in memory (not offloaded) out of its file into memory
  // of its own, on 2 MiB pages where the kernel grants them — llama.cpp's --no-mmap. Products then
  // stream anonymous memory instead of the file's page-cache pages: on the AMD EPYC VM llama.cpp
  // decoded 1.64x (float32) and 1.36x (bfloat16) slower from its mapped file. Returns the bytes read.
  Bytes read_in();
  // Tensors whose storage is owned memory (random weights, or read in).
  size_t owned_count() const { return owned_.size(); }
  std::vector<std::string> names() const;
  // transformers' tensor names this model needs, in load order.
  static std::vector<std::pair<std::string, std::vector<int64_t>>> expected(const ExecConfig& cfg);
  Bytes bytes() const;

 private:
  std::shared_ptr<const Checkpoint> ck_;
  std::vector<WeightBuffer> owned_;
  std::vector<WeightRef> refs_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in refs_
  void add(WeightRef r);
};

}  // namespace dmap::exec
