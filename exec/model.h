// The CPU executor of the Llama-shaped families — llama (with Llama-3 rope scaling), mistral
// (sliding window), qwen2 (q/k/v bias), gemma (GeGLU, RMSNorm with +1 weight offset, embedding
// scaled by sqrt(hidden), head_dim from the config, tied head), and those of 2025-2026: qwen3 (q/k
// norms per head), olmo2 (norms after attention and MLP only, q/k norms over all heads), phi3
// (fused qkv_proj and gate_up_proj, partial rotary, longrope), gemma2 (four norms per layer,
// alternating sliding-window layers, attention and final logit soft-capping) and gemma3_text (q/k
// norms, sliding-window pattern, a local and a global RoPE): prefill of P tokens, then greedy
// decode, batch >= 1, every module timed per phase. The CUDA backend runs the first four only.
//
// Data flow:
//   ModelSpec --ExecConfig--> shapes;  Checkpoint (mmap'd safetensors) | seeded random -> ModelWeights
//   ModelWeights + ExecConfig --> CpuModel::forward(ids, start) --> logits of the last position
//   generate(): prefill, then one forward per new token, argmax each time.
//
// Numerics: weights stay in their stored dtype (float32, float16, bfloat16) and are converted in
// registers by the kernels; arithmetic is float32. With 16-bit weights the activations are
// rounded to that dtype where transformers' eager forward materialises a 16-bit tensor (each
// product's output, norms, RoPE terms, scores, probabilities, residual sums), so results follow
// what users get from transformers rather than a more precise float32 run.
//
// Example:
//   ExecConfig cfg = exec_config(load_model_spec("ckpt/config.json"));
//   ModelWeights w = ModelWeights::from_checkpoint(cfg, Checkpoint::open("ckpt"));
//   CpuModel m(cfg, w, {.batch = 1, .max_seq = 256, .threads = 2});
//   GenerateResult r = generate(m, prompt_ids, 32);
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/model_spec.h"
#include "core/units.h"
#include "exec/cpu/kernels.h"
#include "exec/placement.h"
#include "exec/safetensors.h"

namespace dmap::exec {

struct ExecConfig {
  std::string family;  // llama | mistral | qwen2 | gemma | qwen3 | olmo2 | phi3 | gemma2 | gemma3_text
  int64_t hidden = 0, inter = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0, max_pos = 0;
  double eps = 1e-6;
  double rope_theta = 10000.0;
  bool llama3_rope = false;
  double rope_factor = 1, rope_low = 1, rope_high = 4, rope_orig_max = 8192;
  bool tie = false;
  bool qkv_bias = false;
  bool gemma = false;          // (1 + w) norms, sqrt(hidden) embedding scale, GeGLU (tanh)
  int64_t sliding_window = 0;  // 0 = none; the window of every sliding layer
  std::string source;          // config file, for errors

  // Layer layout: norms before attention and MLP (llama), only after them (olmo2), or both
  // (gemma2/3: input, post_attention, pre_feedforward, post_feedforward).
  enum class Layout { kPreNorm, kPostNorm, kSandwich };
  Layout layout = Layout::kPreNorm;
  bool norm_mul_first = false;  // RMSNorm multiplies by its gain in float32, then casts (gemma, olmo2)
  enum class QkNorm { kNone, kPerHead, kAllHeads };
  QkNorm qk_norm = QkNorm::kNone;  // qwen3, gemma3_text: over head_dim; olmo2: over all heads, before the split
  bool fused = false;              // phi3: qkv_proj [q | k | v] and gate_up_proj [gate | up]
  int64_t rotary_dim = 0;          // channels rotated per head (phi3's partial rotary); 0 = head_dim
  bool rope_fp32 = false;          // olmo2: cos/sin stay float32, each rotated value rounded once
  std::vector<float> longrope_short,
      longrope_long;                  // longrope factors (empty: none); long past rope_orig_max positions
  double rope_attention = 1;          // longrope: cos and sin scaled by this
  double local_rope_theta = 0;        // gemma3: the sliding layers' RoPE base (0: as the others)
  double rope_linear = 1;             // gemma3: the full layers' frequencies divided by this
  double attn_scale = 0;              // 0: 1/sqrt(head_dim); gemma2/3: query_pre_attn_scalar^-1/2
  double attn_softcap = 0;            // gemma2: scores = tanh(scores / cap) * cap (0: none)
  double final_softcap = 0;           // gemma2: the same on the logits
  std::vector<int64_t> layer_window;  // per layer: its sliding window, 0 = full (empty: sliding_window everywhere)

