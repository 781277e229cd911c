// The transformers runtime on this machine: scripts/runtime_probe.py (PyTorch eager with
// transformers' op structure, sim/runtime.h) run with the machine's python3 and torch, its
// timings read back, and the runtime's profile fitted to them against dmap's calibration of the
// same machine (hardware rates are shared; the profile says what PyTorch makes of them).
//
// Data flow: ModelSpec (its YAML) --python3 runtime_probe.py--> TorchProbe (JSON: per dtype
//            prefill, decode forwards, the loop between them, a tiny model's decode)
//            + base Calibration --fit_torch_profile--> RuntimeProfile + self-check rows
//
// The fit, per dtype, as dmap's own (profile_cpu.cpp):
//   op_overhead_us     the tiny model's decode forward (same family and layer count, hidden 64:
//                      almost all per-operator time) over the operators the cost model counts
//   step_overhead_us   the loop between forwards (argmax, the next input), the median
//   matvec_gbs,        PyTorch's own one-row products (F.linear as the model calls it) over the
//   matvec_row_ns      grid of runtime_fit.h's matvec_shapes, when the probe timed them (--real
//                      does): time = intercept + bytes / gbs + rows x row_ns, as llama.cpp's
//   matvec_efficiency  scales that rate (else the calibration's one-row product rate) until the
//                      CPU-only decode step (forward + loop) is predicted exactly: the whole
//                      model's residual
//   matmul_efficiency  the same for M >= 2 and the prefill
// and with two disk-offload runs (accelerate's, the last layers on disk; glibc as it comes, and
// glibc keeping what it frees):
//   offload_copy_gbs    a load_offloaded_weight's copy into touched memory, timed apart by the probe
//   offload_copy_scale  the copy within a forward over alone, per dtype: the default run's decode
//   mapped_page_us,     a fresh 4 KiB page within a forward, of a block glibc maps afresh (32 MiB
//   fresh_page_us       or more) and of its heap: the default runs' extra decode time over the kept
//                       ones against the fresh pages they measured (minor faults over the kept runs')
//   heap_fresh_share    the share of heap-served tensors' pages the default runs found fresh
//   offload_cold_scale  a cold prefill's copy (files evicted from the page cache) over the warm
//                       copy, per dtype: the kept run's prefill (no page fresh)
// Each disk placement runs in kTorchFitSessions processes per glibc mode, taking turns (merged:
// medians over every repetition).
//
// Example:
//   const TorchProbe p = run_torch_probe({script, find_torch_python(), spec.source, dtypes, rs, 3});
//   const TorchFit f = fit_torch_profile(spec, hw, base_calibration, p);
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/model_spec.h"
#include "core/module_tree.h"
#include "profile/profile.h"
#include "profile/runtime_fit.h"
#include "sim/calibration.h"
#include "sim/hardware.h"

