// Calibration and Rates: the achieved figures the cost model computes with.
//
// Data flow: Hardware (datasheet x achievable fraction) --+
//            Calibration (fitted by `dmap profile --real`) +--> Rates --> CostModel
// A calibrated figure replaces the datasheet one; each Rate keeps its Source so outputs say
// which numbers were measured.
//
// Calibration schema (configs/calibrations/<name>.yaml); every key except `kind` is optional:
//
//   kind: calibration
//   name: my-desktop
//   provenance: {cpu: "...", gpu: "...", driver: "...", dmap_version: 0.1.0, date: 2026-11-21,
//                method: "dmap profile --real"}
//   host:
//     memory_bandwidth_gbs: 38.5          # achieved (e.g. STREAM triad / weight streaming)
//     page_cache_read_gbs: 6.0            # reading a cached file into a fresh buffer; or per dtype
//                                       # {float32: 9.8, bfloat16: 11}: what a warm disk-offloaded
//                                       # tensor adds to a step, the product that follows reading
//                                       # the just-copied weights from cache
//     page_cache_large_gbs: 30            # tensors of page_cache_large_from_mib and more (both keys
//     page_cache_large_from_mib: 64       # or neither): copied out of the file's map by every thread
//                                       # (exec::kMapCopyBytes), one rate for every dtype
//     dispatch_overhead_us: 3.0           # per operator
//     offload_tensor_overhead_us: 45      # accelerate hook per tensor
//     matmul_gflops:                      # achieved, by token count M of the product
//       float32: [[1, 40], [16, 300], [128, 900]]     # [M, GFLOP/s] points, log-interpolated
//       bfloat16: 350                                 # or one number for every M
//     attention_gflops: {float32: [[1, 20], [128, 150]]}   # optional: attention's products and
//                                       # softmax by query rows M (default: matmul_gflops)
//     attention_overhead_us: 4            # per attention op and forward, beyond the dispatch:
//                                       # the intercept of attention time over context length
//     matvec_row_ns: {bfloat16: 15}       # per output row of a one-token product (short rows
//                                       # stream slower than long ones); or one number
//     matmul_input_ns: {float32: 2}       # per input element (M x K) of a product with M >= 2
//                                       # (converting and packing the activations); or one number
//     head_matvec_gbs: {bfloat16: 47}     # the LM head's one-row product as whole-model decode
//                                       # streams it (its weight bytes per second, row cost and
//                                       # dispatch apart), where it differs from the layers' rate
//                                       # (matmul_gflops at M = 1); per dtype, absent = that rate
//   gpus:
//     all:                                # or a GPU ordinal: 0, 1, ...
//       memory_bandwidth_gbs: 4100
//       launch_overhead_us: 6.5
//       matmul_tflops: {bfloat16: [[1, 30], [512, 650]]}
//       attention_tflops: {bfloat16: [[1, 2], [512, 300]]}   # as the host's attention_gflops
//       attention_overhead_us: 3
//   link: {h2d_pinned_gbs: 52, h2d_pageable_gbs: 21, d2h_pinned_gbs: 50, d2h_pageable_gbs: 20,
//          copy_latency_us: 9, p2p_gbs: 400}
//   disk: {read_gbs: 2.1, read_latency_us: 120,   # cold reads; read_gbs also per dtype
//          read_large_gbs: 4.6,               # tensors of read_large_from_mib and more (both keys or
//          read_large_from_mib: 64}           # neither): one long stream, read ahead of
//   runtimes: {transformers: {...}, llama.cpp: {...}}   # runtime profiles (sim/runtime.h)
//   moe: {routing_spread: 0.5,             # mixture of experts: routing spreads the tokens over
//         sequence_spread: 0.6}            # this share of a layer's experts (1: uniform routing);
//                                       # one sequence's tokens over this share of those (1: as
//                                       # independent tokens; `dmap run` fits it from a single
//                                       # sequence's prefill, `--validate` both from a probe run)
//   fit: {...}                             # free-form: residuals of the fit, reported as is
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "sim/hardware.h"
#include "sim/runtime.h"

