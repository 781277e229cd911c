// Hardware: what the cost model knows about the machine a placement runs on — GPUs, the host
// CPU and its RAM, the host<->device link, the disk — read from presets in configs/hardware/
// or written inline in a scenario. Every number is a datasheet figure (or a named
// measurement) with its source in a comment in the preset; a Calibration (calibration.h)
// replaces figures with rates fitted from profiled runs, and the output says which is which.
//
// Preset files (configs/hardware/<id>.yaml), one component per file, told apart by `kind`.
// Units are in the key names: _gbs = 10^9 bytes/s, _tflops/_gflops = 10^12/10^9 FLOP/s,
// _us = microseconds; memory sizes are strings as accelerate reads them ("80GB", "24GiB").
//
//   kind: gpu
//   name: NVIDIA H200 SXM 141GB
//   memory: 141GB                   # datasheet
//   memory_bandwidth_gbs: 4800      # datasheet
//   peak_tflops: {float32: 67, float16: 989, bfloat16: 989, float8: 1979}   # dense
//   launch_overhead_us: 5           # per operator, eager PyTorch (estimate or measurement)
//   runtime_context: 500MiB         # CUDA context + cuBLAS workspace
//   p2p_gbs: 450                    # optional: GPU<->GPU (NVLink); absent = over the link
//   achievable: {memory: 0.85, compute: 0.7}   # optional: fraction of datasheet reached
//   compute_capability: 9.0         # optional: CUDA capability (decides FP8/MXFP4 dequantizing)
//   dequant:                        # optional, GPU or host: per quantization method, what its kernels
//     bitsandbytes_4bit: {decode_bytes_per_weight: 0, prefill_bytes_per_weight: 4, kernels: 1}
//                                   # add beyond the packed weights (default: sim/quant_cost.h estimates)
//
//   kind: host
//   name: Desktop 8-core, DDR5-5600 dual channel
//   cores: 8
//   memory_bandwidth_gbs: 89.6      # channels x MT/s x 8 bytes
//   ram: 64GiB
//   reserved_ram: 4GiB              # OS, Python, torch (not available to the model)
//   peak_gflops: {float32: 1433, bfloat16: 1433, float16: 717}
//   dispatch_overhead_us: 10        # per operator on the CPU, eager PyTorch
//   offload_tensor_overhead_us: 40  # accelerate hook per tensor (allocate, copy call, empty_cache)
//   achievable: {memory: 0.8, compute: 0.6}
//
//   kind: link
//   name: PCIe 4.0 x16
//   h2d_pinned_gbs: 25
//   h2d_pageable_gbs: 12
//   d2h_pinned_gbs: 25
//   d2h_pageable_gbs: 12
//   copy_latency_us: 10
//   p2p_gbs: 20                     # GPU<->GPU through this link when no NVLink
//
//   kind: disk
//   name: NVMe PCIe 4.0 x4
//   read_gbs: 7.0
//   read_latency_us: 80
//
// A scenario names them (or writes a component inline as a mapping of the same keys):
//
//   hardware:
//     host: desktop_ddr5_dual
//     gpus: [rtx3060_12gb]           # GPU i = i-th entry
//     link: pcie4_x16
//     disk: nvme_gen4
//     gpu_memory_in_use: {0: 13GB}   # held by other programs before dmap's process starts
//     page_cache: true               # disk-offloaded weights are served from the page cache
//                                    # when they fit in free RAM (default true)
//
// or `hardware: <id>` naming a preset of `kind: system` holding those same keys.
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/units.h"