namespace dmap::profile {

struct TorchRun {
  DType dtype = DType::kFloat32;
  std::vector<double> prefill_s, decode_s, loop_s, tiny_decode_s;  // one per repetition
  std::vector<MatvecSample> matvec;    // one-row products over a grid of shapes (empty: not timed)
  std::vector<double> decode_faults;   // minor page faults of a decode step, per repetition (where recorded)
  std::vector<double> prefill_faults;  // and of the prefill
  double prefill() const;              // median
  double decode() const;               // median of forward + loop: what a decode step costs
  double loop() const;                 // median
  double tiny_decode() const;          // median
};

struct TorchProbe {
  std::string torch_version, implementation, model_type;
  int threads = 0;
  int64_t prompt = 0, new_tokens = 0;
  int64_t disk_layers = 0;  // the last layers offloaded to disk as accelerate offloads them (0: none)
  bool keep_freed = false;  // it ran with glibc keeping what it frees (sim::glibc_keep_freed_env)
  std::vector<TorchRun> runs;
  // With disk_layers: what load_offloaded_weight costs per byte on this machine, timed apart (a
  // file in the page cache copied into touched memory: copy_gbs; into fresh anonymous memory: the
  // difference per 4 KiB page, fresh_page_us).
  struct OffloadRates {
    double copy_gbs = 0, fresh_page_us = 0;
  };
  std::optional<OffloadRates> offload_rates;
};

// Reads the probe's JSON; InputError naming `origin` when it is not what the probe writes.
TorchProbe parse_torch_probe(const std::string& json, const std::string& origin);

// A python3 that imports torch: $DMAP_PYTHON, else `python3` on PATH, else /usr/bin/python3.
// RuntimeFailure naming what was tried and `apt-get install python3-torch` when none does.
std::string find_torch_python();

struct TorchProbeOptions {
  std::string script;      // scripts/runtime_probe.py
  std::string python;      // find_torch_python()
  std::string model_file;  // the model's YAML or config.json
  std::vector<DType> dtypes;
  RunSettings run;  // threads, prompt, new_tokens, scratch_dir (the JSON goes there)
  int reps = 3;
  std::vector<std::pair<int64_t, int64_t>> matvec;  // one-row product shapes (N, K) to time per dtype
  // The last `disk_layers` decoder layers offloaded to disk as accelerate offloads them (their files
  // in a folder under the run's scratch directory, removed afterwards).
  int64_t disk_layers = 0;
  // Run it with glibc keeping what it frees (sim::glibc_keep_freed_env in its environment): every
  // copy of an offloaded tensor lands on pages already touched.
  bool keep_freed = false;
};
// Runs the probe (its stderr passes through) and reads its JSON. RuntimeFailure when it fails.
TorchProbe run_torch_probe(const TorchProbeOptions& opt);

// `p` measured with the reference probe at `ratio` of calibration time (reference_bracket.h),
// referred to calibration time: the decode steps (forward and loop), the one-row products and the
// offload copies' rates; prefill and the tiny model's steps (compute and per-operator costs) as
// measured. Ratio 0 (not probed): unchanged.
void refer_to_calibration_time(TorchProbe& p, double ratio);

// Which of opt.dtypes this PyTorch can compute a forward's operators in on the CPU (the probe's
// --check-dtypes, a second): the unsupported ones with the first line of PyTorch's error.
struct TorchDtypeSupport {
  std::string torch_version;
  std::map<DType, std::string> unsupported;
};
TorchDtypeSupport torch_dtype_support(const TorchProbeOptions& opt);
// Reads --check-dtypes' JSON; InputError naming `origin` when it is not what the probe writes.
TorchDtypeSupport parse_torch_dtype_support(const std::string& json, const std::string& origin);

// A fit's probe runs in kTorchFitSessions processes (the grid in the first only): one process can
// meet the VM's memory 12-20 % away from the others for its whole life (docs/PERFORMANCE.md).
constexpr int kTorchFitSessions = 3;
// The sessions as one probe: each dtype's repetitions pooled (its medians then over all of them),
// the one-row grid from the session that timed it, the disk probe's rates alone (offload_rates)
// the median of the sessions'. InternalError unless every session ran the
// same dtypes with the same settings.
TorchProbe merge_torch_probes(const std::vector<TorchProbe>& sessions);

struct TorchFit {
  sim::RuntimeProfile profile;
  double kernels_per_step = 0;           // the cost model's operator count of one decode step
  std::vector<SelfCheckRow> self_check;  // the probe's runs (CPU-only, disk offload), predicted with the profile
  std::vector<std::string> summary;      // one line per fitted figure
  YAML::Node fit;                        // for the calibration's fit block
};
// The fresh 4 KiB pages accelerate's copies of decoder layers [first, last) can touch per forward:
// those of tensors of 32 MiB or more (glibc maps each afresh) and those served from its heap.
struct FreshPages {
  double mapped = 0, heap = 0;
};
FreshPages fresh_pages_of(const ModuleTree& tree, DType d, int64_t first, int64_t last);
// A disk-offload run's fresh pages per decode step (or in its prefill): its minor faults over those
// of the same run with glibc keeping what it frees (the memory maps' own faults, one per 16 pages
// read); -1 where either did not record them.
double measured_fresh_pages(const TorchRun& run, const TorchRun& kept, bool prefill = false);
// Fewer fresh pages than this per step over the fit's runs: too few to time.
constexpr double kMinFreshPages = 1000;
// The time of `measured` fresh pages of a forward over decoder layers with `pages`: the first
// pages.mapped of them at mapped_page_us (glibc maps those blocks afresh every time), the rest
// at fresh_page_us (the heap's). 0 where the profile prices no fresh page.
double fresh_seconds(const sim::RuntimeProfile& p, const FreshPages& pages, double measured);
// `p` with glibc keeping what it frees: no page fresh.
sim::RuntimeProfile keeping_freed(sim::RuntimeProfile p);

// `probe` ran the model CPU-only; `offload` and `kept`, where given, ran it with its last layers on
// disk (TorchProbe::disk_layers), glibc as it comes and glibc keeping what it frees. A fresh page's
// time within a forward: the default runs' extra decode over the kept ones against the fresh pages
// they measured (measured_fresh_pages), split into pages of blocks mapped afresh (mapped_page_us)
// and of the heap (fresh_page_us) — exact from a float32 and a bfloat16 run whose tensors fall on
// either side of 32 MiB, else one figure for both; heap_fresh_share, the fresh share of the
// heap-served tensors' pages the default runs measured. A decode read: offload_copy_gbs (the copy
// timed alone) times each dtype's offload_copy_scale — its default run exactly at the fresh pages
// it measured — plus its fresh pages' time. The cold prefill: the copy x offload_cold_scale (or the
// disk, where slower), each dtype's kept run exactly, plus the fresh pages the default run's prefill
// measured. Self-checked: the default runs' decode and the kept runs' prefill (each exact unless
// the solver meets a bound); the other phase of each is shown, not checked (another process's
// figure: between processes this VM drifts by 10-30 %). RuntimeFailure when `offload` lacks its
// copies' timings or its page faults, or `kept` does not match it.
TorchFit fit_torch_profile(const ModelSpec& spec, const sim::Hardware& hw, const sim::Calibration& base,
                           const TorchProbe& probe, const TorchProbe* offload = nullptr,
                           const TorchProbe* kept = nullptr);

}  // namespace dmap::profile
