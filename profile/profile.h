// `dmap profile`: calibrate the cost model from timed runs of dmap's own CPU executor, and check
// its predictions against measurements it was not fitted on.
//
// Data flow:
//   profile_cpu:  micro-benchmarks on the executor's kernels at the model's shapes
//                   matrix-vector (M = 1) per dtype   --fit_line-->  memory bandwidth, M = 1 rate
//                   matrix products (M = 2..256)     --median-->    matmul_gflops curve per dtype
//                   attention alone over contexts      --fit_line-->  attention_gflops curve, attention_overhead_us
//                   (decode) and prompts (prefill)
//                   disk reads cold / warm             --fit_line-->  disk read_gbs + latency, page cache (probe)
//                   a tiny-shaped model's decode       -->            dispatch_overhead_us per operator kernel
//                 whole-model CPU runs of the model, CPU-only and a third of the layers on disk
//                   decode measured vs predicted       --scale-->     M = 1 rates / memory bandwidth as decode streams
//                   disk run - CPU-only run            -->            cold disk and page-cache rates as the executor
//                   reads
//                 --> calibration YAML (provenance, fit residuals) + Chrome trace of the runs
//                 (with profile_gpu's sections when a GPU is profiled: profile/gpu_profile.h)
//   validate:     placements of several models, none of them used in the fit: predict
//                 (sim::simulate with the calibration), run for real in rounds (random order,
//                 quiet machine), compare --> table, median / p90 error, regret, Markdown + SVG +
//                 Chrome trace holding the predicted timeline next to the measured one.
//
// Example:
//   ProfileResult r = profile_cpu(opt, hardware);
//   write_text_file("configs/calibrations/this-vm.yaml", r.yaml);
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/device_map.h"
#include "core/dtype.h"
#include "core/model_spec.h"
#include "core/module_tree.h"
#include "exec/model.h"
#include "exec/placement.h"
#include "profile/fit.h"
#include "profile/load_guard.h"
#include "trace/gpu_trace.h"
#include "core/noise_floor.h"
#include "profile/quiet.h"
#include "report/validation_report.h"
#include "trace/trace.h"
#include "sim/calibration.h"
#include "sim/hardware.h"
#include "sim/simulate.h"

