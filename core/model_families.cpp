// Module trees of the supported families, mirroring transformers' modeling code: every
// module's direct parameters, buffers and children in the order its __init__ registers them.
// Sources: transformers (v5 line) modeling_{llama,mistral,qwen2,gemma,qwen3,olmo2,gemma2,granite,
// phi3,qwen3_moe,qwen2_moe,mixtral,gpt_oss,deepseek_v3,deepseek_v2,llama4,gpt2,opt,gptj,gpt_neox}.py (the MoE files
// from v5 main: fused 3-D experts) and THUDM/chatglm2-6b modeling_chatglm.py (remote code). The
// dense families of the llama shape are declarations (dense_families()): a new one is a few
// lines plus its tests.
#include <algorithm>
#include <string>

#include "core/error.h"
#include "core/module_tree.h"
#include "core/gguf.h"
#include "core/gguf_reader.h"
#include "core/quantize.h"
#include "core/output.h"
#include "core/yaml_io.h"

namespace dmap {

namespace {

using Shape = std::vector<int64_t>;

// nn.Linear(in, out, bias): weight [out, in], bias [out].
int linear(ModuleTree& t, int parent, const std::string& name, int64_t in, int64_t out, bool bias,
           const char* cls = "Linear") {
  int m = t.add_module(parent, name, cls);
  t.add_param(m, "weight", {out, in});
  if (bias) t.add_param(m, "bias", {out});
  return m;
}

// GPT-2's Conv1D(nf, nx): weight [nx, nf], bias [nf].
int conv1d(ModuleTree& t, int parent, const std::string& name, int64_t nf, int64_t nx) {
  int m = t.add_module(parent, name, "Conv1D");
  t.add_param(m, "weight", {nx, nf});
  t.add_param(m, "bias", {nf});
  return m;
}

int embedding(ModuleTree& t, int parent, const std::string& name, int64_t num, int64_t dim,
              const char* cls = "Embedding") {
  int m = t.add_module(parent, name, cls);
  t.add_param(m, "weight", {num, dim});
  return m;
}

// nn.LayerNorm(dim, elementwise_affine, bias).
int layer_norm(ModuleTree& t, int parent, const std::string& name, int64_t dim, bool affine = true, bool bias = true) {
  int m = t.add_module(parent, name, "LayerNorm");
  if (affine) {
    t.add_param(m, "weight", {dim});
    if (bias) t.add_param(m, "bias", {dim});
  }
  return m;
}

int rms_norm(ModuleTree& t, int parent, const std::string& name, int64_t dim, const char* cls) {
  int m = t.add_module(parent, name, cls);
  t.add_param(m, "weight", {dim});
  return m;
}

int leaf(ModuleTree& t, int parent, const std::string& name, const char* cls) {
  return t.add_module(parent, name, cls);
}

// nn.Conv2d(in, out, kernel, stride=kernel): weight [out, in, k, k], bias [out].
int conv2d(ModuleTree& t, int parent, const std::string& name, int64_t in, int64_t out, int64_t kernel, bool bias) {
  int m = t.add_module(parent, name, "Conv2d");
  t.add_param(m, "weight", {out, in, kernel, kernel});
  if (bias) t.add_param(m, "bias", {out});
  return m;
}

// The class of transformers' ACT2FN[name] module (no tensors: it shows in maps only as a module).
const char* activation_class(const std::string& act) {
  if (act == "gelu_pytorch_tanh") return "GELUTanh";
  if (act == "gelu") return "GELUActivation";
  if (act == "silu" || act == "swish") return "SiLUActivation";
  if (act == "relu") return "ReLU";
  return "Activation";
}

// A nested config (text_config, vision_config) as a view of its own; absent or null: an empty
// map (the sub-config's defaults apply).
ConfigView sub_config(const ConfigView& c, const char* key) {
  const YAML::Node n = c.node()[key];
  if (!n.IsDefined() || n.IsNull()) return ConfigView(YAML::Node(YAML::NodeType::Map), c.file());
  if (!n.IsMap())
    throw InputError(c.file(), n.Mark().line + 1, n.Mark().column + 1, std::string(key) + ": expected a map");
  return ConfigView(n, c.file());
}

// Rotary embedding module with `inv_freq` and `original_inv_freq` (non-persistent float32
// buffers of ceil(dim/2) elements), as transformers' *RotaryEmbedding registers them.
void rotary(ModuleTree& t, int parent, const std::string& name, int64_t rotary_dim, const char* cls) {
  int m = t.add_module(parent, name, cls);
  const int64_t n = (rotary_dim + 1) / 2;
  t.add_buffer(m, "inv_freq", {n}, /*follows_model_dtype=*/false, DType::kFloat32, /*persistent=*/false);
  t.add_buffer(m, "original_inv_freq", {n}, false, DType::kFloat32, false);
}

// How a dense family decides which layers' KV caches slide (transformers v5: an explicit
// `layer_types` wins; else the family's rule applies when the config sets `sliding_window`).
enum class Sliding {
  kNone,       // llama, gemma, granite, olmo2: no sliding window
  kAll,        // mistral, phi3: every layer
  kQwen,       // qwen2, qwen3: only with `use_sliding_window`, from `max_window_layers` on
  kAlternate,  // gemma2: layer i slides when (i + 1) % 2 (the config's default layer_types)
  kPattern,    // gemma3: layer i slides when (i + 1) % sliding_window_pattern (default 6)
  kChunked,    // llama4: the RoPE layers (no_rope_layers[i] = 1) attend within attention_chunk_size
};

// llama4's no_rope_layers: 1 where a layer uses RoPE (default: all but every fourth).
std::vector<bool> rope_layers(const ConfigView& c, int64_t layers) {
  std::vector<bool> out(static_cast<size_t>(layers));
  for (int64_t i = 0; i < layers; ++i) out[static_cast<size_t>(i)] = (i + 1) % 4 != 0;
  const YAML::Node given = c.node()["no_rope_layers"];
  if (given && given.IsSequence() && given.size() > 0) {
    if (static_cast<int64_t>(given.size()) != layers) {
      throw InputError(
          c.file(), given.Mark().line + 1, 0,
          "no_rope_layers lists " + std::to_string(given.size()) + " layers, the model has " + std::to_string(layers));
    }
    for (size_t i = 0; i < given.size(); ++i) out[i] = !(given[i].IsScalar() && given[i].Scalar() == "0");
  }
  return out;
}

// Whether each layer is a sliding-attention layer by the family's default layer_types (an
// explicit `layer_types` wins), whatever the window.
std::vector<bool> sliding_layer_types(const ConfigView& c, Sliding rule, int64_t layers) {
  std::vector<bool> out(static_cast<size_t>(layers), false);
  const YAML::Node types = c.node()["layer_types"];
  if (types && types.IsSequence() && static_cast<int64_t>(types.size()) == layers) {
    for (size_t i = 0; i < types.size(); ++i) out[i] = types[i].IsScalar() && types[i].Scalar() == "sliding_attention";
    return out;
  }
  const int64_t pattern = rule == Sliding::kAlternate ? 2
                          : rule == Sliding::kPattern ? c.positive_or({"sliding_window_pattern"}, 6)
                                                      : 0;
  for (int64_t i = 0; i < layers && pattern > 0; ++i) out[static_cast<size_t>(i)] = (i + 1) % pattern != 0;
  return out;
}

std::vector<int64_t> sliding_windows(const ConfigView& c, Sliding rule, int64_t layers) {
  std::vector<int64_t> w(static_cast<size_t>(layers), 0);
  if (rule == Sliding::kNone) return w;
  if (rule == Sliding::kChunked) {
    // transformers caches a chunked layer's current chunk at most (attention_chunk_size tokens).
    const int64_t chunk = c.integer_or({"attention_chunk_size"}, 8192);
    const std::vector<bool> rope = rope_layers(c, layers);
    for (size_t i = 0; i < w.size(); ++i) w[i] = rope[i] && chunk > 0 ? chunk : 0;
    return w;
  }
  int64_t window = c.integer_or({"sliding_window"}, 0);
  if (rule == Sliding::kQwen && !c.boolean_or({"use_sliding_window"}, false)) window = 0;
  if (window <= 0) return w;
  const YAML::Node types = c.node()["layer_types"];
  if (types && types.IsSequence()) {
    if (static_cast<int64_t>(types.size()) != layers) {
      throw InputError(
          c.file(), types.Mark().line + 1, 0,
          "layer_types lists " + std::to_string(types.size()) + " layers, the model has " + std::to_string(layers));
    }
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i].IsScalar() && types[i].Scalar() == "sliding_attention") w[i] = window;
    }
    return w;
  }
  if (rule == Sliding::kAlternate || rule == Sliding::kPattern) {
    const std::vector<bool> sliding = sliding_layer_types(c, rule, layers);
    for (size_t i = 0; i < w.size(); ++i) w[i] = sliding[i] ? window : 0;
    return w;
  }
  const int64_t from = rule == Sliding::kQwen ? c.integer_or({"max_window_layers"}, 28) : 0;
  for (int64_t i = std::max<int64_t>(0, from); i < layers; ++i) w[static_cast<size_t>(i)] = window;
  return w;
}

