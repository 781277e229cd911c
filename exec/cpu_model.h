// The CPU executor of the Llama-shaped families — llama (with Llama-3 rope scaling), mistral
// (sliding window), qwen2 (q/k/v bias), gemma (GeGLU, RMSNorm with +1 weight offset, embedding
// scaled by sqrt(hidden), head_dim from the config, tied head), and those of 2025-2026: qwen3 (q/k
// norms per head), olmo2 (norms after attention and MLP only, q/k norms over all heads), phi3
// (fused qkv_proj and gate_up_proj, partial rotary, longrope), gemma2 (four norms per layer,
// alternating sliding-window layers, attention and final logit soft-capping) and gemma3_text (q/k
// norms, sliding-window pattern, a local and a global RoPE): prefill of P tokens, then greedy
// decode, batch >= 1, every module timed per phase. Each layer runs its layer program
// (exec/layer_program.h), which the GPU executor runs too.
//
// Numerics: weights stay in their stored dtype (float32, float16, bfloat16) and are converted in
// registers by the kernels; arithmetic is float32. With 16-bit weights the activations are
// rounded to that dtype where transformers' eager forward materialises a 16-bit tensor (each
// product's output, norms, RoPE terms, scores, probabilities, residual sums), so results follow
// what users get from transformers rather than a more precise float32 run.
//
// Example:
//   CpuModel m(cfg, w, {.batch = 1, .max_seq = 256, .threads = 2});
//   GenerateResult r = generate(m, prompt_ids, P, 32);
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "exec/config.h"
#include "exec/cpu/kernels.h"
#include "exec/cpu/moe.h"
#include "exec/disk_reader.h"
#include "exec/executor.h"
#include "exec/layer_program.h"
#include "exec/weights.h"

namespace dmap::exec {

class CpuModel : public Executor {
 public:
  CpuModel(const ExecConfig& cfg, const ModelWeights& weights, RunOptions opt);

  void forward(const int32_t* ids, int64_t T, int64_t start, float* logits) override;
  const ExecConfig& config() const override { return cfg_; }
  const RunOptions& options() const override { return opt_; }
  void begin_phase(bool prefill) override;
  const std::vector<ModuleTime>& module_times() const override { return times_; }
  const std::vector<ModuleEvent>& events() const override { return events_; }
  uint64_t disk_bytes_read() const override { return disk_.bytes_read(); }
  double disk_read_seconds() const override { return disk_.seconds_reading(); }
  void set_drop_page_cache(bool drop) override { opt_.drop_page_cache = drop; }
  ExpertCounts expert_counts() const override { return experts_; }
  // The activation, attention and MoE buffers of a T-token forward and the disk buffer (the
  // largest disk-offloaded tensor), zero-filled now. KV caches stay allocated by the first forward
  // through their layer.
  void reserve(int64_t T) override;

  // forward() in pieces, for an executor that runs only some modules here (the CUDA backend's
  // in-place semantics). x: batch*T x hidden float32 activations (16-bit values in 16-bit runs).
  //   prepare(T, start); embed(ids, x); layer(l, x) for the layers here; then on the last
  //   position of each sequence (batch x hidden): final_norm(last); head(last, logits).
  void prepare(int64_t T, int64_t start);
  void embed(const int32_t* ids, float* x);
  void layer(int64_t l, float* x);
  void final_norm(float* last);
  void head(const float* last, float* logits);
  void set_record_events(bool record) { opt_.record_events = record; }
  // The attention of layer `l` alone (KV-cache store, scores, softmax, weighted sum; no
  // projections or RoPE) on the activation buffers prepare() sized, as a forward runs it: the
  // profiler's attention micro-benchmark over context lengths.
  void attention_only(int64_t l);
  // Event times are seconds since `epoch` (default: the model's creation).
  void set_epoch(std::chrono::steady_clock::time_point epoch) { epoch_ = epoch; }
  // Step timing, for the step-level benchmark (tests/bench/drift_bench steps): while on, each
  // step of each layer's program adds its wall time to its entry; off (the default), nothing is
  // timed below the modules. step_times() lists every step with its seconds since the last reset
  // (a kModule step, the boundary between two timed modules, stays 0).
  struct StepTime {
    int64_t layer = 0;
    const Step* step = nullptr;
    double seconds = 0;
  };
  void set_time_steps(bool on);
  void reset_step_times();
  std::vector<StepTime> step_times() const;

