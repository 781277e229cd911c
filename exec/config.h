// ExecConfig: what the executors need to know of a model — shapes, norms and their places, RoPE
// variants, attention windows and soft-caps, mixture-of-experts layout — read from a ModelSpec
// for the families the executors run (see exec/cpu_model.h for the list).
//
// Example:
//   ExecConfig cfg = exec_config(load_model_spec("ckpt/config.json"));   // InputError: unsupported
//   std::vector<float> inv = rope_inv_freq(cfg);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model_spec.h"

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
};

// Reads the shapes and options of a supported family; other families -> InputError.
ExecConfig exec_config(const ModelSpec& spec);

// RoPE's inverse frequencies (rotary_dim / 2, float32), with llama3's scaling where configured;
// `local`: gemma3's sliding layers; `long_factors`: longrope past its original context.
std::vector<float> rope_inv_freq(const ExecConfig& cfg, bool local = false, bool long_factors = false);

// The per-layer modules module_times() lists, in execution order (e.g. input_layernorm,
// self_attn, post_attention_layernorm, mlp).
std::vector<std::string> layer_modules(const ExecConfig& cfg);

}  // namespace dmap::exec