// The rotary fraction of head_dim: the config's `partial_rotary_factor`, or transformers v5's
// `rope_parameters.partial_rotary_factor` (where v5 configs keep it), else 1.
double partial_rotary_factor(const ConfigView& c) {
  if (c.has("partial_rotary_factor")) {
    const double v = c.number_or({"partial_rotary_factor"}, 1.0);
    if (!(v > 0 && v <= 1))
      fail_at(c.file(), c.node()["partial_rotary_factor"], "partial_rotary_factor: expected a number in (0, 1]");
    return v;
  }
  const YAML::Node rp = c.node()["rope_parameters"];
  if (rp && rp.IsMap() && rp["partial_rotary_factor"] && rp["partial_rotary_factor"].IsScalar()) {
    const double v = yaml_double(c.file(), rp["partial_rotary_factor"], "rope_parameters.partial_rotary_factor");
    if (!(v > 0 && v <= 1))
      fail_at(c.file(), rp["partial_rotary_factor"],
              "rope_parameters.partial_rotary_factor: expected a number in (0, 1]");
    return v;
  }
  return 1.0;
}

bool tie_embeddings(const ConfigView& c, bool family_default) {
  return c.boolean_or({"tie_word_embeddings"}, family_default);
}

// ---------------------------------------------------------------------------------------
// The dense decoder families of the llama shape, declared:
//   <P>ForCausalLM{model: <P>Model{embed_tokens, layers[<P>DecoderLayer{...parts}], norm,
//   rotary_emb}, lm_head}
// where a decoder layer's parts, in registration order, are `self_attn` (<P>Attention), `mlp`
// (<P>MLP), RMSNorms (<P>RMSNorm over the hidden size, any name ending in "layernorm") and
// dropouts (any name ending in "dropout"). Sources: transformers v5 modeling_<family>.py.
struct DenseFamily {
  const char* model_type;
  const char* prefix;             // class-name prefix
  bool tie_default = false;       // tie_word_embeddings when the config does not say
  bool qkv_bias_default = false;  // q/k/v biases when the config does not say (qwen2)
  int64_t head_dim_default = 0;   // 0: hidden_size / num_attention_heads
  enum class QkNorm { kNone, kPerHead, kAllHeads };
  QkNorm qk_norm = QkNorm::kNone;  // qwen3: q_norm/k_norm over head_dim; olmo2: over all heads
  bool fused = false;              // phi3: self_attn{o_proj, qkv_proj}, mlp{gate_up_proj, down_proj}
  const char* act_name = "act_fn";
  const char* act_cls = "SiLUActivation";
  Sliding sliding = Sliding::kNone;
  std::vector<const char*> parts = {"self_attn", "mlp", "input_layernorm", "post_attention_layernorm"};
  const char* model_suffix = "Model";  // gemma3_text: Gemma3TextModel
  // gemma3: <P>TextScaledWordEmbedding, with a 0-dim `embed_scale` buffer (non-persistent, the
  // default dtype); and one rotary module holding `<layer_type>_inv_freq` and
  // `<layer_type>_original_inv_freq` per layer type.
  bool scaled_embedding = false;
  bool rotary_per_layer_type = false;
  std::vector<const char*> extra_no_split = {};  // `_no_split_modules` beyond <P>DecoderLayer
  // starcoder2: nn.LayerNorm (weight and bias) for every norm; a plain MLP {c_fc, c_proj, act};
  // q/k/v/o and the MLP biased by `use_bias` (default true).
  bool layer_norm = false;
  bool plain_mlp = false;
  const char* bias_key = nullptr;
  // gpt_oss: a `sinks` Parameter [heads], registered first in <P>Attention.
  bool attention_sinks = false;
  // deepseek_v2/v3: multi-head latent attention (q_a_proj, q_a_layernorm, q_b_proj — or q_proj
  // without q_lora_rank —, kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj), rotary over
  // qk_rope_head_dim.
  bool mla = false;
  // Mixture of experts, as transformers v5 stores it: the routed experts of a layer are ONE
  // module (<P><experts>) of 3-D parameters gate_up_proj [E, 2I, H] and down_proj [E, H, I]
  // (gpt_oss: transposed [E, H, 2I] / [E, I, H] with biases, no act_fn), the router a module
  // with a `weight` [E, H] Parameter. `moe_parts` lists the block's children in registration
  // order: "experts", "gate" / "router", "shared_expert" (+ "shared_expert_gate"), or
  // "shared_experts". Empty: a dense family.
  std::vector<const char*> moe_parts = {};
  const char* moe_block = "SparseMoeBlock";  // class suffix of the block that replaces `mlp`
  const char* experts_cls = "Experts";
  const char* router_cls = "TopKRouter";
  const char* expert_width_key = "moe_intermediate_size";  // mixtral, gpt_oss: intermediate_size
  bool experts_transposed = false;                         // gpt_oss, llama4: [E, hidden, 2I] / [E, I, hidden]
  bool experts_bias = false;                               // gpt_oss: gate_up_proj_bias, down_proj_bias, and no act_fn
  bool router_bias = false;                                // gpt_oss: router `bias` [E]
  bool correction_bias = false;                            // deepseek_v3: router buffer e_score_correction_bias [E]
  const char* router_class = nullptr;  // the router's full class name (llama4: Llama4Router; deepseek_v2: Linear)
  const char* shared_width_key = "shared_expert_intermediate_size";  // llama4: intermediate_size
  enum class MoeLayers { kAll, kQwen, kDeepseek, kLlama4 };
  MoeLayers moe_layers = MoeLayers::kAll;
  // llama4: the MLP attribute, the dense layers' width, the causal-LM class, and an L2 qk_norm
  // (no weights) on the RoPE layers (no_rope_layers[i] = 1) when use_qk_norm.
  const char* mlp_attr = "mlp";
  const char* dense_width_key = "intermediate_size";
  const char* causal_lm_cls = nullptr;
  bool l2_qk_norm = false;
};

