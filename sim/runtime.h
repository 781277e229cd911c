// Runtimes: the program a placement runs under, and what it does to the cost model's figures
// (DESIGN.md, "Runtimes"). Hardware rates are shared (measured by dmap's profiler); a runtime adds
// a profile: host overhead per operator and per forward, and how much of the hardware's product
// rate its kernels reach, per dtype.
//
//   dmap          dmap's own executor, every semantics (its figures are the calibration's own)
//   transformers  PyTorch eager with accelerate's hooks: the `accelerate` and `cpu` rows
//   llama.cpp     the in-place split (-ngl, --n-cpu-moe) and CPU-only
//
// Data flow: Calibration.runtimes (measured by `dmap profile --real --runtime R`) or
//            estimated_profile(R) --> runtime_rates(base Rates, R, profile) --> CostModel
//
// Calibration schema (under `runtimes:` in configs/calibrations/<name>.yaml; every key optional):
//
//   runtimes:
//     transformers:
//       source: measured                # or estimate (the output says which)
//       version: "torch 1.13.1 (plain PyTorch with transformers' op structure)"
//       op_overhead_us: 21              # host time per operator of the cost model's count
//                                       # (Python, the dispatcher), replacing dmap's dispatch figure
//       step_overhead_us: 350           # per forward: the generation loop around the model
//       matvec_efficiency: {float32: 0.72, bfloat16: 0.3}   # of the hardware's one-row product rate
//       matmul_efficiency: {float32: 0.9, bfloat16: 0.45}   # of its rate for M >= 2 rows
//       gpu_op_overhead_us: 14          # per operator on a GPU (launch from Python)
//       offload_tensor_overhead_us: 45  # accelerate's hook per streamed tensor
//     llama.cpp:
//       matvec_gbs: {float32: 52.1}     # its own one-row products: weight bytes streamed per second
//       matvec_row_ns: {float32: 3.2}   # and a cost per output row (fitted over a grid of shapes)
//       load: {float32: no-mmap, bfloat16: mmap}  # the load mode predicted (and advised) per dtype;
//                                       # one word (mmap or no-mmap) for every dtype
//       mapped_factor: {float32: 1.8}   # measured: decode with the file mapped / read into memory
//     (either)
//       unsupported_dtypes: {float16: "\"addmm_impl_cpu_\" not implemented for 'Half'"}
//                                       # measured: dtypes it cannot compute in on this CPU, and why
//
// A dtype missing from an efficiency map takes float32's, else 1. With matvec_gbs for a dtype, a
// one-row product streams at that rate (not the hardware's) times matvec_efficiency (then the
// whole model's residual), and pays matvec_row_ns per output row (not dmap's kernels' cost).
//
// Example:
//   const RuntimeProfile p = profile_for(cal, Runtime::kTransformers);   // measured or estimate
//   Rates r = runtime_rates(make_rates(hw, &cal), Runtime::kTransformers, p);
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/semantics.h"

namespace dmap::sim {

enum class Runtime { kDmap, kTransformers, kLlamaCpp };
std::string runtime_name(Runtime r);                         // "dmap", "transformers", "llama.cpp"
std::optional<Runtime> parse_runtime(const std::string& s);  // also "llama_cpp", "llamacpp"
// The calibration's `fit:` key of a runtime's profile fit ("runtime_transformers", "runtime_llama_cpp").
std::string runtime_fit_key(Runtime r);
const std::vector<Runtime>& all_runtimes();
// Whether the runtime can run offloaded entries under `s` (transformers: accelerate; llama.cpp:
// in-place; dmap: all). Every runtime runs CPU-only (Semantics::kCpu).
bool runtime_runs(Runtime r, Semantics s);

struct RuntimeProfile {
  bool measured = false;  // false: an estimate
  std::string version;    // what ran ("torch 1.13.1 ...", "llama.cpp b6000"), or where an estimate comes from
  std::optional<double> op_overhead_us, step_overhead_us, gpu_op_overhead_us, offload_tensor_overhead_us;
  std::map<DType, double> matvec_efficiency, matmul_efficiency;
  double matvec_for(DType d) const;  // d's, else float32's, else 1
  double matmul_for(DType d) const;
  std::map<DType, double> matvec_gbs, matvec_row_ns;  // the runtime's own one-row product terms (measured)
  // llama.cpp: predicted (and advised) with --no-mmap, per dtype where `load` has it, else `no_mmap`.
  bool no_mmap = false;
  std::map<DType, bool> load;
  bool no_mmap_in(DType d) const;
  std::map<DType, double> mapped_factor;  // llama.cpp: mapped decode / read-into-memory decode
  // transformers: accelerate's reads of disk-offloaded weights on the CPU, each tensor copied out of
  // a fresh memory map of its file into a new tensor. In decode (the file in the page cache), per
  // tensor: offload_copy_scale x bytes / offload_copy_gbs (the copy as timed alone, and the dtype's
  // factor within a forward: fitted on a run with glibc keeping what it frees, where no page is
  // fresh), plus, within a forward, mapped_page_us for each 4 KiB page of a tensor of 32 MiB or
  // more (glibc maps those afresh: its mmap threshold stops rising at 32 MiB; fresh_page_us where
  // not given) and fresh_page_us for each of heap_fresh_share of a smaller one's pages (glibc's heap
  // is trimmed and grown again between layers, or reused: which depends on the allocations around
  // it, and moves between processes; the share is the fit runs', measured by their page faults).
  // Sim::Rates::TorchOffload. In a cold prefill (the file not in the page cache): the copy x
  // offload_cold_scale (per dtype: the kernel reads the file ahead while the copy runs, so the copy
  // sets the pace where the disk keeps up; dmap's disk rate where it does not), and the same fresh
  // pages.
  std::optional<double> offload_copy_gbs, fresh_page_us, mapped_page_us, heap_fresh_share;
  std::map<DType, double> offload_copy_scale, offload_cold_scale;
  // dtypes the runtime cannot compute in on this machine's CPU, each with the error it gave when
  // the profiler tried (Debian's torch 1.13: "addmm_impl_cpu_" not implemented for 'Half'): a row
  // that computes on the CPU in one of them cannot run under this runtime.
  std::map<DType, std::string> unsupported;
};

// The environment under which glibc keeps what it frees (no block mapped afresh, its heap never
// trimmed), so that accelerate's copies of disk-offloaded tensors land on pages already touched:
// {"MALLOC_MMAP_MAX_=0", "MALLOC_TRIM_THRESHOLD_=68719476736"}; `glibc_keep_freed_text` joins them.
const std::vector<std::string>& glibc_keep_freed_env();
std::string glibc_keep_freed_text();

// The estimate used where a calibration has no measured profile of the runtime (dmap: empty, its
// figures are the calibration's). The sources are in runtime.cpp.
RuntimeProfile estimated_profile(Runtime r);

// Reads `runtimes:` (a mapping runtime name -> profile); errors name the file, line and key.
std::map<Runtime, RuntimeProfile> read_runtime_profiles(const std::string& file, const YAML::Node& node);
// The `runtimes:` block calibration_yaml writes ("" when `m` is empty).
std::string runtime_profiles_yaml(const std::map<Runtime, RuntimeProfile>& m);

}  // namespace dmap::sim
