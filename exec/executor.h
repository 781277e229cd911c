// What every executor offers (the CPU executor, and the GPU orchestration over a device runtime):
// a forward of the last positions' logits, per-module times per phase, optional events for
// timelines, disk and expert counters; and generate(), the greedy run loop over any of them.
//
// Example:
//   std::unique_ptr<Executor> m = make_executor(cfg, weights, placement, Backend::kCpu, opt);  // exec/backend.h
//   GenerateResult r = generate(*m, prompt_ids, P, 32);
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "exec/config.h"

namespace dmap::exec {

struct RunOptions {
  int64_t batch = 1;
  int64_t max_seq = 256;
  int threads = 1;
  bool drop_page_cache = false;  // evict disk-offloaded tensors from the page cache before each read (cold disk)
  bool record_events = false;    // keep one ModuleEvent per module and forward (for traces)
};

// One module's execution in one forward: for timelines (Chrome traces).
struct ModuleEvent {
  int module = 0;      // index into module_times()
  int step = -1;       // -1 prefill, else the decode step
  double start_s = 0;  // since the model was created
  double dur_s = 0;
};

// Time spent in each module, per phase (seconds). Modules: embed, layers.N.<layer_modules()>,
// norm, lm_head.
struct ModuleTime {
  std::string module;
  double prefill_s = 0;
  std::vector<double> decode_s;  // one entry per decode step
};

// Mixture of experts, measured: per sparse-layer forward, how many distinct experts the routed
// rows touched, summed over the forwards of each phase (prefill, decode), with the rows routed.
struct ExpertCounts {
  int64_t prefill_forwards = 0, decode_forwards = 0;  // sparse-layer forwards
  int64_t prefill_touched = 0, decode_touched = 0;    // distinct experts, summed
  int64_t prefill_rows = 0, decode_rows = 0;          // tokens routed, summed
};

// What generate(), `dmap run` and the profiler need from an executor (CPU or CUDA backend).
class Executor {
 public:
  virtual ~Executor() = default;
  // ids: batch x T token ids (row-major). Positions start..start+T-1. Writes the logits of the
  // last position of each sequence: batch x vocab (float32, on the host).
  virtual void forward(const int32_t* ids, int64_t T, int64_t start, float* logits) = 0;
  // Per-module timing: `begin_phase(true)` before prefill, `begin_phase(false)` before each
  // decode step.
  virtual void begin_phase(bool prefill) = 0;
  virtual const std::vector<ModuleTime>& module_times() const = 0;
  virtual const std::vector<ModuleEvent>& events() const = 0;
  virtual const ExecConfig& config() const = 0;
  virtual const RunOptions& options() const = 0;
  virtual uint64_t disk_bytes_read() const = 0;
  // Wall time spent reading disk-offloaded tensors so far (part of the forwards' time).
  virtual double disk_read_seconds() const = 0;
  // Cold-disk runs: evict disk-offloaded tensors from the page cache before each read, or stop.
  virtual void set_drop_page_cache(bool drop) = 0;
  // Routed experts touched so far (empty for a dense model or a backend that does not count).
  virtual ExpertCounts expert_counts() const { return {}; }
  // Sizes and touches the work buffers a forward of T tokens per sequence needs, so that the
  // first such forward pays no first-touch page faults — as llama.cpp reserves its compute buffers
  // when a context is created. A no-op for a backend with nothing to reserve.
  virtual void reserve(int64_t T) { (void)T; }
};

// The module names of module_times(), in order: embed, layers.N.<layer_modules()>, norm, lm_head.
std::vector<ModuleTime> module_slots(const ExecConfig& cfg);

struct GenerateResult {
  std::vector<std::vector<int32_t>> tokens;  // per sequence: the new tokens
  double prefill_s = 0;
  std::vector<double> decode_s;     // per decode step
  std::vector<float> first_logits;  // batch x vocab: the logits after prefill
};

// Prefill `prompt` (batch x P), then greedy decode until `new_tokens` tokens per sequence.
// `progress` (optional) is called after every forward with (tokens done, tokens wanted).
GenerateResult generate(Executor& model, const std::vector<int32_t>& prompt, int64_t prompt_len, int64_t new_tokens,
                        const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace dmap::exec