const std::vector<DenseFamily>& dense_families() {
  using Q = DenseFamily::QkNorm;
  static const std::vector<DenseFamily> kFamilies = {
      {.model_type = "llama", .prefix = "Llama"},
      {.model_type = "mistral", .prefix = "Mistral", .sliding = Sliding::kAll},
      {.model_type = "qwen2", .prefix = "Qwen2", .qkv_bias_default = true, .sliding = Sliding::kQwen},
      {.model_type = "gemma", .prefix = "Gemma", .tie_default = true, .head_dim_default = 256, .act_cls = "GELUTanh"},
      // Qwen3Attention: q_norm, k_norm (Qwen3RMSNorm(head_dim)) registered after o_proj.
      {.model_type = "qwen3", .prefix = "Qwen3", .qk_norm = Q::kPerHead, .sliding = Sliding::kQwen},
      // Olmo2Attention: q_norm over heads x head_dim, k_norm over kv_heads x head_dim; the layer
      // has post-norms only.
      {.model_type = "olmo2",
       .prefix = "Olmo2",
       .qk_norm = Q::kAllHeads,
       .parts = {"self_attn", "mlp", "post_attention_layernorm", "post_feedforward_layernorm"}},
      // Gemma2DecoderLayer: four norms; tied; sliding and full layers alternate.
      {.model_type = "gemma2",
       .prefix = "Gemma2",
       .tie_default = true,
       .head_dim_default = 256,
       .act_cls = "GELUTanh",
       .sliding = Sliding::kAlternate,
       .parts = {"self_attn", "mlp", "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                 "post_feedforward_layernorm"}},
      // Granite: the llama tree (its multipliers change the math, not the modules).
      {.model_type = "granite", .prefix = "Granite"},
      // Phi3Attention registers o_proj before the fused qkv_proj; Phi3MLP: gate_up_proj,
      // down_proj, activation_fn; the layer ends with two residual dropouts.
      {.model_type = "phi3",
       .prefix = "Phi3",
       .fused = true,
       .act_name = "activation_fn",
       .sliding = Sliding::kAll,
       .parts = {"self_attn", "mlp", "input_layernorm", "post_attention_layernorm", "resid_attn_dropout",
                 "resid_mlp_dropout"}},
      // Gemma3ForCausalLM (the text-only checkpoints, Gemma-3-1B): q/k norms over head_dim, four
      // norms per layer, a scaled embedding, one rotary module per layer type, every sixth layer
      // full attention; its _no_split_modules also name the (absent) SigLIP tower's classes.
      {.model_type = "gemma3_text",
       .prefix = "Gemma3",
       .tie_default = true,
       .head_dim_default = 256,
       .qk_norm = Q::kPerHead,
       .act_cls = "GELUTanh",
       .sliding = Sliding::kPattern,
       .parts = {"self_attn", "mlp", "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                 "post_feedforward_layernorm"},
       .model_suffix = "TextModel",
       .scaled_embedding = true,
       .rotary_per_layer_type = true,
       .extra_no_split = {"SiglipVisionEmbeddings", "SiglipEncoderLayer", "SiglipMultiheadAttentionPoolingHead"}},
      // Starcoder2 (modular_starcoder2.py: the Mistral tree with LayerNorms and a c_fc/c_proj MLP;
      // the model-level rotary of v5's MistralModel); every layer slides when sliding_window is set.
      // Qwen3MoeSparseMoeBlock{experts, gate}; layers listed in mlp_only_layers (or off the
      // decoder_sparse_step) keep a dense Qwen3MoeMLP.
      {.model_type = "qwen3_moe",
       .prefix = "Qwen3Moe",
       .qk_norm = Q::kPerHead,
       .sliding = Sliding::kQwen,
       .moe_parts = {"experts", "gate"},
       .moe_layers = DenseFamily::MoeLayers::kQwen},
      // Qwen2MoeSparseMoeBlock{gate, experts, shared_expert (Qwen2MoeMLP), shared_expert_gate
      // (Linear(hidden, 1))}; q/k/v biased.
      {.model_type = "qwen2_moe",
       .prefix = "Qwen2Moe",
       .qkv_bias_default = true,
       .sliding = Sliding::kQwen,
       .moe_parts = {"gate", "experts", "shared_expert", "shared_expert_gate"},
       .moe_layers = DenseFamily::MoeLayers::kQwen},
      // MixtralSparseMoeBlock{gate, experts} under the v5 attribute `mlp` (4.x: block_sparse_moe).
      {.model_type = "mixtral",
       .prefix = "Mixtral",
       .sliding = Sliding::kAll,
       .moe_parts = {"gate", "experts"},
       .expert_width_key = "intermediate_size"},
      // GptOssDecoderLayer: GptOssAttention{sinks, q,k,v,o (biased)}, GptOssMLP{router, experts};
      // sliding and full layers alternate.
      {.model_type = "gpt_oss",
       .prefix = "GptOss",
       .sliding = Sliding::kAlternate,
       .attention_sinks = true,
       .moe_parts = {"router", "experts"},
       .moe_block = "MLP",
       .expert_width_key = "intermediate_size",
       .experts_transposed = true,
       .experts_bias = true,
       .router_bias = true},
      // DeepseekV3DecoderLayer: MLA attention; the first first_k_dense_replace layers dense
      // (DeepseekV3MLP), the others DeepseekV3MoE{experts (DeepseekV3Experts), gate
      // (DeepseekV3TopkRouter: weight, buffer e_score_correction_bias), shared_experts}.
      {.model_type = "deepseek_v3",
       .prefix = "DeepseekV3",
       .mla = true,
       .moe_parts = {"experts", "gate", "shared_experts"},
       .moe_block = "MoE",
       .experts_cls = "Experts",
       .router_cls = "TopkRouter",
       .correction_bias = true,
       .moe_layers = DenseFamily::MoeLayers::kDeepseek},
      // DeepseekV2DecoderLayer: MLA as v3; DeepseekV2Moe{experts, gate (nn.Linear), shared_experts
      // (only with n_shared_experts)}; no correction bias.
      {.model_type = "deepseek_v2",
       .prefix = "DeepseekV2",
       .mla = true,
       .moe_parts = {"experts", "gate", "shared_experts"},
       .moe_block = "Moe",
       .router_class = "Linear",
       .moe_layers = DenseFamily::MoeLayers::kDeepseek},
      // Llama4ForCausalLM (the text model, model_type llama4_text): Llama4TextDecoderLayer{self_attn
      // {q,k,v,o, qk_norm (L2, no weights) on RoPE layers}, feed_forward: Llama4TextMoe{experts
      // (transposed), router (Llama4Router, an nn.Linear), shared_expert} on the moe_layers, else
      // Llama4TextMLP(intermediate_size_mlp); norms}; chunked attention on the RoPE layers.
      {.model_type = "llama4_text",
       .prefix = "Llama4Text",
       .act_name = "activation_fn",
       .sliding = Sliding::kChunked,
       .parts = {"self_attn", "feed_forward", "input_layernorm", "post_attention_layernorm"},
       .moe_parts = {"experts", "router", "shared_expert"},
       .moe_block = "Moe",
       .expert_width_key = "intermediate_size",
       .experts_transposed = true,
       .router_class = "Llama4Router",
       .shared_width_key = "intermediate_size",
       .moe_layers = DenseFamily::MoeLayers::kLlama4,
       .mlp_attr = "feed_forward",
       .dense_width_key = "intermediate_size_mlp",
       .causal_lm_cls = "Llama4ForCausalLM",
       .l2_qk_norm = true},
      {.model_type = "starcoder2",
       .prefix = "Starcoder2",
       .tie_default = true,
       .act_name = "act",
       .act_cls = "GELUTanh",
       .sliding = Sliding::kAll,
       .layer_norm = true,
       .plain_mlp = true,
       .bias_key = "use_bias"},
  };
  return kFamilies;
}

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::char_traits<char>::length(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// Which decoder layers hold a mixture-of-experts block (transformers v5's rules).
std::vector<bool> moe_layers(const ConfigView& c, const DenseFamily& f, int64_t layers) {
  std::vector<bool> out(static_cast<size_t>(layers), !f.moe_parts.empty());
  if (f.moe_parts.empty()) return out;
  if (f.moe_layers == DenseFamily::MoeLayers::kQwen) {
    // (layer_idx not in mlp_only_layers) and num_experts > 0 and (layer_idx + 1) % decoder_sparse_step == 0
    std::vector<int64_t> dense;
    const YAML::Node only = c.node()["mlp_only_layers"];
    if (only && only.IsSequence()) {
      for (const auto& v : only) {
        if (!v.IsScalar())
          throw InputError(c.file(), only.Mark().line + 1, 0, "mlp_only_layers must list layer numbers");
        try {
          dense.push_back(v.as<int64_t>());
        } catch (const YAML::Exception&) {
          throw InputError(c.file(), v.Mark().line + 1, v.Mark().column + 1, "mlp_only_layers must list layer numbers");
        }
      }
    }
    const int64_t step = c.positive_or({"decoder_sparse_step"}, 1);
    const int64_t experts = c.integer_or({"num_experts"}, 0);
    for (int64_t i = 0; i < layers; ++i) {
      out[static_cast<size_t>(i)] =
          experts > 0 && (i + 1) % step == 0 && std::find(dense.begin(), dense.end(), i) == dense.end();
    }
  } else if (f.moe_layers == DenseFamily::MoeLayers::kLlama4) {
    // config.moe_layers, default range(step - 1, layers, step) with interleave_moe_layer_step
    const YAML::Node given = c.node()["moe_layers"];
    if (given && given.IsSequence()) {
      std::fill(out.begin(), out.end(), false);
      for (const auto& v : given) {
        int64_t i = -1;
        try {
          i = v.as<int64_t>();
        } catch (const YAML::Exception&) {
        }
        if (i < 0 || i >= layers)
          throw InputError(c.file(), v.Mark().line + 1, v.Mark().column + 1,
                           "moe_layers must list layer numbers of the model");
        out[static_cast<size_t>(i)] = true;
      }
    } else {
      const int64_t step = c.positive_or({"interleave_moe_layer_step"}, 1);
      for (int64_t i = 0; i < layers; ++i) out[static_cast<size_t>(i)] = (i + 1) % step == 0;
    }
  } else if (f.moe_layers == DenseFamily::MoeLayers::kDeepseek) {
    // layer_idx >= first_k_dense_replace (v5 main ignores moe_layer_freq)
    const int64_t first = c.integer_or({"first_k_dense_replace"}, 0);
    for (int64_t i = 0; i < layers; ++i) out[static_cast<size_t>(i)] = i >= first;
  }
  return out;
}

// A SwiGLU MLP {gate_proj, up_proj, down_proj, act_fn} of class `cls` (no biases).
void gated_mlp(ModuleTree& t, int parent, const std::string& name, const std::string& cls, int64_t hidden,
               int64_t inter, const char* act_name, const char* act_cls) {
  const int m = t.add_module(parent, name, cls);
  linear(t, m, "gate_proj", hidden, inter, false);
  linear(t, m, "up_proj", hidden, inter, false);
  linear(t, m, "down_proj", inter, hidden, false);
  leaf(t, m, act_name, act_cls);
}

// DeepSeek's multi-head latent attention (modeling_deepseek_v3.py, DeepseekV3Attention).
void mla_attention(ModuleTree& t, int attn, const ConfigView& c, int64_t hidden, int64_t heads,
                   const std::string& norm_cls) {
  const bool bias = c.boolean_or({"attention_bias"}, false);
  const int64_t nope = c.positive({"qk_nope_head_dim"}), rope = c.positive({"qk_rope_head_dim"});
  const int64_t v_dim = c.positive({"v_head_dim"}), kv_rank = c.positive({"kv_lora_rank"});
  const int64_t q_rank = c.integer_or({"q_lora_rank"}, 0);
  if (q_rank > 0) {
    linear(t, attn, "q_a_proj", hidden, q_rank, bias);
    rms_norm(t, attn, "q_a_layernorm", q_rank, norm_cls.c_str());
    linear(t, attn, "q_b_proj", q_rank, heads * (nope + rope), false);
  } else {
    linear(t, attn, "q_proj", hidden, heads * (nope + rope), false);
  }
  linear(t, attn, "kv_a_proj_with_mqa", hidden, kv_rank + rope, bias);
  rms_norm(t, attn, "kv_a_layernorm", kv_rank, norm_cls.c_str());
  linear(t, attn, "kv_b_proj", kv_rank, heads * (nope + v_dim), false);
  linear(t, attn, "o_proj", heads * v_dim, hidden, bias);
}

// A layer's mixture-of-experts block under the attribute `mlp` (see DenseFamily::moe_parts).
void moe_block(ModuleTree& t, int layer, const ConfigView& c, const DenseFamily& f, int64_t hidden,
               const std::string& norm_cls) {
  (void)norm_cls;
  const std::string prefix = f.prefix;
  const int64_t experts = c.positive({"num_experts", "num_local_experts", "n_routed_experts"});
  const int64_t inter = c.positive({f.expert_width_key});
  const int block = t.add_module(layer, f.mlp_attr, prefix + f.moe_block);
  for (const char* part : f.moe_parts) {
    const std::string name = part;
    if (name == "experts") {
      const int e = t.add_module(block, "experts", prefix + f.experts_cls);
      t.add_param(e, "gate_up_proj",
                  f.experts_transposed ? Shape{experts, hidden, 2 * inter} : Shape{experts, 2 * inter, hidden});
      if (f.experts_bias) t.add_param(e, "gate_up_proj_bias", {experts, 2 * inter});
      t.add_param(e, "down_proj", f.experts_transposed ? Shape{experts, inter, hidden} : Shape{experts, hidden, inter});
      if (f.experts_bias) t.add_param(e, "down_proj_bias", {experts, hidden});
      if (!f.experts_bias) leaf(t, e, "act_fn", f.act_cls);  // (gpt_oss clamps its own GLU)
    } else if (name == "gate" || name == "router") {
      const int r = t.add_module(block, name, f.router_class ? std::string(f.router_class) : prefix + f.router_cls);
      t.add_param(r, "weight", {experts, hidden});
      if (f.router_bias) t.add_param(r, "bias", {experts});
      if (f.correction_bias) t.add_buffer(r, "e_score_correction_bias", {experts}, true, DType::kFloat32, true);
    } else if (name == "shared_expert") {  // qwen2_moe, llama4
      gated_mlp(t, block, "shared_expert", prefix + "MLP", hidden, c.positive({f.shared_width_key}), f.act_name,
                f.act_cls);
    } else if (name == "shared_expert_gate") {
      linear(t, block, "shared_expert_gate", hidden, 1, false);
    } else if (name == "shared_experts") {  // deepseek: moe_intermediate_size x n_shared_experts
      // (v3 always builds them; v2 only when the config sets n_shared_experts)
      if (f.router_class != nullptr && !c.has("n_shared_experts")) continue;
      gated_mlp(t, block, "shared_experts", prefix + "MLP", hidden, inter * c.positive_or({"n_shared_experts"}, 1),
                f.act_name, f.act_cls);
    } else {
      DMAP_CHECK(false, "unknown part of a mixture-of-experts block: " + name);
    }
  }
}

// <P><suffix>{embed_tokens, layers[<P>DecoderLayer], norm, rotary_emb} as `name_of_model` under
// `parent`, from the (text) config `c`; sets the tree's dims. Returns the model's node.
int dense_model(ModuleTree& t, int parent, const std::string& name_of_model, const ConfigView& c,
                const DenseFamily& f) {
  const std::string prefix = f.prefix;
  const int64_t vocab = c.positive({"vocab_size"});
  const int64_t hidden = c.positive({"hidden_size"});
  const int64_t inter = c.positive({f.dense_width_key});
  const int64_t layers = c.positive({"num_hidden_layers"});
  const int64_t heads = c.positive({"num_attention_heads"});
  const int64_t kv_heads = c.positive_or({"num_key_value_heads"}, heads);
  const int64_t head_dim = c.positive_or({"head_dim"}, f.head_dim_default > 0 ? f.head_dim_default : hidden / heads);
  const bool attn_bias = f.bias_key ? c.boolean_or({f.bias_key}, true) : c.boolean_or({"attention_bias"}, false);
  const bool qkv_bias =
      !f.fused && (f.bias_key ? attn_bias : c.boolean_or({"qkv_bias"}, f.qkv_bias_default || attn_bias));
  const bool o_bias = !f.fused && (f.bias_key ? attn_bias : c.boolean_or({"o_proj_bias"}, attn_bias));
  const bool mlp_bias = !f.fused && (f.bias_key ? attn_bias : c.boolean_or({"mlp_bias"}, false));
  const std::string norm_cls = prefix + "RMSNorm";
  // A norm over the hidden size: the family's RMSNorm, or nn.LayerNorm with its bias.
  auto hidden_norm = [&](ModuleTree& t, int parent, const std::string& name) {
    if (f.layer_norm) {
      layer_norm(t, parent, name, hidden);
    } else {
      rms_norm(t, parent, name, hidden, norm_cls.c_str());
    }
  };
  const double partial_rotary = partial_rotary_factor(c);
  int model = t.add_module(parent, name_of_model, prefix + f.model_suffix);
  if (f.scaled_embedding) {
    const int e = embedding(t, model, "embed_tokens", vocab, hidden, (prefix + "TextScaledWordEmbedding").c_str());
    t.add_buffer(e, "embed_scale", {}, /*follows_model_dtype=*/true, DType::kFloat32, /*persistent=*/false);
  } else {
    embedding(t, model, "embed_tokens", vocab, hidden);
  }
  int list = t.add_module(model, "layers", "ModuleList");
  const std::vector<bool> moe_layer = moe_layers(c, f, layers);
  const std::vector<bool> rope =
      f.l2_qk_norm ? rope_layers(c, layers) : std::vector<bool>(static_cast<size_t>(layers), true);
  for (int64_t i = 0; i < layers; ++i) {
    int layer = t.add_module(list, std::to_string(i), prefix + "DecoderLayer");
    for (const char* part : f.parts) {
      const std::string name = part;
      if (name == "self_attn") {
        int attn = t.add_module(layer, "self_attn", prefix + "Attention");
        if (f.attention_sinks) t.add_param(attn, "sinks", {heads});
        if (f.mla) {
          mla_attention(t, attn, c, hidden, heads, norm_cls);
          continue;
        }
        if (f.fused) {
          linear(t, attn, "o_proj", heads * head_dim, hidden, false);
          linear(t, attn, "qkv_proj", hidden, (heads + 2 * kv_heads) * head_dim, false);
        } else {
          linear(t, attn, "q_proj", hidden, heads * head_dim, qkv_bias);
          linear(t, attn, "k_proj", hidden, kv_heads * head_dim, qkv_bias);
          linear(t, attn, "v_proj", hidden, kv_heads * head_dim, qkv_bias);
          linear(t, attn, "o_proj", heads * head_dim, hidden, o_bias);
        }
        if (f.qk_norm == DenseFamily::QkNorm::kPerHead) {
          rms_norm(t, attn, "q_norm", head_dim, norm_cls.c_str());
          rms_norm(t, attn, "k_norm", head_dim, norm_cls.c_str());
        } else if (f.qk_norm == DenseFamily::QkNorm::kAllHeads) {
          rms_norm(t, attn, "q_norm", heads * head_dim, norm_cls.c_str());
          rms_norm(t, attn, "k_norm", kv_heads * head_dim, norm_cls.c_str());
        }
        if (f.l2_qk_norm && c.boolean_or({"use_qk_norm"}, true) && rope[static_cast<size_t>(i)]) {
          leaf(t, attn, "qk_norm", (prefix + "L2Norm").c_str());
        }
      } else if (name == f.mlp_attr && moe_layer[static_cast<size_t>(i)]) {
        moe_block(t, layer, c, f, hidden, norm_cls);
      } else if (name == f.mlp_attr) {
        int mlp = t.add_module(layer, name, prefix + "MLP");
        if (f.plain_mlp) {
          linear(t, mlp, "c_fc", hidden, inter, mlp_bias);
          linear(t, mlp, "c_proj", inter, hidden, mlp_bias);
          leaf(t, mlp, f.act_name, f.act_cls);
          continue;
        }
        if (f.fused) {
          linear(t, mlp, "gate_up_proj", hidden, 2 * inter, false);
        } else {
          linear(t, mlp, "gate_proj", hidden, inter, mlp_bias);
          linear(t, mlp, "up_proj", hidden, inter, mlp_bias);
        }
        linear(t, mlp, "down_proj", inter, hidden, mlp_bias);
        leaf(t, mlp, f.act_name, f.act_cls);
      } else if (ends_with(name, "layernorm")) {
        hidden_norm(t, layer, name);
      } else if (ends_with(name, "dropout")) {
        leaf(t, layer, name, "Dropout");
      } else {
        DMAP_CHECK(false, "unknown part of a dense decoder layer: " + name);
      }
    }
  }
  hidden_norm(t, model, "norm");
  const int64_t rotary_dim = f.mla ? c.positive({"qk_rope_head_dim"}) : static_cast<int64_t>(head_dim * partial_rotary);
  if (f.rotary_per_layer_type) {
    // transformers registers them iterating a Python set of the layer types, whose order varies
    // with the hash seed; dmap lists sliding_attention first.
    const std::vector<bool> sliding = sliding_layer_types(c, f.sliding, layers);
    const int r = t.add_module(model, "rotary_emb", prefix + "RotaryEmbedding");
    const int64_t n = (rotary_dim + 1) / 2;
    for (const bool type : {true, false}) {
      if (std::find(sliding.begin(), sliding.end(), type) == sliding.end()) continue;
      const std::string name = type ? "sliding_attention" : "full_attention";
      t.add_buffer(r, name + "_inv_freq", {n}, false, DType::kFloat32, false);
      t.add_buffer(r, name + "_original_inv_freq", {n}, false, DType::kFloat32, false);
    }
  } else {
    rotary(t, model, "rotary_emb", rotary_dim, (prefix + "RotaryEmbedding").c_str());
  }
  t.dims = {layers, hidden, heads, kv_heads, head_dim, inter, vocab, c.integer_or({"max_position_embeddings"}, 0)};
  t.dims.layer_window = sliding_windows(c, f.sliding, layers);
  if (f.mla) {
    // transformers' DeepseekV3Attention caches the expanded keys (heads x (nope + rope)) and
    // values (heads x v_head_dim): sized as heads K/V pairs of their mean width.
    const int64_t k_dim = c.positive({"qk_nope_head_dim"}) + c.positive({"qk_rope_head_dim"});
    t.dims.num_kv_heads = heads;
    t.dims.head_dim = (k_dim + c.positive({"v_head_dim"})) / 2;
  }
  t.dims.gated_mlp = !f.plain_mlp;
  if (std::find(moe_layer.begin(), moe_layer.end(), true) != moe_layer.end()) {
    t.dims.num_experts = c.positive({"num_experts", "num_local_experts", "n_routed_experts"});
    t.dims.experts_per_token = c.positive({"num_experts_per_tok"});
    t.dims.experts_transposed = f.experts_transposed;
    if (t.dims.experts_per_token > t.dims.num_experts) {
      const YAML::Node k = c.node()["num_experts_per_tok"];
      throw InputError(c.file(), k.Mark().line + 1, k.Mark().column + 1,
                       "num_experts_per_tok (" + std::to_string(t.dims.experts_per_token) + ") exceeds the " +
                           std::to_string(t.dims.num_experts) + " experts of a layer");
    }
  }
  return model;
}

ModuleTree build_dense(const ModelSpec& spec, const DenseFamily& f) {
  const ConfigView& c = spec.config;
  const std::string prefix = f.prefix;
  ModuleTree t(f.causal_lm_cls ? std::string(f.causal_lm_cls) : prefix + "ForCausalLM");
  dense_model(t, t.root(), "model", c, f);
  linear(t, t.root(), "lm_head", t.dims.hidden_size, t.dims.vocab_size, false);
  if (tie_embeddings(c, f.tie_default)) t.tie("lm_head.weight", "model.embed_tokens.weight");
  t.no_split_modules = {prefix + "DecoderLayer"};
  for (const char* extra : f.extra_no_split) t.no_split_modules.push_back(extra);
  return t;
}

const DenseFamily& dense_family(const std::string& model_type) {
  for (const DenseFamily& f : dense_families()) {
    if (model_type == f.model_type) return f;
  }
  throw InternalError("no dense family " + model_type);
}

// ---------------------------------------------------------------------------------------
// Multimodal checkpoints (transformers v5 main): <X>ForConditionalGeneration{model: <X>Model{
// vision_tower, multi_modal_projector, language_model}, lm_head}; the text model sits under
// model.language_model (checkpoint keys language_model.model.* are renamed to it on load) and the
// head is tied to its embedding by the top-level tie_word_embeddings (default true). dmap
// simulates text generation: the tower and the projector are placed and sized, and compute
// nothing (no image in the prompt).

// SiglipVisionModel as v5 main builds it (no `.vision_model.` level: checkpoint keys
// vision_tower.vision_model.* lose it on load): embeddings{patch_embedding, position_embedding;
// position_ids}, encoder{layers[SiglipEncoderLayer{layer_norm1, self_attn{k,v,q,out_proj},
// layer_norm2, mlp{activation_fn, fc1, fc2}}]}, post_layernorm, [head].
// A vision tower's sizes: vision_config's values, else its config class's defaults.
struct VisionDims {
  int64_t hidden, inter, layers, heads, channels, image, patch;
};
VisionDims vision_dims(const ConfigView& v, const VisionDims& d) {
  VisionDims r{v.positive_or({"hidden_size"}, d.hidden),       v.positive_or({"intermediate_size"}, d.inter),
               v.positive_or({"num_hidden_layers"}, d.layers), v.positive_or({"num_attention_heads"}, d.heads),
               v.positive_or({"num_channels"}, d.channels),    v.positive_or({"image_size"}, d.image),
               v.positive_or({"patch_size"}, d.patch)};
  if (r.hidden % r.heads != 0)
    throw InputError(v.file(), 0, 0, "vision_config: hidden_size is not a multiple of num_attention_heads");
  return r;
}

void siglip_vision(ModuleTree& t, int parent, const std::string& name, const ConfigView& v) {
  // SiglipVisionConfig's defaults.
  const auto [hidden, inter, layers, heads, channels, image, patch] = vision_dims(v, {768, 3072, 12, 12, 3, 224, 16});
  const int64_t patches = (image / patch) * (image / patch);
  const char* act = activation_class(v.string("hidden_act").value_or("gelu_pytorch_tanh"));
  const int tower = t.add_module(parent, name, "SiglipVisionModel");
  const int emb = t.add_module(tower, "embeddings", "SiglipVisionEmbeddings");
  conv2d(t, emb, "patch_embedding", channels, hidden, patch, true);
  embedding(t, emb, "position_embedding", patches, hidden);
  t.add_buffer(emb, "position_ids", {1, patches}, /*follows_model_dtype=*/false, DType::kInt64, /*persistent=*/false);
  const int enc = t.add_module(tower, "encoder", "SiglipEncoder");
  const int list = t.add_module(enc, "layers", "ModuleList");
  // (Copies: a lambda may not capture structured bindings before C++20 compilers catch up: clang 14.)
  auto mlp = [&t, act, h = hidden, i = inter](int owner) {
    const int m = t.add_module(owner, "mlp", "SiglipMLP");
    leaf(t, m, "activation_fn", act);
    linear(t, m, "fc1", h, i, true);
    linear(t, m, "fc2", i, h, true);
  };
  for (int64_t i = 0; i < layers; ++i) {
    const int layer = t.add_module(list, std::to_string(i), "SiglipEncoderLayer");
    layer_norm(t, layer, "layer_norm1", hidden);
    const int attn = t.add_module(layer, "self_attn", "SiglipAttention");
    for (const char* proj : {"k_proj", "v_proj", "q_proj", "out_proj"}) linear(t, attn, proj, hidden, hidden, true);
    layer_norm(t, layer, "layer_norm2", hidden);
    mlp(layer);
  }
  layer_norm(t, tower, "post_layernorm", hidden);
  // The pooling head, unless vision_use_head says no (Gemma 3's configs do).
  if (v.boolean_or({"vision_use_head"}, true)) {
    const int head = t.add_module(tower, "head", "SiglipMultiheadAttentionPoolingHead");
    t.add_param(head, "probe", {1, 1, hidden});
    const int mha = t.add_module(head, "attention", "MultiheadAttention");
    t.add_param(mha, "in_proj_weight", {3 * hidden, hidden});
    t.add_param(mha, "in_proj_bias", {3 * hidden});
    linear(t, mha, "out_proj", hidden, hidden, true, "NonDynamicallyQuantizableLinear");
    layer_norm(t, head, "layernorm", hidden);
    mlp(head);
  }
}

// Gemma3ForConditionalGeneration (model_type gemma3: Gemma 3 4B/12B/27B): a SigLIP tower, the
// projector {mm_input_projection_weight [vision, text], mm_soft_emb_norm, avg_pool}, and
// Gemma3TextModel. _no_split_modules: v5's post_init gathers the children's (Gemma3DecoderLayer,
// and SiglipPreTrainedModel's four).
ModuleTree build_gemma3(const ModelSpec& spec) {
  const ConfigView& c = spec.config;
  const ConfigView text = sub_config(c, "text_config");
  const ConfigView vision = sub_config(c, "vision_config");
  ModuleTree t("Gemma3ForConditionalGeneration");
  const int model = t.add_module(t.root(), "model", "Gemma3Model");
  siglip_vision(t, model, "vision_tower", vision);
  const int64_t vh = vision.positive_or({"hidden_size"}, 768);
  const int proj = t.add_module(model, "multi_modal_projector", "Gemma3MultiModalProjector");
  t.add_param(proj, "mm_input_projection_weight", {vh, text.positive_or({"hidden_size"}, 2304)});
  rms_norm(t, proj, "mm_soft_emb_norm", vh, "Gemma3RMSNorm");
  leaf(t, proj, "avg_pool", "AvgPool2d");
  dense_model(t, model, "language_model", text, dense_family("gemma3_text"));
  linear(t, t.root(), "lm_head", t.dims.hidden_size, t.dims.vocab_size, false);
  if (c.boolean_or({"tie_word_embeddings"}, true)) t.tie("lm_head.weight", "model.language_model.embed_tokens.weight");
  t.no_split_modules = {"Gemma3DecoderLayer", "SiglipTextEmbeddings", "SiglipVisionEmbeddings", "SiglipEncoderLayer",
                        "SiglipMultiheadAttentionPoolingHead"};
  t.idle_modules = {"model.vision_tower", "model.multi_modal_projector"};
  return t;
}

// PixtralVisionModel: patch_conv (no bias), ln_pre, transformer{layers[PixtralAttentionLayer{
// attention_norm, feed_forward{gate,up,down_proj, act_fn}, attention{k,v,q,o_proj}, ffn_norm}]},
// patch_positional_embedding {inv_freq, original_inv_freq: (image/patch)^2 x head_dim float32}.
void pixtral_vision(ModuleTree& t, int parent, const std::string& name, const ConfigView& v) {
  // PixtralVisionConfig's defaults.
  const auto [hidden, inter, layers, heads, channels, image, patch] = vision_dims(v, {1024, 4096, 24, 16, 3, 1024, 16});
  const int64_t head_dim = hidden / heads;  // PixtralVisionConfig sets head_dim = hidden / heads
  const int64_t side = image / patch;
  const char* act = activation_class(v.string("hidden_act").value_or("gelu"));
  const int tower = t.add_module(parent, name, "PixtralVisionModel");
  conv2d(t, tower, "patch_conv", channels, hidden, patch, false);
  rms_norm(t, tower, "ln_pre", hidden, "PixtralRMSNorm");
  const int tr = t.add_module(tower, "transformer", "PixtralTransformer");
  const int list = t.add_module(tr, "layers", "ModuleList");
  for (int64_t i = 0; i < layers; ++i) {
    const int layer = t.add_module(list, std::to_string(i), "PixtralAttentionLayer");
    rms_norm(t, layer, "attention_norm", hidden, "PixtralRMSNorm");
    const int ff = t.add_module(layer, "feed_forward", "PixtralMLP");
    linear(t, ff, "gate_proj", hidden, inter, false);
    linear(t, ff, "up_proj", hidden, inter, false);
    linear(t, ff, "down_proj", inter, hidden, false);
    leaf(t, ff, "act_fn", act);
    const int attn = t.add_module(layer, "attention", "PixtralAttention");
    for (const char* proj : {"k_proj", "v_proj", "q_proj", "o_proj"}) linear(t, attn, proj, hidden, hidden, false);
    rms_norm(t, layer, "ffn_norm", hidden, "PixtralRMSNorm");
  }
  const int rot = t.add_module(tower, "patch_positional_embedding", "PixtralRotaryEmbedding");
  t.add_buffer(rot, "inv_freq", {side * side, head_dim}, false, DType::kFloat32, false);
  t.add_buffer(rot, "original_inv_freq", {side * side, head_dim}, false, DType::kFloat32, false);
}

// Mistral3ForConditionalGeneration (model_type mistral3: Mistral Small 3.1 / 3.2): LlavaModel's
// layout with a Pixtral tower, Mistral3MultiModalProjector{norm, patch_merger{merging_layer},
// linear_1, act, linear_2} and the text model of text_config.model_type (mistral).
// _no_split_modules: the children's (PixtralAttentionLayer, <text>DecoderLayer).
ModuleTree build_mistral3(const ModelSpec& spec) {
  const ConfigView& c = spec.config;
  const ConfigView text = sub_config(c, "text_config");
  const ConfigView vision = sub_config(c, "vision_config");
  const std::string text_type = text.string("model_type").value_or("mistral");
  const DenseFamily* tf = nullptr;
  for (const DenseFamily& f : dense_families()) {
    if (text_type == f.model_type) tf = &f;
  }
  if (!tf)
    throw InputError(c.file(), 0, 0,
                     "text_config.model_type " + quote_for_message(text_type) + " is not a dense family dmap builds");
  ModuleTree t("Mistral3ForConditionalGeneration");
  const int model = t.add_module(t.root(), "model", "Mistral3Model");
  pixtral_vision(t, model, "vision_tower", vision);
  const int64_t vh = vision.positive_or({"hidden_size"}, 1024);
  const int64_t th = text.positive({"hidden_size"});
  const int64_t merge = c.positive_or({"spatial_merge_size"}, 2);
  const YAML::Node vfl = c.node()["vision_feature_layer"];
  const int64_t feature_layers = vfl.IsDefined() && vfl.IsSequence() ? static_cast<int64_t>(vfl.size()) : 1;
  const bool bias = c.boolean_or({"multimodal_projector_bias"}, false);
  const int proj = t.add_module(model, "multi_modal_projector", "Mistral3MultiModalProjector");
  rms_norm(t, proj, "norm", vh, "Mistral3RMSNorm");
  const int merger = t.add_module(proj, "patch_merger", "Mistral3PatchMerger");
  linear(t, merger, "merging_layer", vh * merge * merge, vh, false);
  linear(t, proj, "linear_1", vh * feature_layers, th, bias);
  leaf(t, proj, "act", activation_class(c.string("projector_hidden_act").value_or("gelu")));
  linear(t, proj, "linear_2", th, th, bias);
  dense_model(t, model, "language_model", text, *tf);
  linear(t, t.root(), "lm_head", t.dims.hidden_size, t.dims.vocab_size, false);
  if (c.boolean_or({"tie_word_embeddings"}, true)) t.tie("lm_head.weight", "model.language_model.embed_tokens.weight");
  t.no_split_modules = {"PixtralAttentionLayer", std::string(tf->prefix) + "DecoderLayer"};
  t.idle_modules = {"model.vision_tower", "model.multi_modal_projector"};
  return t;
}

// ---------------------------------------------------------------------------------------
// gpt2: GPT2LMHeadModel{transformer: GPT2Model{wte, wpe, drop, h[GPT2Block{ln_1, attn{c_attn,
// c_proj, attn_dropout, resid_dropout; buffers bias(bool), masked_bias}, ln_2, mlp{c_fc, c_proj,
// act, dropout}}], ln_f}, lm_head}
ModuleTree build_gpt2(const ModelSpec& spec) {
  const ConfigView& c = spec.config;
  const int64_t vocab = c.positive({"vocab_size"});
  const int64_t embd = c.positive({"n_embd", "hidden_size"});
  const int64_t layers = c.positive({"n_layer", "num_hidden_layers"});
  const int64_t heads = c.positive({"n_head", "num_attention_heads"});
  const int64_t positions = c.positive({"n_positions", "max_position_embeddings"});
  const int64_t inner = c.positive_or({"n_inner"}, 4 * embd);
  const bool cross = c.boolean_or({"add_cross_attention"}, false);
  const bool tied = tie_embeddings(c, true);

  ModuleTree t("GPT2LMHeadModel");
  int tr = t.add_module(t.root(), "transformer", "GPT2Model");
  embedding(t, tr, "wte", vocab, embd);
  embedding(t, tr, "wpe", positions, embd);
  leaf(t, tr, "drop", "Dropout");
  int list = t.add_module(tr, "h", "ModuleList");
  auto attention = [&](int parent, const std::string& name, bool is_cross) {
    int attn = t.add_module(parent, name, "GPT2Attention");
    t.add_buffer(attn, "bias", {1, 1, positions, positions}, false, DType::kBool, false);
    t.add_buffer(attn, "masked_bias", {}, /*follows_model_dtype=*/true, DType::kFloat32, false);
    if (is_cross) {
      conv1d(t, attn, "c_attn", 2 * embd, embd);
      conv1d(t, attn, "q_attn", embd, embd);
    } else {
      conv1d(t, attn, "c_attn", 3 * embd, embd);
    }
    conv1d(t, attn, "c_proj", embd, embd);
    leaf(t, attn, "attn_dropout", "Dropout");
    leaf(t, attn, "resid_dropout", "Dropout");
  };
  for (int64_t i = 0; i < layers; ++i) {
    int block = t.add_module(list, std::to_string(i), "GPT2Block");
    layer_norm(t, block, "ln_1", embd);
    attention(block, "attn", false);
    layer_norm(t, block, "ln_2", embd);
    if (cross) {
      attention(block, "crossattention", true);
      layer_norm(t, block, "ln_cross_attn", embd);
    }
    int mlp = t.add_module(block, "mlp", "GPT2MLP");
    conv1d(t, mlp, "c_fc", inner, embd);
    conv1d(t, mlp, "c_proj", embd, inner);
    leaf(t, mlp, "act", "NewGELUActivation");
    leaf(t, mlp, "dropout", "Dropout");
  }
  layer_norm(t, tr, "ln_f", embd);
  linear(t, t.root(), "lm_head", embd, vocab, false);
  if (tied) t.tie("lm_head.weight", "transformer.wte.weight");

  t.no_split_modules = {"GPT2Block"};
  t.dims = {layers, embd, heads, heads, embd / heads, inner, vocab, positions};
  return t;
}

// ---------------------------------------------------------------------------------------
// opt: OPTForCausalLM{model: OPTModel{decoder: OPTDecoder{embed_tokens, embed_positions,
// [project_out, project_in], [final_layer_norm], layers[OPTDecoderLayer{self_attn{k,v,q,out},
// activation_fn, self_attn_layer_norm, fc1, fc2, final_layer_norm}]}}, lm_head}
ModuleTree build_opt(const ModelSpec& spec) {
  const ConfigView& c = spec.config;
  const int64_t vocab = c.positive({"vocab_size"});
  const int64_t hidden = c.positive({"hidden_size"});
  const int64_t ffn = c.positive({"ffn_dim"});
  const int64_t layers = c.positive({"num_hidden_layers"});
  const int64_t heads = c.positive({"num_attention_heads"});
  const int64_t positions = c.positive({"max_position_embeddings"});
  const int64_t proj = c.positive_or({"word_embed_proj_dim"}, hidden);
  const bool bias = c.boolean_or({"enable_bias"}, true);
  const bool affine = c.boolean_or({"layer_norm_elementwise_affine"}, true);
  const bool ln_before = c.boolean_or({"do_layer_norm_before"}, true);
  const bool remove_final = c.boolean_or({"_remove_final_layer_norm"}, false);
  const bool tied = tie_embeddings(c, true);

  ModuleTree t("OPTForCausalLM");
  int model = t.add_module(t.root(), "model", "OPTModel");
  int dec = t.add_module(model, "decoder", "OPTDecoder");
  embedding(t, dec, "embed_tokens", vocab, proj);
  embedding(t, dec, "embed_positions", positions + 2, hidden, "OPTLearnedPositionalEmbedding");  // offset 2
  if (proj != hidden) {
    linear(t, dec, "project_out", hidden, proj, false);
    linear(t, dec, "project_in", proj, hidden, false);
  }
  if (ln_before && !remove_final) layer_norm(t, dec, "final_layer_norm", hidden, affine);
  int list = t.add_module(dec, "layers", "ModuleList");
  for (int64_t i = 0; i < layers; ++i) {
    int layer = t.add_module(list, std::to_string(i), "OPTDecoderLayer");
    int attn = t.add_module(layer, "self_attn", "OPTAttention");
    linear(t, attn, "k_proj", hidden, hidden, bias);
    linear(t, attn, "v_proj", hidden, hidden, bias);
    linear(t, attn, "q_proj", hidden, hidden, bias);
    linear(t, attn, "out_proj", hidden, hidden, bias);
    leaf(t, layer, "activation_fn", "ReLU");
    layer_norm(t, layer, "self_attn_layer_norm", hidden, affine);
    linear(t, layer, "fc1", hidden, ffn, bias);
    linear(t, layer, "fc2", ffn, hidden, bias);
    layer_norm(t, layer, "final_layer_norm", hidden, affine);
  }
  linear(t, t.root(), "lm_head", proj, vocab, false);
  if (tied) t.tie("lm_head.weight", "model.decoder.embed_tokens.weight");

  t.no_split_modules = {"OPTDecoderLayer"};
  t.dims = {layers, hidden, heads, heads, hidden / heads, ffn, vocab, positions};
  return t;
}

// ---------------------------------------------------------------------------------------
// gptj: GPTJForCausalLM{transformer: GPTJModel{wte, drop, h[GPTJBlock{ln_1, attn{attn_dropout,
// resid_dropout, k_proj, v_proj, q_proj, out_proj}, mlp{fc_in, fc_out, act, dropout}}], ln_f},
// lm_head (with bias)}
ModuleTree build_gptj(const ModelSpec& spec) {
  const ConfigView& c = spec.config;
  const int64_t vocab = c.positive({"vocab_size"});
  const int64_t embd = c.positive({"n_embd", "hidden_size"});
  const int64_t layers = c.positive({"n_layer", "num_hidden_layers"});
  const int64_t heads = c.positive({"n_head", "num_attention_heads"});
  const int64_t positions = c.positive({"n_positions", "max_position_embeddings"});
  const int64_t inner = c.positive_or({"n_inner"}, 4 * embd);
  const bool tied = tie_embeddings(c, false);

  ModuleTree t("GPTJForCausalLM");
  int tr = t.add_module(t.root(), "transformer", "GPTJModel");
  embedding(t, tr, "wte", vocab, embd);
  leaf(t, tr, "drop", "Dropout");
  int list = t.add_module(tr, "h", "ModuleList");
  for (int64_t i = 0; i < layers; ++i) {
    int block = t.add_module(list, std::to_string(i), "GPTJBlock");
    layer_norm(t, block, "ln_1", embd);
    int attn = t.add_module(block, "attn", "GPTJAttention");
    leaf(t, attn, "attn_dropout", "Dropout");
    leaf(t, attn, "resid_dropout", "Dropout");
    linear(t, attn, "k_proj", embd, embd, false);
    linear(t, attn, "v_proj", embd, embd, false);
    linear(t, attn, "q_proj", embd, embd, false);
    linear(t, attn, "out_proj", embd, embd, false);
    int mlp = t.add_module(block, "mlp", "GPTJMLP");
    linear(t, mlp, "fc_in", embd, inner, true);
    linear(t, mlp, "fc_out", inner, embd, true);
    leaf(t, mlp, "act", "NewGELUActivation");
    leaf(t, mlp, "dropout", "Dropout");
  }
  layer_norm(t, tr, "ln_f", embd);
  linear(t, t.root(), "lm_head", embd, vocab, true);
  if (tied) t.tie("lm_head.weight", "transformer.wte.weight");

  t.no_split_modules = {"GPTJBlock"};
  t.dims = {layers, embd, heads, heads, embd / heads, inner, vocab, positions};
  return t;
}

// ---------------------------------------------------------------------------------------
// gpt_neox: GPTNeoXForCausalLM{gpt_neox: GPTNeoXModel{embed_in, emb_dropout, layers[GPTNeoXLayer
// {input_layernorm, post_attention_layernorm, post_attention_dropout, post_mlp_dropout,
// attention{query_key_value, dense}, mlp{dense_h_to_4h, dense_4h_to_h, act}}], final_layer_norm,
// rotary_emb}, embed_out}
ModuleTree build_gpt_neox(const ModelSpec& spec) {
  const ConfigView& c = spec.config;
  const int64_t vocab = c.positive({"vocab_size"});
  const int64_t hidden = c.positive({"hidden_size"});
  const int64_t inter = c.positive({"intermediate_size"});
  const int64_t layers = c.positive({"num_hidden_layers"});
  const int64_t heads = c.positive({"num_attention_heads"});
  const int64_t head_dim = hidden / heads;
  const bool attn_bias = c.boolean_or({"attention_bias"}, true);
  const double rotary_pct = c.number_or({"rotary_pct", "partial_rotary_factor"}, 0.25);
  const bool tied = tie_embeddings(c, false);

  ModuleTree t("GPTNeoXForCausalLM");
  int model = t.add_module(t.root(), "gpt_neox", "GPTNeoXModel");
  embedding(t, model, "embed_in", vocab, hidden);
  leaf(t, model, "emb_dropout", "Dropout");
  int list = t.add_module(model, "layers", "ModuleList");
  for (int64_t i = 0; i < layers; ++i) {
    int layer = t.add_module(list, std::to_string(i), "GPTNeoXLayer");
    layer_norm(t, layer, "input_layernorm", hidden);
    layer_norm(t, layer, "post_attention_layernorm", hidden);
    leaf(t, layer, "post_attention_dropout", "Dropout");
    leaf(t, layer, "post_mlp_dropout", "Dropout");
    int attn = t.add_module(layer, "attention", "GPTNeoXAttention");
    linear(t, attn, "query_key_value", hidden, 3 * hidden, attn_bias);
    linear(t, attn, "dense", hidden, hidden, attn_bias);
    int mlp = t.add_module(layer, "mlp", "GPTNeoXMLP");
    linear(t, mlp, "dense_h_to_4h", hidden, inter, true);
    linear(t, mlp, "dense_4h_to_h", inter, hidden, true);
    leaf(t, mlp, "act", "GELUActivation");
  }
  layer_norm(t, model, "final_layer_norm", hidden);
  rotary(t, model, "rotary_emb", static_cast<int64_t>(head_dim * rotary_pct), "GPTNeoXRotaryEmbedding");
  linear(t, t.root(), "embed_out", hidden, vocab, false);
  if (tied) t.tie("embed_out.weight", "gpt_neox.embed_in.weight");

  t.no_split_modules = {"GPTNeoXLayer"};
  t.dims = {layers, hidden, heads, heads, head_dim, inter, vocab, c.integer_or({"max_position_embeddings"}, 0)};
  return t;
}

// ---------------------------------------------------------------------------------------
// chatglm (ChatGLM2/3 remote code): ChatGLMForConditionalGeneration{transformer: ChatGLMModel{
// embedding{word_embeddings}, rotary_pos_emb{inv_freq}, encoder: GLMTransformer{layers[GLMBlock
// {input_layernorm, self_attention{query_key_value, core_attention{attention_dropout}, dense},
// post_attention_layernorm, mlp{dense_h_to_4h, dense_4h_to_h}}], final_layernorm}, output_layer}}
ModuleTree build_chatglm(const ModelSpec& spec) {
  const ConfigView& c = spec.config;
  const int64_t vocab = c.positive({"padded_vocab_size", "vocab_size"});
  const int64_t hidden = c.positive({"hidden_size"});
  const int64_t ffn = c.positive({"ffn_hidden_size"});
  const int64_t layers = c.positive({"num_layers"});
  const int64_t heads = c.positive({"num_attention_heads"});
  const int64_t kv_channels = c.positive_or({"kv_channels"}, hidden / heads);
  const bool mqa = c.boolean_or({"multi_query_attention"}, false);
  const int64_t groups = mqa ? c.positive_or({"multi_query_group_num"}, 1) : heads;
  const bool qkv_bias = c.boolean_or({"add_qkv_bias"}, false);
  const bool linear_bias = c.boolean_or({"add_bias_linear"}, false);
  const bool rmsnorm = c.boolean_or({"rmsnorm"}, true);
  const bool post_ln = c.boolean_or({"post_layer_norm"}, true);
  const bool tied = tie_embeddings(c, false);
  const int64_t projection = kv_channels * heads;
  const int64_t qkv_out = projection + 2 * kv_channels * groups;

  ModuleTree t("ChatGLMForConditionalGeneration");
  auto add_norm = [&](int parent, const std::string& name) {
    if (rmsnorm) {
      rms_norm(t, parent, name, hidden, "RMSNorm");
    } else {
      layer_norm(t, parent, name, hidden);
    }
  };
  int model = t.add_module(t.root(), "transformer", "ChatGLMModel");
  int emb = t.add_module(model, "embedding", "Embedding");
  embedding(t, emb, "word_embeddings", vocab, hidden);
  {
    // RotaryEmbedding(rotary_dim // 2): inv_freq of (rotary_dim/2)/2 elements, a persistent
    // buffer computed in the model's dtype.
    int rot = t.add_module(model, "rotary_pos_emb", "RotaryEmbedding");
    const int64_t dim = kv_channels / 2;
    t.add_buffer(rot, "inv_freq", {(dim + 1) / 2}, /*follows_model_dtype=*/true, DType::kFloat32, /*persistent=*/true);
  }
  int enc = t.add_module(model, "encoder", "GLMTransformer");
  int list = t.add_module(enc, "layers", "ModuleList");
  for (int64_t i = 0; i < layers; ++i) {
    int block = t.add_module(list, std::to_string(i), "GLMBlock");
    add_norm(block, "input_layernorm");
    int attn = t.add_module(block, "self_attention", "SelfAttention");
    linear(t, attn, "query_key_value", hidden, qkv_out, qkv_bias || linear_bias);
    int core = t.add_module(attn, "core_attention", "CoreAttention");
    leaf(t, core, "attention_dropout", "Dropout");
    linear(t, attn, "dense", projection, hidden, linear_bias);
    add_norm(block, "post_attention_layernorm");
    int mlp = t.add_module(block, "mlp", "MLP");
    linear(t, mlp, "dense_h_to_4h", hidden, 2 * ffn, linear_bias);
    linear(t, mlp, "dense_4h_to_h", ffn, hidden, linear_bias);
  }
  if (post_ln) add_norm(enc, "final_layernorm");
  linear(t, model, "output_layer", hidden, vocab, false);
  if (tied) t.tie("transformer.output_layer.weight", "transformer.embedding.word_embeddings.weight");

  t.no_split_modules = {"GLMBlock"};
  t.dims = {layers, hidden, heads, groups, kv_channels, ffn, vocab, c.integer_or({"seq_length"}, 0)};
  t.dims.gated_mlp = true;  // dense_h_to_4h makes both halves of the SwiGLU
  return t;
}

}  // namespace

const std::vector<std::string>& supported_model_types() {
  static const std::vector<std::string> kTypes = [] {
    std::vector<std::string> v;
    for (const DenseFamily& f : dense_families()) v.push_back(f.model_type);
    for (const char* other : {"gemma3", "mistral3", "gpt2", "opt", "gptj", "gpt_neox", "chatglm"}) v.push_back(other);
    return v;
  }();
  return kTypes;
}

ModuleTree build_module_tree(const ModelSpec& spec) {
  const std::string& mt = spec.model_type;
  ModuleTree tree = [&]() {
    for (const DenseFamily& f : dense_families()) {
      if (mt == f.model_type) return build_dense(spec, f);
    }
    if (mt == "gemma3") return build_gemma3(spec);
    if (mt == "mistral3") return build_mistral3(spec);
    if (mt == "gpt2") return build_gpt2(spec);
    if (mt == "opt") return build_opt(spec);
    if (mt == "gptj") return build_gptj(spec);
    if (mt == "gpt_neox") return build_gpt_neox(spec);
    if (mt == "chatglm") return build_chatglm(spec);
    std::string known;
    for (const auto& k : supported_model_types()) known += (known.empty() ? "" : ", ") + k;
    const YAML::Node at = spec.config.node()["model_type"];
    const int line = at.IsDefined() && at.Mark().line >= 0 ? at.Mark().line + 1 : 0;
    throw InputError(
        spec.source, line, line > 0 ? at.Mark().column + 1 : 0,
        "unknown model_type " + quote_for_message(mt) + " (supported: " + known +
            "; a dense family of the llama shape is a few lines in core/model_families.cpp, see docs/FAMILIES.md)");
  }();
  tree.model_type = mt;
  tree.model_name = spec.name;
  tree.checkpoint_dtype = spec.checkpoint_dtype.value_or(DType::kFloat32);
  // The model's _keep_in_fp32_modules (v5: only GptOssPreTrainedModel declares any among these
  // families; quantizers never convert modules matching them).
  if (mt == "gpt_oss") tree.keep_in_fp32_modules = {"post_attention_layernorm", "input_layernorm", "norm"};
  if (spec.no_split_modules) tree.no_split_modules = *spec.no_split_modules;
  if (spec.tied_weights) {
    // An explicit tie list (case/scenario form) replaces the one derived from the config.
    tree.clear_ties();
    for (const auto& [target, source] : *spec.tied_weights) {
      const int t = tree.find(target), s = tree.find(source);
      if (t < 0 || s < 0 || !tree.node(t).is_tensor || !tree.node(s).is_tensor) {
        throw InputError(spec.source, 0, 0,
                         "tied_weights names a tensor the model does not have: " + target + " -> " + source);
      }
      tree.tie(target, source);
    }
  }
  // A quantized checkpoint: the quantizer replaces modules on the meta model (core/quantize.h).
  // (A GGUF file replaces the checkpoint's own quantization: llama.cpp's converter dequantizes it.)
  if (spec.quantization && spec.gguf_file_type.empty()) tree = quantize_module_tree(tree, *spec.quantization);
  // A GGUF file given as the model: each tensor as the file stores it (core/gguf_reader.h).
  if (spec.gguf) return gguf_file_module_tree(tree, *spec.gguf);
  // A GGUF file of the model: its tensors as llama-quantize stores them (core/gguf.h).
  if (!spec.gguf_file_type.empty()) {
    const auto ft = parse_gguf_file_type(spec.gguf_file_type);
    if (!ft) throw InputError(spec.source, 0, 0, "unknown GGUF file type '" + spec.gguf_file_type + "'");
    tree = gguf_module_tree(tree, *ft);
  }
  return tree;
}

}  // namespace dmap