  // Mixture of experts (qwen3_moe, mixtral): per layer whether its MLP is a sparse block of
  // `experts` experts of width `moe_inter`, `top_k` run per token (empty: every layer dense).
  std::vector<char> sparse;
  int64_t experts = 0, top_k = 0, moe_inter = 0;
  bool norm_topk = true;             // renormalise the top-k probabilities (mixtral; qwen3_moe's norm_topk_prob)
  bool router_fp32_weights = false;  // mixtral: the routing weights stay float32 (qwen3_moe casts them back)
  bool is_sparse(int64_t l) const {
    return l >= 0 && l < static_cast<int64_t>(sparse.size()) && sparse[static_cast<size_t>(l)];
  }

  // The sliding window of layer l (0 = full attention).
  int64_t window(int64_t l) const {
    if (layer_window.empty()) return sliding_window;
    return l >= 0 && l < static_cast<int64_t>(layer_window.size()) ? layer_window[static_cast<size_t>(l)] : 0;
  }
  int64_t rotary() const { return rotary_dim > 0 ? rotary_dim : head_dim; }
  // The families of the llama layout with every layer alike (what the CUDA backend runs).
  bool llama_layout() const {
    return family == "llama" || family == "mistral" || family == "qwen2" || family == "gemma";
  }
};

// Reads the shapes and options of a supported family; other families -> InputError.
ExecConfig exec_config(const ModelSpec& spec);

// One weight: its storage (a view into a mapped file, or owned) and shape.
struct WeightRef {
  cpu::Weight w;  // rows x cols (1-D tensors: rows = 1)
  std::string name;
  std::string file;      // where the bytes live on disk ("" = memory only)
  uint64_t offset = 0;   // byte offset in `file`
  bool on_disk = false;  // disk-offloaded: read from `file` before every use
};

// Bytes of a weight's storage.
size_t weight_bytes(const cpu::Weight& w);

// Reads disk-offloaded tensors from their files, through a read-only memory map of each file
// kept for the reader's lifetime (as accelerate reads offloaded weights through np.memmap /
// safetensors' mmap), copied into the caller's host buffer. Cold-disk runs first unmap the
// tensor's pages and evict them from the page cache.
//
// The maps ask for transparent huge pages (MADV_HUGEPAGE): page faults on such a map read ahead
// into 2 MiB page-cache folios, whereas one pread() of a whole cold tensor fills the cache with
// 4 KiB pages, whose later warm copies ran at 5.5-7.3 GB/s instead of 9 GB/s on the 2-vCPU
// VM, varying with how fragmented free memory was (docs/PERFORMANCE.md).
class DiskReader {
 public:
  DiskReader() = default;
  ~DiskReader();
  DiskReader(const DiskReader&) = delete;
  DiskReader& operator=(const DiskReader&) = delete;
  // Copies `r`'s bytes into dst (weight_bytes(r.w) of room); returns the bytes read.
  // RuntimeFailure when the file cannot be opened or is shorter than the tensor.
  size_t read(const WeightRef& r, void* dst, bool drop_page_cache);
  uint64_t bytes_read() const { return bytes_read_; }
  // Wall time spent in read() (page-cache copies, or device reads when cold).
  double seconds_reading() const { return seconds_reading_; }

 private:
  struct Mapped {
    int fd = -1;
    const uint8_t* data = nullptr;  // the whole file
    size_t size = 0;
  };
  const Mapped& map_file(const std::string& file);
  std::map<std::string, Mapped> files_;
  uint64_t bytes_read_ = 0;
  double seconds_reading_ = 0;
};

// RoPE's inverse frequencies (rotary_dim / 2, float32), with llama3's scaling where configured;
// `local`: gemma3's sliding layers; `long_factors`: longrope past its original context.
std::vector<float> rope_inv_freq(const ExecConfig& cfg, bool local = false, bool long_factors = false);

// The per-layer modules module_times() lists, in execution order (e.g. input_layernorm,
// self_attn, post_attention_layernorm, mlp).
std::vector<std::string> layer_modules(const ExecConfig& cfg);

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
  std::vector<std::string> names() const;
  // transformers' tensor names this model needs, in load order.
  static std::vector<std::pair<std::string, std::vector<int64_t>>> expected(const ExecConfig& cfg);
  Bytes bytes() const;