 private:
  void linear(const std::string& name, const float* x, int64_t M, float* y);
  // The weight, read from disk first when it is offloaded there.
  const cpu::Weight& fetch(const std::string& name);
  void rmsnorm(const float* x, int64_t M, const std::vector<float>& w, float* y) const;
  // The float32 gain of a norm weight (gemma: 1 + w), converted once.
  const std::vector<float>& gain(const std::string& name) const;
  void attention(int64_t layer, float* q, const float* k, const float* v, int64_t T, int64_t start, float* out);
  // RoPE on this forward's q and k for layer l (its local or global tables).
  void rope(int64_t l, int64_t M);
  // A kLinear step of the layer program: a slice of the weight's rows, bias, rounding.
  void linear_step(const Step& st, const float* x, int64_t M, float* y);
  // y[M, n] = x W[row0 : row0 + n]^T for a disk-offloaded W read while it is used: each thread
  // reads a chunk of rows into its own buffer and multiplies it at once (see the .cpp).
  void linear_streamed(const WeightRef& r, int64_t row0, int64_t n, const float* x, int64_t M, float* y);
  // Products of fewer rows of x than this (decode) stream their disk-offloaded weights.
  static constexpr int64_t kStreamRows = 16;
  // Rows of a streamed chunk of an n-row weight whose rows are rb bytes long.
  static int64_t stream_chunk(int64_t n, int64_t rb);
  // The streamed products' buffers, per thread: chunks of up to slot_bytes, and (M > 1) the
  // outputs of up to `rows` rows of W for M rows of x.
  void size_stream_buffers(size_t slot_bytes, int64_t rows, int64_t M);
  // g = act(g) * u over n elements of the MLP buffers.
  void gated_act(int64_t n);
  // A sparse MoE block: the router, then each token's top-k experts (exec/cpu/moe.h).
  void moe(const std::string& p, const float* h, int64_t M, float* out);
  // v = round(tanh(v / cap) * cap) at the activation dtype's rounding points.
  void softcap(float* v, int64_t n, double cap) const;
  float softcap1(float v, float cap) const { return round1(round1(std::tanh(round1(v / cap))) * cap); }
  // Rounds activations to the model's 16-bit dtype (no-op in float32).
  void round_act(float* p, int64_t n) const;
  // x = round(x + round(h)): the residual add at the activation dtype.
  void add_residual(float* x, const float* h, int64_t n) const;
  // Elements below which an elementwise pass is not worth a second thread.
  static constexpr int64_t kElementGrain = 1 << 14;
  float round1(float v) const { return act_type_ == DType::kBFloat16 ? cpu::round_bf16(v) : round16(v); }
  float round16(float v) const;  // float16 or float32 (no-op)
  void add_time(int slot, std::chrono::steady_clock::time_point start);
  // The activation buffers of an M-row forward (prepare, reserve).
  void size_buffers(int64_t M);

  ExecConfig cfg_;
  const ModelWeights& w_;
  DType act_type_ = DType::kFloat32;
  RunOptions opt_;
  std::vector<float> inv_freq_, inv_freq_local_, inv_freq_long_;
  std::map<std::string, std::vector<float>, std::less<>> gains_;  // float32 copies of 1-D gains (gemma: 1 + w)
  std::vector<std::string> layer_modules_;
  std::vector<std::vector<Step>> programs_;  // per layer (exec/layer_program.h)
  std::vector<std::vector<double>> step_s_;  // per layer and step, while step timing is on
  bool time_steps_ = false;
  std::vector<std::vector<float>> k_cache_, v_cache_;  // per layer: batch x kv x max_seq x d
  std::vector<ModuleTime> times_;
  std::vector<ModuleEvent> events_;
  std::chrono::steady_clock::time_point epoch_;
  bool prefill_phase_ = true;
  std::vector<float> buf_x_, buf_h_, buf_q_, buf_k_, buf_v_, buf_a_, buf_g_, buf_u_;
  WeightBuffer disk_buf_{nullptr, [](uint8_t*) {}};  // disk-offloaded tensors are read into it
  size_t disk_buf_bytes_ = 0;
  struct AttentionScratch {
    std::vector<float> q, s, vt, o;
  };
  std::vector<AttentionScratch> att_;                   // per thread
  std::vector<float> rope_cos_, rope_sin_;              // this forward's positions x rotary/2
  std::vector<float> rope_cos_local_, rope_sin_local_;  // gemma3's sliding layers
  std::vector<float> moe_logits_, moe_weight_;          // MoE: router logits, routing weights
  std::vector<int32_t> moe_pick_;                       // MoE: each token's experts
  cpu::MoeScratch moe_;                                 // MoE work buffers
  ExpertCounts experts_;
  WeightBuffer stream_buf_{nullptr, [](uint8_t*) {}};  // per thread: a streamed chunk of rows
  size_t stream_slot_ = 0;                             // bytes per thread in stream_buf_
  std::vector<std::vector<float>> stream_out_;         // per thread: a chunk's outputs when M > 1
  cpu::Weight disk_weight_;
  std::string disk_name_;  // the tensor disk_weight_ holds in this forward ("" = none)
  DiskReader disk_;
  int64_t T_ = 0, start_ = 0;  // this forward's tokens per sequence and first position
  std::vector<float> last_;

 public:
  ~CpuModel() override;
  CpuModel(const CpuModel&) = delete;
  CpuModel& operator=(const CpuModel&) = delete;
};

}  // namespace dmap::exec