namespace dmap::sim {

// A rate that may depend on the token count M of a matrix product: points (M, rate) sorted by
// M, interpolated linearly in log M, clamped at the ends.
struct RateCurve {
  std::vector<std::pair<double, double>> points;
  Source source = Source::kDatasheet;
  double at(double m) const;
  static RateCurve constant(double v, Source s) { return RateCurve{{{1.0, v}}, s}; }
};

struct DeviceRates {
  Figure memory_bandwidth;                              // achieved bytes/s
  std::map<DType, RateCurve> flops;                     // achieved FLOP/s per dtype
  Figure dispatch;                                      // seconds per operator
  std::map<DType, RateCurve> attention_flops;           // calibrated only; empty = the matmul rates
  Figure attention_overhead{0, Source::kDatasheet};     // seconds per attention op, beyond dispatch
  std::map<DType, Figure> matvec_row;                   // seconds per output row of a one-row (M = 1) product
  double row_cost(DType d) const;                       // matvec_row of d, else float32's, else 0
  std::map<DType, Figure> matmul_input;                 // seconds per input element (M x K) of an M >= 2 product
  double input_cost(DType d) const;                     // matmul_input of d, else float32's, else 0
  std::map<DType, Figure> head_matvec;                  // bytes/s of the LM head's one-row product
  double head_rate(DType d) const;                      // head_matvec of d (no fallback), else 0
  const RateCurve& flops_for(DType d) const;            // falls back to float32 (then any) when the dtype is absent
  const RateCurve& attention_flops_for(DType d) const;  // the attention curve of d, else flops_for(d)
  std::map<std::string, DequantFigure> dequant;         // the preset's figures per quantization method
};

// (M, rate) points of a rate curve, in the unit its field names; one point for a single rate.
using CurvePoints = std::vector<std::pair<double, double>>;

// The calibration file, typed: every figure in the unit its name says, absent = not calibrated
// (the datasheet figure stays). Per-dtype maps hold one entry per calibrated dtype; where the
// file gives one number for every dtype it is held under float32 (the fallback of the lookups).
struct HostCalibration {
  std::optional<double> memory_bandwidth_gbs;
  std::optional<double> page_cache_read_gbs;  // one rate for every dtype
  // Or one per dtype (others: the slowest), each a rate or a curve by tensor size: [[MiB, GB/s], ...]
  // (a tensor that fits the cache is read back by the product that follows its copy from cache).
  std::map<DType, CurvePoints> page_cache_read_gbs_by_dtype;
  // Tensors of page_cache_large_from_mib and more: the executor copies them out of the file's map
  // (exec::kMapCopyBytes), not by pread(), at this rate for every dtype (given together or not at all).
  std::optional<double> page_cache_large_gbs, page_cache_large_from_mib;
  std::optional<double> dispatch_overhead_us, offload_tensor_overhead_us, attention_overhead_us;
  std::map<DType, CurvePoints> matmul_gflops, attention_gflops;
  std::map<DType, double> matvec_row_ns, matmul_input_ns;
  std::map<DType, double> head_matvec_gbs;  // the LM head's one-row streaming rate, per dtype
  // The reference probe's time when the calibration was made (profile/probes.h reference_probe_ms:
  // a fixed float32 matrix-vector stream). Not a rate of the cost model: validations take the
  // probe again and report the machine's state against it (a shared VM's bandwidth drifts).
  std::optional<double> reference_probe_ms;
  // The same probe in other dtypes (4096 x 4096 of a 16-bit dtype, 32 MiB per read), per dtype:
  // what a validation brackets runs of that dtype with. On the AVX2 EPYC a bfloat16 decode is
  // partly compute-bound and moved with the float32 probe at an elasticity of 0.3 only
  // (docs/PERFORMANCE.md, "Probing the decode itself").
  std::map<DType, double> dtype_reference_probe_ms;
  // The probe time runs of `d` are bracketed with: its own where recorded, else the float32
  // probe's (nullopt: neither), and the dtype that probe streams.
  std::optional<double> reference_probe_for(DType d) const {
    if (const auto it = dtype_reference_probe_ms.find(d); it != dtype_reference_probe_ms.end()) return it->second;
    return reference_probe_ms;
  }
  DType reference_probe_dtype(DType d) const { return dtype_reference_probe_ms.count(d) ? d : DType::kFloat32; }
  // The page-cache probe's rate then (profile/profile.h page_cache_probe_gbs), likewise.
  std::optional<double> page_cache_probe_gbs;
};

struct GpuCalibration {
  std::optional<double> memory_bandwidth_gbs, launch_overhead_us, attention_overhead_us;
  std::map<DType, CurvePoints> matmul_tflops, attention_tflops;
};

struct LinkCalibration {
  std::optional<double> h2d_pinned_gbs, h2d_pageable_gbs, d2h_pinned_gbs, d2h_pageable_gbs, copy_latency_us, p2p_gbs;
};

struct DiskCalibration {
  std::optional<double> read_gbs, read_latency_us;
  // Or a cold rate per weight dtype, as the executor's cold prefill reads disk-offloaded tensors
  // (others: the slowest). Measured on the AMD EPYC VM of 2026-12-04: float32 tensors read cold at
  // 2.5-3.0 GB/s and bfloat16 at 3.5-4.5 GB/s in the same calibration (twice), a difference
  // one rate for both left as -8.5 % / +3.8 % errors in the calibration's own disk runs.
  std::map<DType, double> read_gbs_by_dtype;
  // Tensors of read_large_from_mib and more, cold (both keys or neither): one stream the kernel
  // reads ahead of for long enough to ramp up. Measured on the AMD EPYC VM (2026-12-07): MoE fused
  // experts of 400-800 MB read cold at ~4.6 GB/s where TinyLlama's 22-44 MiB tensors read at 3.3.
  std::optional<double> read_large_gbs, read_large_from_mib;
};

struct Calibration {
  std::string file;  // where it was read from ("" when built in memory)
  std::string name;
  std::string comment;    // lines written as `# ...` above the data (read back by the loaders)
  YAML::Node provenance;  // free-form mapping (cpu, gpu, driver, dmap_version, date, method, ...)
  HostCalibration host;
  std::optional<GpuCalibration> all_gpus;  // `gpus: {all: ...}`
  std::map<int, GpuCalibration> gpus;      // by ordinal, applied after `all`
  LinkCalibration link;
  DiskCalibration disk;
  std::map<Runtime, RuntimeProfile> runtimes;  // measured (or written) runtime profiles
  std::optional<double> moe_routing_spread;    // in (0, 1]: routing's skew (sim/cost_model.h)
  std::optional<double> moe_sequence_spread;   // in (0, 1]: one sequence's tokens route alike
  YAML::Node fit;                              // free-form: residuals of the fit, reported as is
};

// Reads and validates a calibration file. Errors name the file, line and key.
Calibration load_calibration(const std::string& path);
// The same from text (`origin` names it in errors).
Calibration parse_calibration(const std::string& text, const std::string& origin);
// The file `load_calibration` reads back: every figure to 6 significant digits, provenance and
// fit as given.
std::string calibration_yaml(const Calibration& c);

// glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit (4 MiB x sizeof(long)): its dynamic mmap threshold
// rises, as mapped blocks are freed, to at most this; a larger block is mapped afresh whenever the heap
// holds no free block that large (a forward's heap, tensor after tensor of one layer, does not).
constexpr double kGlibcMmapThresholdMax = 32.0 * 1024 * 1024;
constexpr double kPageBytes = 4096;

struct Rates {
  DeviceRates host;
  std::vector<DeviceRates> gpus;
  Figure h2d_pinned, h2d_pageable, d2h_pinned, d2h_pageable;  // bytes/s
  Figure copy_latency;                                        // seconds per copy
  Figure offload_tensor_overhead;                             // seconds per tensor (accelerate)
  std::vector<std::vector<double>> p2p;                       // bytes/s, [from][to]
  Figure disk_read;                                           // bytes/s, cold
  Figure disk_latency;                                        // seconds per read
  Figure page_cache_read;                                     // bytes/s, warm
  std::map<DType, Figure> page_cache_read_dtype;              // bytes/s, warm, per weight dtype (its largest tensors')
  const Figure& page_cache_for(DType d) const;                // the dtype's, else page_cache_read
  std::map<DType, RateCurve> page_cache_curve;                // bytes/s by tensor MiB, where calibrated so
  Figure page_cache_large;                                    // bytes/s, warm, tensors of page_cache_large_from on
  double page_cache_large_from = 0;                           // bytes; 0: no such rate (the curve holds)
  // Warm rate (bytes/s) of one tensor of `bytes`: page_cache_large from page_cache_large_from on,
  // else the dtype's curve at its size, else page_cache_for.
  double page_cache_rate(DType d, double bytes) const;
  // The slowest warm rate of any tensor size (bounds: warm never slower than this).
  double min_page_cache_rate(DType d) const;
  std::map<DType, Figure> disk_read_dtype;     // bytes/s, cold, per weight dtype
  const Figure& disk_read_for(DType d) const;  // the dtype's, else disk_read
  Figure disk_read_large;                      // bytes/s, cold, tensors of disk_read_large_from on
  double disk_read_large_from = 0;             // bytes; 0: no such rate
  // Cold rate (bytes/s) of one tensor of `bytes`: disk_read_large from disk_read_large_from on,
  // else disk_read_for; the fastest of them (bounds: a cold read never faster than this).
  double disk_read_rate(DType d, double bytes) const;
  double max_disk_read_rate(DType d) const;
  // accelerate's warm reads under PyTorch (the transformers runtime, RuntimeProfile): a tensor
  // copied out of its file's memory map into memory glibc hands out, part of it fresh pages.
  // Where set, page_cache_rate is this, not the executor's curve.
  struct TorchOffload {
    Figure copy;                                // bytes/s into pages already touched, alone
    std::map<DType, double> copy_scale;         // the copy's time within a forward over alone (1: none)
    Figure fresh_page;                          // seconds per fresh 4 KiB heap page within a forward (faulted, zeroed)
    Figure mapped_page;                         // the same for a page of a block glibc maps afresh
    Figure heap_fresh{1.0, Source::kEstimate};  // share of a heap-served tensor's pages that are fresh
    double fresh_share(double bytes) const;     // 1 from glibc's largest mmap threshold on, else heap_fresh
    double fresh_pages(double bytes) const;     // of one tensor: its 4 KiB pages x fresh_share
    double fresh_seconds(double bytes) const;   // their time (mapped_page from 32 MiB on, else fresh_page)
    double seconds(double bytes, DType d) const;  // one tensor's read, warm (in the page cache)
    // A cold prefill's copy of a tensor out of a file not in the page cache, over the warm copy
    // (the kernel reads ahead while the copy runs: the copy's time, not the disk's, where the disk
    // keeps up); per dtype, 1 where not measured. Fresh pages not included.
    std::map<DType, double> cold_scale;
    double cold_copy_seconds(double bytes, DType d) const;
    double copy_scale_of(DType d) const { return scale_of(copy_scale, d); }  // 1 where not measured
    double cold_scale_of(DType d) const { return scale_of(cold_scale, d); }