namespace dmap::sim {

// Where a figure comes from; printed next to it.
enum class Source { kDatasheet, kCalibrated, kEstimate };
std::string source_name(Source s);

struct Figure {
  double value = 0;
  Source source = Source::kDatasheet;
};

// What dequantising a quantized linear layer costs on a device (sim/quant_cost.h): extra memory
// traffic per weight element in decode and in prefill, and extra kernels per call.
struct DequantFigure {
  double decode_bytes_per_weight = 0;
  double prefill_bytes_per_weight = 0;
  int kernels = 0;
  Source source = Source::kEstimate;
};

struct GpuSpec {
  std::string id;    // preset id ("h200") or "inline"
  std::string name;  // marketing name
  Bytes memory = 0;
  Figure memory_bandwidth;             // bytes/s, datasheet
  std::map<DType, Figure> peak_flops;  // FLOP/s per dtype, datasheet
  Figure launch_overhead;              // seconds per operator
  Bytes runtime_context = 0;
  std::optional<double> p2p_bandwidth;  // bytes/s
  double achievable_memory = 0.85;
  double achievable_compute = 0.70;
  // CUDA compute capability (8.6, 8.9, 9.0): transformers dequantizes FP8 checkpoints below 8.9
  // and MXFP4 below 7.5 while loading. -1 = not stated.
  double compute_capability = -1;
  // Per quantization method key (bitsandbytes_4bit, gptq, ...): figures from the preset's
  // `dequant` mapping; absent methods take sim/quant_cost.h's estimates.
  std::map<std::string, DequantFigure> dequant;
};

struct HostSpec {
  std::string id;
  std::string name;
  int cores = 1;
  Figure memory_bandwidth;  // bytes/s
  Bytes ram = 0;
  Bytes reserved_ram = 0;
  std::map<DType, Figure> peak_flops;
  Figure dispatch_overhead;        // seconds per operator
  Figure offload_tensor_overhead;  // seconds per tensor (accelerate hooks)
  double achievable_memory = 0.80;
  double achievable_compute = 0.60;
  std::map<std::string, DequantFigure> dequant;  // as GpuSpec::dequant
};

struct LinkSpec {
  std::string id;
  std::string name;
  Figure h2d_pinned, h2d_pageable, d2h_pinned, d2h_pageable;  // bytes/s
  Figure copy_latency;                                        // seconds
  std::optional<double> p2p_bandwidth;                        // bytes/s
};

struct DiskSpec {
  std::string id;
  std::string name;
  Figure read_bandwidth;  // bytes/s
  Figure read_latency;    // seconds per file read
};

struct Hardware {
  HostSpec host;
  std::vector<GpuSpec> gpus;
  LinkSpec link;
  DiskSpec disk;
  std::map<int, Bytes> gpu_memory_in_use;  // other programs' memory, per GPU ordinal
  bool page_cache = true;
  // The scenario's max_memory, when the user wrote one: what each device may give this model in
  // all (runtime context, weights, KV cache, workspace). Every placement is checked against the
  // smaller of the device and the cap.
  std::map<int, Bytes> gpu_cap;
  std::optional<Bytes> host_cap;

  Bytes gpu_capacity(int gpu) const;  // memory - other programs' memory, then the cap
  Bytes host_capacity() const;        // ram - reserved_ram, then the cap
  bool gpu_capped(int gpu) const;     // the user's cap is the smaller
  bool host_capped() const;

  std::string describe() const;  // "1x RTX 3060 12GB + desktop DDR5 host, PCIe 4.0 x16, NVMe gen4"
};

// Reads `hardware:` (a system preset id or a mapping). Preset ids are looked up in
// `hardware_dir` (configs/hardware). Errors name the file and line.
Hardware parse_hardware(const YAML::Node& node, const std::string& file, const std::string& hardware_dir);

// Loads one preset by id, checking its kind ("gpu", "host", "link", "disk", "system").
GpuSpec load_gpu(const std::string& id, const std::string& hardware_dir);
HostSpec load_host(const std::string& id, const std::string& hardware_dir);

// Ids of the presets of one kind in `hardware_dir`, sorted.
std::vector<std::string> list_presets(const std::string& kind, const std::string& hardware_dir);

}  // namespace dmap::sim
