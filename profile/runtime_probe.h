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
// and with a disk-offload run (accelerate's, the last layers on disk):
//   offload_copy_gbs,  a load_offloaded_weight's copy and each fresh 4 KiB page it touches, timed
//   fresh_page_us      apart by the probe (offload_rates)
//   heap_fresh_share,  the share of heap-served tensors' pages that are fresh and each dtype's
//   offload_read_scale scale on the reads' time: the disk run's decode (fit_offload_reads)
//   offload_cold_factor a factor on dmap's disk rate: the cold prefill
//
// Example:
//   const TorchProbe p = run_torch_probe({script, find_torch_python(), spec.source, dtypes, rs, 3});
//   const TorchFit f = fit_torch_profile(spec, hw, base_calibration, p);
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/model_spec.h"
#include "profile/profile.h"
#include "profile/runtime_fit.h"
#include "sim/calibration.h"
#include "sim/hardware.h"

namespace dmap::profile {

struct TorchRun {
  DType dtype = DType::kFloat32;
  std::vector<double> prefill_s, decode_s, loop_s, tiny_decode_s;  // one per repetition
  std::vector<MatvecSample> matvec;   // one-row products over a grid of shapes (empty: not timed)
  std::vector<double> decode_faults;  // minor page faults of a decode step, per repetition (where recorded)
  double prefill() const;             // median
  double decode() const;              // median of forward + loop: what a decode step costs
  double loop() const;                // median
  double tiny_decode() const;         // median
};

struct TorchProbe {
  std::string torch_version, implementation, model_type;
  int threads = 0;
  int64_t prompt = 0, new_tokens = 0;
  int64_t disk_layers = 0;  // the last layers offloaded to disk as accelerate offloads them (0: none)
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
};
// Runs the probe (its stderr passes through) and reads its JSON. RuntimeFailure when it fails.
TorchProbe run_torch_probe(const TorchProbeOptions& opt);

// A fit's probe runs in kTorchFitSessions processes (the grid in the first only): one process can
// meet the VM's memory 12-20 % away from the others for its whole life (docs/PERFORMANCE.md).
constexpr int kTorchFitSessions = 3;
// The sessions as one probe: each dtype's repetitions pooled (its medians then over all of them),
// the one-row grid from the session that timed it. InternalError unless every session ran the
// same dtypes with the same settings.
TorchProbe merge_torch_probes(const std::vector<TorchProbe>& sessions);

struct TorchFit {
  sim::RuntimeProfile profile;
  double kernels_per_step = 0;           // the cost model's operator count of one decode step
  std::vector<SelfCheckRow> self_check;  // the probe's runs (CPU-only, disk offload), predicted with the profile
  std::vector<std::string> summary;      // one line per fitted figure
  YAML::Node fit;                        // for the calibration's fit block
};
// `probe` ran the model CPU-only; `offload`, where given, ran it with its last layers on disk
// (TorchProbe::disk_layers) and timed its copies (OffloadRates): the decode reads are priced from
// those (RuntimeProfile::offload_copy_gbs, fresh_page_us) with the share of heap-served tensors'
// pages that are fresh (heap_fresh_share) fitted with one scale on the reads' time across dtypes
// (fit_offload_reads), then each dtype's own scale at that share (offload_read_scale: its run
// exactly); the cold prefill's reads as a factor on dmap's disk rate (offload_cold_factor).
// The two figures of accelerate's decode reads (fit_torch_profile): `decode(dtype, scale, share)`
// predicts a disk-offload run's decode step with the reads' time (copies and fresh pages, as the
// probe timed them alone) scaled by `scale` and `share` of the heap-served tensors' pages fresh.
// From two or more runs: the share (0..1) whose scale, matching the runs together, leaves the
// smallest worst run (their tensors differ against glibc's threshold: TinyLlama's float32 MLP
// weights, 44 MiB, are always mapped afresh, its bfloat16 ones, 22 MiB, come from the heap). From
// one: the share alone, the scale only where the share cannot reach it. `how` says which.
struct OffloadReadFit {
  double scale = 1, share = 1;
  std::string how;
};
OffloadReadFit fit_offload_reads(const std::function<double(DType, double, double)>& decode,
                                 const std::vector<TorchRun>& runs);

TorchFit fit_torch_profile(const ModelSpec& spec, const sim::Hardware& hw, const sim::Calibration& base,
                           const TorchProbe& probe, const TorchProbe* offload = nullptr);

}  // namespace dmap::profile