   private:
    static double scale_of(const std::map<DType, double>& m, DType d) {
      const auto it = m.find(d);
      return it != m.end() ? it->second : 1.0;
    }
  };
  std::optional<TorchOffload> torch_offload;
  std::string calibration_name;  // "" = datasheet only
  // The runtime these rates describe (sim/runtime.h) and its host time per forward (generate's
  // loop around the model), charged once per prefill and per decode step.
  Runtime runtime = Runtime::kDmap;
  Figure step_overhead{0, Source::kDatasheet};
  // Mixture of experts: the share of a layer's experts routing spreads tokens over, uniformly
  // (1, the assumption, until a calibration measures skew).
  Figure routing_spread{1.0, Source::kDatasheet};
  // The share of those one sequence's tokens spread over (1: its tokens route independently).
  Figure sequence_spread{1.0, Source::kDatasheet};
};

// Datasheet figures scaled by the achievable fractions, then the calibration's figures.
Rates make_rates(const Hardware& hw, const Calibration* calibration);

// The calibration's measured profile of `r`, else its estimate (sim/runtime.h).
RuntimeProfile profile_for(const Calibration* calibration, Runtime r);
// `base` (dmap's figures, make_rates) as runtime `r` achieves them: the host's product rates
// scaled by the profile's efficiencies (one-row products by matvec_efficiency, M >= 2 by
// matmul_efficiency; attention and GPU products as dmap's: cuBLAS-class kernels everywhere), the
// per-operator overheads, accelerate's per-tensor hook and the per-forward overhead replaced where
// the profile gives them. Runtime::kDmap returns `base`.
Rates runtime_rates(const Rates& base, Runtime r, const RuntimeProfile& profile);

}  // namespace dmap::sim