 private:
  std::shared_ptr<const Checkpoint> ck_;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> owned_;
  std::vector<WeightRef> refs_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in refs_
  void add(WeightRef r);
};

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
};

// The module names of module_times(), in order: embed, layers.N.<layer_modules()>, norm, lm_head.
std::vector<ModuleTime> module_slots(const ExecConfig& cfg);

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

 private:
  void linear(const std::string& name, const float* x, int64_t M, float* y);
  // The weight, read from disk first when it is offloaded there.
  const cpu::Weight& fetch(const std::string& name);
  void rmsnorm(const float* x, int64_t M, const std::vector<float>& w, float* y) const;
  // The float32 gain of a norm weight (gemma: 1 + w), converted once.
  const std::vector<float>& gain(const std::string& name) const;
  void attention(int64_t layer, float* q, const float* k, const float* v, int64_t T, int64_t start, float* out);
  // q, k and v of layer `l` from its attention input h (projections, q/k norms, RoPE).
  void attention_inputs(int64_t l, const std::string& p, const float* h, int64_t M);
  // The MLP of the layer with prefix p: h -> out (both M x hidden).
  void mlp(const std::string& p, const float* h, int64_t M, float* out);
  // A sparse MoE block: the router, then each token's top-k experts (transformers v5's default
  // grouped_mm experts: per-expert products, the weighted rows summed over k in float32).
  void moe(const std::string& p, const float* h, int64_t M, float* out);
  void silu_times(float* g, const float* u, int64_t n) const;  // g = silu(g) * u, rounded as the activation dtype
  // v = round(tanh(v / cap) * cap) at the activation dtype's rounding points.
  void softcap(float* v, int64_t n, double cap) const;
  float softcap1(float v, float cap) const { return round1(round1(std::tanh(round1(v / cap))) * cap); }
  // Rounds activations to the model's 16-bit dtype (no-op in float32).
  void round_act(float* p, int64_t n) const;
  // x = round(x + round(h)): the residual add at the activation dtype.
  void add_residual(float* x, const float* h, int64_t n) const;
  // Elements below which an elementwise pass is not worth a second thread.
  static constexpr int64_t kElementGrain = 1 << 14;
  float round1(float v) const { return act_type_ == cpu::WType::kBF16 ? cpu::round_bf16(v) : round16(v); }
  float round16(float v) const;  // float16 or float32 (no-op)
  void add_time(int slot, std::chrono::steady_clock::time_point start);

  ExecConfig cfg_;
  const ModelWeights& w_;
  cpu::WType act_type_ = cpu::WType::kF32;
  RunOptions opt_;
  std::vector<float> inv_freq_, inv_freq_local_, inv_freq_long_;
  std::map<std::string, std::vector<float>, std::less<>> gains_;  // float32 copies of 1-D gains (gemma: 1 + w)
  std::vector<std::string> layer_modules_;
  std::vector<std::vector<float>> k_cache_, v_cache_;  // per layer: batch x kv x max_seq x d
  std::vector<ModuleTime> times_;
  std::vector<ModuleEvent> events_;
  std::chrono::steady_clock::time_point epoch_;
  bool prefill_phase_ = true;
  std::vector<float> buf_x_, buf_h_, buf_q_, buf_k_, buf_v_, buf_a_, buf_g_, buf_u_;
  std::unique_ptr<uint8_t[]> disk_buf_;  // disk-offloaded tensors are read into it
  size_t disk_buf_bytes_ = 0;
  struct AttentionScratch {
    std::vector<float> q, s, vt, o;
  };
  std::vector<AttentionScratch> att_;                                   // per thread
  std::vector<float> rope_cos_, rope_sin_;                              // this forward's positions x rotary/2
  std::vector<float> rope_cos_local_, rope_sin_local_;                  // gemma3's sliding layers
  std::vector<float> buf_qkv_;                                          // phi3: the fused products
  std::vector<float> moe_logits_, moe_x_, moe_gu_, moe_act_, moe_out_;  // MoE work buffers
  std::vector<int64_t> moe_rows_;                                       // MoE: (token, rank) rows grouped by expert
  ExpertCounts experts_;
  cpu::Weight disk_weight_;
  DiskReader disk_;
  int64_t T_ = 0, start_ = 0;  // this forward's tokens per sequence and first position
  std::vector<float> last_;

 public:
  ~CpuModel() override;
  CpuModel(const CpuModel&) = delete;
  CpuModel& operator=(const CpuModel&) = delete;
};

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