namespace dmap::profile {

// The trace model (trace/): traces the profiler writes and reads.
using trace::ActivityKind;
using trace::chrome_trace;
using trace::ExternalRange;
using trace::gpu_trace_json;
using trace::GpuActivity;
using trace::GpuTrace;
using trace::HostRange;
using trace::module_aggregates;
using trace::ModuleAggregate;
using trace::parse_gpu_trace;
using trace::Trace;
using trace::TraceEvent;
using trace::write_text_file;

// (what is being measured, steps done, steps in all)
using ProgressFn = std::function<void(const std::string&, int, int)>;

// ---- whole-model runs ------------------------------------------------------------------------

// Everything on the CPU except the last `disk_layers` decoder layers, which go to disk (where
// accelerate's "auto" puts what RAM cannot hold).
DeviceMap layers_on_disk_map(const ModelSpec& spec, int64_t disk_layers);
// The layers a fraction of `layers` (in [0, 1]) puts on disk: the nearest count, halves up.
int64_t layers_of_fraction(double fraction, int64_t layers);
// Everything on the CPU but the routed experts modules of the last `disk_layers` sparse layers,
// on disk (a mixture-of-experts model's experts offloaded, the rest of each layer in RAM).
DeviceMap experts_on_disk_map(const ModelSpec& spec, int64_t disk_layers);

struct PlacementRun {
  double prefill_s = 0;
  double decode_token_s = 0;  // median over the decode steps
  std::vector<double> decode_s;
  std::vector<exec::ModuleTime> modules;
  std::vector<exec::ModuleEvent> events;
  uint64_t disk_bytes_read = 0;
  int64_t forwards = 0;  // prefill + decode steps
  // Bytes the whole machine read from block devices during the decode steps (/proc/vmstat
  // pgpgin; -1 where unreadable): decode re-reads disk-offloaded weights from the page cache,
  // so anything here is page-cache misses (or another process's reads).
  double decode_device_read_bytes = -1;
  // Wall time per decode step spent reading disk-offloaded tensors (page-cache copies).
  double decode_disk_read_s = 0;
  // With RunSettings::time_steps: per weight, the time per decode step of the layer steps using it
  // (its product, and its read when on disk; exec::RunOutcome::decode_weight_s).
  std::map<std::string, double> decode_weight_s;
  exec::ExpertCounts experts;  // routed experts the measured run's forwards touched (MoE models)
  // With RunSettings::read_weights: one timed read of the run's own memory-resident weights just
  // before its measured run (read_weights; else 0): the speed of the memory this run was given
  // (on the AMD EPYC VM, pools allocated together read 20-37 GB/s apart: docs/PERFORMANCE.md,
  // thirteenth session).
  double weights_gbs = 0;
};

struct RunSettings {
  std::string backend = "cpu";                               // or "cuda": the CUDA executor, for maps with GPUs
  exec::Semantics semantics = exec::Semantics::kAccelerate;  // how the CUDA executor runs cpu/disk units
  int64_t prompt = 64;
  int64_t new_tokens = 8;
  int64_t batch = 1;  // sequences, each its own random prompt
  int threads = 1;
  std::string scratch_dir;   // disk-offloaded tensors are written below it
  uint64_t seed = 0;         // the random weights (and, unless prompt_seed is set, the prompts: seed + 1)
  uint64_t prompt_seed = 0;  // the prompts' random token ids (0: seed + 1)
  int prefill_reps = 3;      // prefill_s is the median of this many cold prefills
  // Time one read of the run's weights before its measured run (PlacementRun::weights_gbs). Off
  // by default: nothing in the calibration or validation uses it yet (drift_bench does).
  bool read_weights = false;
  // Time each layer step of the decode (PlacementRun::decode_weight_s; CPU executor only).
  bool time_steps = false;
  // Called just before the first decode step (after the measured prefill) and just after the
  // last, outside every timed span: the calibration and the validation take the reference probe
  // here, where the machine's state is the decode's own. Probes around the whole run were ~15 s
  // from TinyLlama float32's decode (random weights, three cold prefills), and a shared VM's
  // memory moves by 20 % within seconds (docs/PERFORMANCE.md, "Probing the decode itself").
  std::function<void()> before_decode, after_decode;
};

// exec::make_executor (exec/backend.h) for a backend named as run settings name it ("cpu",
// "cuda", "emulated"). RuntimeFailure for "cuda" in a build without CUDA.
std::unique_ptr<exec::Executor> make_executor(const exec::ExecConfig& cfg, const exec::ModelWeights& weights,
                                              const exec::Placement& p, const std::string& backend,
                                              const exec::RunOptions& opt);

// The simulator's semantics for a run: kCpu when nothing is on a GPU (or the CPU backend runs
// it), else the CUDA executor's semantics.
sim::Semantics sim_semantics(const DeviceMap& dm, const RunSettings& rs);

// Runs `dm` on the backend's executor with random weights. Disk-mapped tensors are read from their
// files every forward, evicted from the page cache before each prefill (a cold start, as after
// loading) and served from it during decode. Prefill is timed `prefill_reps` times (after one
// warm-up; the last one fills the KV cache the decode steps use) and the median kept: one cold
// prefill on a shared VM's network disk varied by ±40 % from run to run.
PlacementRun run_placement(const ModelSpec& spec, DType dtype, const DeviceMap& dm, const RunSettings& rs);

// The simulator's prediction of the same run (under `runtime`: its profile from the calibration,
// else its estimate; sim/runtime.h).
sim::Prediction predict(const ModelSpec& spec, DType dtype, const DeviceMap& dm, const sim::Hardware& hw,
                        const sim::Calibration* cal, int64_t prompt, int64_t new_tokens,
                        sim::Semantics semantics = sim::Semantics::kCpu, sim::Runtime runtime = sim::Runtime::kDmap,
                        int64_t batch = 1);
// Distinct routed experts per sparse-layer forward of `tokens` tokens from `sequences` sequences,
// as the cost model counts them (uniform routing, or the calibration's moe.routing_spread and
// moe.sequence_spread); 0 for a dense model.
double predicted_touched_experts(const ModelSpec& spec, const sim::Calibration* cal, double tokens,
                                 double sequences = 1);

// ---- calibration -----------------------------------------------------------------------------

// Attention timed alone over contexts (decode: one query, (context, seconds)) and prompts
// (causal prefill: (prompt, seconds)) -> seconds = intercept + slope x context, the fixed cost
// per op (the intercept, >= 0) and the rate curve by query rows (M = 1 from the slope, M = prompt
// from each prefill less the fixed cost), counting 4 FLOPs per (query, key, head, dim) as the
// cost model does. Shared by the CPU and GPU profilers.
struct AttentionFit {
  LineFit decode;
  double overhead_s = 0;
  std::vector<std::pair<double, double>> curve;  // (query rows M, FLOP/s)
};
AttentionFit fit_attention(int64_t heads, int64_t head_dim, const std::vector<std::pair<double, double>>& decode,
                           const std::vector<std::pair<double, double>>& prefill);

// The GPU and link part of a calibration (measured by profile_gpu, profile/gpu_profile.h),
// merged into the file profile_cpu writes.
struct GpuSections {
  std::string gpu_name, driver;             // provenance
  std::map<int, sim::GpuCalibration> gpus;  // by ordinal
  sim::LinkCalibration link;
  std::string fit_yaml;  // lines under `fit:` (free-form residuals)
  double offload_tensor_overhead_us = 0;
};

struct ProfileOptions {
  ModelSpec model;  // shapes of the micro-benchmarks, and the whole-model runs
  std::string model_id;
  std::vector<DType> dtypes;  // float32 / float16 / bfloat16
  RunSettings run;            // whole-model runs
  std::string name = "cpu";   // the calibration's name
  std::string command;        // how it was invoked (provenance)
  bool quick = false;         // fewer sizes and repetitions (CI)
  ProgressFn progress;
  const GpuSections* gpu = nullptr;  // GPU figures to write into the same calibration
  LoadGuardSettings guard;           // quiet before each measurement, re-measured or refused when loaded
};

// One of the calibration's own whole-model runs, predicted by the finished calibration.
struct SelfCheckRow {
  DType dtype = DType::kFloat32;
  std::string placement;  // "cpu" or "disk N/L layers"
  double measured_prefill_s = 0, predicted_prefill_s = 0, measured_decode_s = 0, predicted_decode_s = 0;
  // The machine's state during the run against the state the calibration describes (its CPU-only
  // runs'): the measured decode is compared divided by it. profile_cpu's disk runs: their median
  // over (the CPU-only runs' median + the pairs' median extra, each pair's disk run less its
  // CPU-only partner scaled by resident_ratio, probes.h); 1 elsewhere.
  double state_ratio = 1;
  // A phase not checked is shown, not held to the limit (the transformers fit's disk rows: each
  // process's run fits one phase exactly, its other phase is predicted from another process's).
  bool prefill_checked = true, decode_checked = true;
  double worst_error() const;  // the larger |predicted / measured - 1| of the phases checked
};

// A disk run's state_ratio: its decode (the median of its runs) over the decode it would have had
// at the CPU-only runs' state — the CPU-only runs' median plus the median of the pairs' extras
// (each pair's disk run less its CPU-only partner scaled by resident_ratio). 1 without extras.
double disk_state_ratio(double disk_decode_s, double cpu_decode_s, const std::vector<double>& pair_extras_s);

// The most a calibration may mispredict its own whole-model runs: `dmap profile --real` refuses
// (exit 1, nothing written) past it.
constexpr double kSelfCheckLimit = 0.05;

// Whether every row is within `limit` in both phases, the worst error, and the rows as the profiler
// prints them (each row past the limit marked). No rows do not pass.
struct SelfCheckVerdict {
  bool passed = false;
  double worst = 0;
  std::string text;
};
SelfCheckVerdict check_self(const std::vector<SelfCheckRow>& rows, double limit = kSelfCheckLimit);

struct ProfileResult {
  sim::Calibration calibration;          // what was fitted
  std::string yaml;                      // the calibration file (sim::calibration_yaml of it)
  Trace trace;                           // the whole-model runs
  std::vector<std::string> summary;      // one line per fitted figure
  std::vector<SelfCheckRow> self_check;  // the whole-model runs (CPU-only and with layers on disk), predicted
};

ProfileResult profile_cpu(const ProfileOptions& opt, const sim::Hardware& hw);

// The reference probe: the median milliseconds of `reads` float32 matrix-vector products of
// 4096 x 2048 (32 MiB), each reading the next copy of a pool past the last-level cache
// (dram_pool_bytes, at least 128 MiB; allocated once per process), with `threads` threads (probes.cpp), after
// one pass over the whole pool (on the EPYC VM single first reads of a pool ran as slow as 1.4 GB/s
// against a 46 GB/s median, and a probe without that pass read 2.3 ms with a 512 MiB pool and
// 14.1 ms with a 2 GiB one in two calibrations minutes apart). A fixed stream from memory, about
// 40 ms with the default 60 reads. Its back-to-back spread (max / min of 30 calls) on the AVX-512
// EPYC VM of 2026-12-04 was 1.26 with 15 reads, 1.17 with 60 and 1.16 with 240: the machine itself
// moves at that time scale, so more reads buy little; bracketing a run (before and after) does more.
// The profiler records the median of the probes bracketing the calibration's own CPU-only runs
// (host.reference_probe_ms), and the validation brackets every measurement with it, so a report
// can say how far the machine's speed has moved since.
// `dtype`: the same stream in a 16-bit dtype (4096 x 4096, 32 MiB per read, its own pool), whose
// kernel is the one that dtype's decode runs: on the AVX2 EPYC a bfloat16 decode moved with the
// float32 probe at an elasticity of 0.3 only (docs/PERFORMANCE.md, "Probing the decode itself").
constexpr int kReferenceProbeReads = 60;
double reference_probe_ms(int threads, int reads = kReferenceProbeReads, DType dtype = DType::kFloat32);

// Reads every memory-resident weight of `w` once (`threads` threads; disk-offloaded ones are
// skipped), timed: what the reference probe's own pool cannot say — the speed of the memory these
// weights landed in. On the AMD EPYC VM (12 TinyLlama bfloat16 runs, each on fresh weights) a
// run's decode correlated with this read's time at r = 0.61, with the reference probe's at 0.01.
struct WeightsRead {
  double bytes = 0, seconds = 0;
  double gbs() const { return seconds > 0 ? bytes / seconds / 1e9 : 0.0; }
};
WeightsRead read_weights(const exec::ModelWeights& w, int threads);

// The page-cache probe: GB/s of reading a 64 MiB file, warm in the page cache, into a buffer by
// `threads` threads with pread(), as the executor reads a disk-offloaded tensor warm
// (exec::DiskReader); the median of 5 reads, ~25 ms. The reference probe streams resident memory and does not see
// this: on the EPYC VM the same copies ran at 8-20 GB/s minutes apart while it stayed within a few percent, and one
// validation's disk-read time per token moved 2x between rounds (docs/PERFORMANCE.md). The file is written once per
// process in the temporary folder and unlinked at once (its open descriptor keeps it; nothing is left behind). The
// profiler records the median of the probes bracketing its disk runs (host.page_cache_probe_gbs); the validation
// brackets disk placements.
double page_cache_probe_gbs(int threads);

// ---- validation ------------------------------------------------------------------------------

struct ValidationCase {
  std::string model_id;
  ModelSpec spec;
  DType dtype = DType::kFloat32;
  int64_t disk_layers = 0;       // the map: everything on the CPU but the last layers on disk,
  std::optional<DeviceMap> map;  // unless a map is given (GPU placements)
  std::string backend = "cpu";   // "cuda" for maps with GPUs
  exec::Semantics semantics = exec::Semantics::kAccelerate;
  std::string placement;      // "cpu", "disk 6/22 layers", "gpu 8 GiB, prefetch" ...
  bool experts_only = false;  // disk_layers counts sparse layers whose routed experts alone are on disk
  int64_t batch = 1;          // sequences (each its own random prompt)
  DeviceMap device_map() const {
    return map ? *map : experts_only ? experts_on_disk_map(spec, disk_layers) : layers_on_disk_map(spec, disk_layers);
  }
};

struct ValidationRow {
  ValidationCase c;
  double predicted_prefill_s = 0, measured_prefill_s = 0;  // measured: the median over rounds
  double predicted_decode_s = 0, measured_decode_s = 0;
  std::vector<double> prefill_rounds, decode_rounds;  // one measurement per round
  double predicted_decode_disk_s = 0;                 // of predicted_decode_s: reading disk-offloaded weights
  std::vector<double> decode_disk_rounds;             // of decode_rounds: measured time in those reads
  double foreign_cores = 0;                           // the most other processes' load during a kept measurement
  double decode_device_read_bytes = 0;                // the most read from block devices during a kept run's decode
  int remeasured = 0;                                 // measurements dropped as spoiled by other processes' load
  bool in_fit = false;  // the calibration was fitted on this run (left out of the error figures)
  // MoE models: distinct routed experts per sparse-layer forward, measured (mean over the kept
  // runs' forwards) and as the cost model counts them, with the tokens routed per forward.
  double measured_prefill_touched = 0, predicted_prefill_touched = 0, prefill_routed = 0;
  double measured_decode_touched = 0, predicted_decode_touched = 0, decode_routed = 0;
  // The machine's state: the reference probe (probes.h) over its time at calibration, the mean of
  // the probes just before and just after each kept measurement, per round; empty when the
  // calibration has no probe time.
  std::vector<double> probe_ratios;
  double probe_ratio = 0;  // their median (0: not probed)
  // Placements reading disk-offloaded weights in decode, with a calibration that kept the
  // page-cache probe's rate: that probe's time now over then (its rate then over now), per round.
  std::vector<double> page_cache_ratios;
  // Rounds whose probe ratio was within ±kSteadyBand (the machine as it was calibrated), and the
  // medians over those rounds alone (0 when none was).
  int steady_rounds = 0;
  double steady_prefill_s = 0, steady_decode_s = 0;
  // Decode with the machine's drift taken out: the median over rounds of decode / probe ratio (disk
  // placements: the predicted page-cache share of decode at the page-cache probe's ratio).
  double scaled_decode_s = 0;
  double prefill_error() const { return predicted_prefill_s / measured_prefill_s - 1; }
  double decode_error() const { return predicted_decode_s / measured_decode_s - 1; }
  // The decode prediction against decode scaled round by round by the probe's ratio (decode streams
  // weights from memory, as the probe does); the raw error when not probed.
  double scaled_decode_error() const {
    return scaled_decode_s > 0 ? predicted_decode_s / scaled_decode_s - 1 : decode_error();
  }
  // Measured in at least one round with the machine as it was calibrated; the errors of those rounds.
  bool steady() const { return steady_rounds > 0; }
  double steady_prefill_error() const { return predicted_prefill_s / steady_prefill_s - 1; }
  double steady_decode_error() const { return predicted_decode_s / steady_decode_s - 1; }
  double predicted_total(int64_t n) const {
    return predicted_prefill_s + static_cast<double>(n - 1) * predicted_decode_s;
  }
  double measured_total(int64_t n) const { return measured_prefill_s + static_cast<double>(n - 1) * measured_decode_s; }
};

struct Regret {
  std::string group;        // model and dtype
  std::string recommended;  // the placement predicted fastest
  std::string fastest;      // the placement measured fastest
  double regret = 0;        // measured(recommended) / measured(fastest) - 1
};

// How the validation guards its measurements against a shared machine: every placement is
// measured once per round, each round in a fresh random order (so no placement always runs
// first or after the same neighbour), each measurement after waiting for quiet; one during
// which other processes used more than `spoiled_cores` is measured again (up to `retries`).
//
// With a calibration that holds a reference probe time, each measurement's decode is also
// bracketed by the probe (RunSettings::before_decode / after_decode: after the weights are made
// and the prefills run, just before the first decode step and just after the last): before it,
// the probe is repeated (every `steady_pause_s`, up to `steady_tries` times) until it reads within
// ±kSteadyBand of calibration time, and the decode goes ahead either way; a measurement whose
// probes before and after differ by more than `moved_limit` (the machine changed speed during the
// decode) is measured again, within the same `retries`. The prefill is not waited for: it ran
// just before, and a round is steady or not by its decode's probes. Placements that read disk-offloaded
// weights in decode are bracketed by the page-cache probe too, when the calibration kept its rate:
// the wait is for both to read within the band; a page-cache move alone is recorded, not re-measured.
constexpr double kSteadyBand = 0.03;
struct ValidationSettings {
  int rounds = 3;
  uint64_t order_seed = 1;
  QuietSettings quiet;  // max_wait_s = 0: do not wait (the load is still recorded)
  double spoiled_cores = 0.15;
  int retries = 2;
  int steady_tries = 10;
  double steady_pause_s = 1.0;
  double moved_limit = 0.06;
  // Probed validations: after the `rounds`, up to `extra_rounds` more passes over the placements
  // not yet measured in a steady round (each pass in a fresh random order, only those). The issue's
  // targets apply to rounds with the machine as it was calibrated; a shared VM drifts in and out of
  // that state over minutes, so a placement unlucky in every round is given a few more chances.
  int extra_rounds = 3;
  // MoE models without routing figures in the calibration: measure them first (probe_routing).
  bool routing_probe = true;
};

// The routing figures a validation predicted a MoE model with: the calibration's moe section, else
// measured by probe_routing on prompts of its own (the validation's runs never use them), else
// uniform routing.
struct RoutingFit {
  std::string model_id;
  std::string source;  // "calibration", "probe" or "uniform"
  double spread = 1, sequence_spread = 1;
  // The probe's counts per sparse-layer forward: a decode step of `decode_sequences` sequences,
  // one sequence's prefill of `prefill_tokens` tokens (the mean over `prefill_prompts` prompts),
  // and the prefill of `decode_sequences` sequences of `prefill_tokens` tokens each.
  double decode_sequences = 0, decode_touched = 0;
  double prefill_tokens = 0, prefill_touched = 0;
  int prefill_prompts = 0;
  double batch_prefill_touched = 0;
  double rms_log_error = 0;  // of the three counts as the fitted figures predict them
};
// Routing probe: `c`'s model on the CPU alone with the validation's weights and prompts of its own
// seeds: a decode at batch `batch`, one sequence's prefill (three prompts) and `batch`
// sequences' prefill; both figures fitted to the three counts at once (sim::routing_spreads_of).
// Only the executor's expert counts are used.
RoutingFit probe_routing(const ValidationCase& c, const RunSettings& rs, int64_t batch = 4);

struct ValidationResult {
  std::vector<ValidationRow> rows;
  std::vector<Regret> regrets;
  double decode_median_abs = 0, decode_p90_abs = 0, prefill_median_abs = 0, prefill_p90_abs = 0;
  double max_regret = 0;
  // Drift (when the calibration holds a probe time): held-out rows whose probe stayed within ±3 %,
  // their raw errors, and the decode error of every held-out row with scaled predictions.
  bool probed = false;
  int held_out = 0, steady_rows = 0;
  double steady_decode_median_abs = 0, steady_decode_p90_abs = 0, steady_prefill_median_abs = 0;
  double scaled_decode_median_abs = 0, scaled_decode_p90_abs = 0;
  // The error figures a perfect prediction would show given the held-out rows' own rounds
  // (core/noise_floor.h): how much of the figures above is the machine's drift.
  NoiseFloor decode_noise, prefill_noise;
  RunSettings run;
  ValidationSettings settings;
  int not_quiet = 0;                // measurements started although the machine never became quiet
  int moved = 0;                    // measurements taken again because the machine changed speed during them
  int extra_measurements = 0;       // rounds beyond `settings.rounds` (placements without a steady round)
  std::vector<RoutingFit> routing;  // per MoE model
  Trace trace;                      // measured and predicted timelines of the first case
};

// The figures of a validation from its rows' rounds (the per-row medians, steady rounds, scaled
// decode, the error medians and percentiles, the regrets). validate() calls it; it is separate so
// that it can be checked on synthetic timings.
void summarize(ValidationResult& v);
// Round k of a probed row was measured with the machine as it was calibrated (the reference probe,
// and the page-cache probe where the row has one, within ±kSteadyBand); whether any round was.
bool steady_round(const ValidationRow& row, size_t k);
bool any_steady_round(const ValidationRow& row);

ValidationResult validate(const std::vector<ValidationCase>& cases, const sim::Hardware& hw,
                          const sim::Calibration& cal, const RunSettings& rs, const ValidationSettings& vs,
                          const ProgressFn& progress);

// The results as the report renders them (report/validation_report.h: validation_markdown writes
// reports/validation/<machine>.md, linking `svg_name` and `trace_name` written next to it).
report::ValidationTable validation_table(const ValidationResult& r, const std::string& name, const std::string& machine,
                                         const std::string& calibration_file, const std::string& svg_name,
                                         const std::string& trace_name);

// "Intel(R) Xeon(R) ..., 2 CPUs" from /proc/cpuinfo.
std::string cpu_description();
// The vector ISA dmap's kernels can use here, from /proc/cpuinfo's flags: "AVX-512, AMX", "AVX2", ...;
// under DMAP_ISA the capped one first: "AVX2 (kernels capped by DMAP_ISA=avx2; the CPU has AVX-512)".
std::string cpu_isa();
// A file name for this CPU: "amd_epyc_2cpu_avx512", "intel_xeon_platinum_8488c_2cpu_avx512_amx" —
// the default name of `dmap profile`'s calibration and validation report.
std::string cpu_slug();
// A host preset for this machine, as YAML (configs/hardware's `kind: host` keys): its CPU, ISA,
// cores and RAM read from the machine; memory bandwidth and peak FLOP/s are estimates from the
// core count and ISA, which a calibration replaces. `dmap profile` predicts with it unless
// --hardware names a preset.
std::string detected_host_yaml();

}  // namespace dmap::profile
