// A model's ExecConfig, its RoPE frequencies and per-layer modules (see config.h).
#include "exec/config.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/module_tree.h"
#include "core/output.h"

namespace dmap::exec {

namespace {

const std::vector<std::string>& exec_families() {
  static const std::vector<std::string> f = {"llama", "mistral", "qwen2",       "gemma",     "qwen3",  "olmo2",
                                             "phi3",  "gemma2",  "gemma3_text", "qwen3_moe", "mixtral"};
  return f;
}

// A number of a rope map (rope_scaling / rope_parameters), or `fallback`.
double rope_number(const ConfigView& c, const YAML::Node& map, const char* key, const char* where, double fallback) {
  const YAML::Node v = map[key];
  if (!v.IsDefined() || v.IsNull()) return fallback;
  if (!v.IsScalar())
    throw InputError(c.file(), v.Mark().line + 1, 0, std::string(where) + "." + key + ": expected a number");
  try {
    return v.as<double>();
  } catch (const YAML::Exception&) {
    throw InputError(c.file(), v.Mark().line + 1, 0, std::string(where) + "." + key + ": expected a number");
  }
}

std::vector<float> rope_factors(const ConfigView& c, const YAML::Node& map, const char* key, const char* where,
                                size_t n) {
  const YAML::Node v = map[key];
  const std::string what = std::string(where) + "." + key;
  if (!v.IsDefined() || !v.IsSequence() || v.size() != n) {
    throw InputError(c.file(), map.Mark().line + 1, 0,
                     what + ": expected a list of " + std::to_string(n) + " numbers (rotary dimension / 2)");
  }
  std::vector<float> out;
  for (const auto& x : v) {
    double f = 0;
    try {
      f = x.IsScalar() ? x.as<double>() : 0.0;
    } catch (const YAML::Exception&) {
      f = 0;
    }
    if (!(f > 0) || !std::isfinite(f))
      throw InputError(c.file(), x.Mark().line + 1, 0, what + ": expected positive numbers");
    out.push_back(static_cast<float>(f));
  }
  return out;
}

// A soft-capping value: `fallback` when the key is absent, 0 (none) when it is null.
double softcap_of(const ConfigView& c, const char* key, double fallback) {
  if (c.has(key)) return c.number_or({key}, fallback);
  return c.node()[key].IsDefined() ? 0.0 : fallback;
}

}  // namespace

ExecConfig exec_config(const ModelSpec& spec) {
  const ConfigView& c = spec.config;
  ExecConfig e;
  e.family = spec.model_type;
  e.source = spec.source;
  const auto& families = exec_families();
  if (std::find(families.begin(), families.end(), e.family) == families.end()) {
    std::string list;
    for (const auto& f : families) list += (list.empty() ? "" : ", ") + f;
    throw InputError(spec.source, 0, 0,
                     "the CPU executor runs " + list + "; this model is " + quote_for_message(e.family));
  }
  const std::string& f = e.family;
  const bool gemma_like = f == "gemma" || f == "gemma2" || f == "gemma3_text";
  e.gemma = gemma_like;
  e.norm_mul_first = gemma_like || f == "olmo2";
  e.layout = f == "olmo2"                            ? ExecConfig::Layout::kPostNorm
             : (f == "gemma2" || f == "gemma3_text") ? ExecConfig::Layout::kSandwich
                                                     : ExecConfig::Layout::kPreNorm;
  e.qk_norm = (f == "qwen3" || f == "qwen3_moe" || f == "gemma3_text") ? ExecConfig::QkNorm::kPerHead
              : f == "olmo2"                                           ? ExecConfig::QkNorm::kAllHeads
                                                                       : ExecConfig::QkNorm::kNone;
  e.fused = f == "phi3";
  e.rope_fp32 = f == "olmo2";
  if (spec.quantization) {
    throw InputError(spec.source, spec.quantization->line, 0,
                     "the CPU executor runs unquantized checkpoints; this one is " + quant_summary(*spec.quantization));
  }
  // The shapes as the planner's tree has them (core/module_tree.h ModelDims): one derivation of
  // head_dim and friends for the maps, the simulator and the executors.
  const ModuleTree tree = build_module_tree(spec);
  const ModelDims& d = tree.dims;
  e.hidden = d.hidden_size;
  e.inter = d.intermediate_size;
  e.layers = d.num_layers;
  e.heads = d.num_attention_heads;
  e.kv_heads = d.num_kv_heads;
  e.head_dim = d.head_dim;
  e.vocab = d.vocab_size;
  e.max_pos = d.max_positions;
  DMAP_CHECK(
      e.hidden > 0 && e.inter > 0 && e.layers > 0 && e.heads > 0 && e.kv_heads > 0 && e.head_dim > 0 && e.vocab > 0,
      "the module tree of " + e.family + " has unset dimensions");
  e.eps = c.number_or({"rms_norm_eps"}, f == "olmo2" || f == "phi3" ? 1e-5 : 1e-6);
  // transformers v5 keeps RoPE in `rope_parameters` (gemma3: one map per layer type).
  const YAML::Node rp = c.node()["rope_parameters"];
  const bool per_type = rp.IsDefined() && rp.IsMap() && rp["full_attention"].IsDefined();
  const YAML::Node rp_full = per_type ? rp["full_attention"] : rp;
  const double theta_default = f == "gemma3_text" ? 1e6 : 10000.0;
  e.rope_theta = c.has("rope_theta") ? c.number_or({"rope_theta"}, theta_default)
                 : rp_full.IsDefined() && rp_full.IsMap()
                     ? rope_number(c, rp_full, "rope_theta", "rope_parameters", theta_default)
                     : theta_default;
  e.tie = c.boolean_or({"tie_word_embeddings"}, gemma_like);
  e.qkv_bias = !e.fused && (f == "qwen2" || c.boolean_or({"attention_bias"}, false));
  if (e.heads % e.kv_heads != 0)
    throw InputError(spec.source, 0, 0, "num_attention_heads is not a multiple of num_key_value_heads");
  // Sliding windows per layer, by the family's rule (the same as the planner's: layer_types,
  // use_sliding_window and max_window_layers, alternation or a pattern).
  e.layer_window = tree.dims.layer_window;
  // Mixture of experts: which layers are sparse, as the planner's tree says (qwen3_moe's
  // mlp_only_layers and decoder_sparse_step; every mixtral layer).
  if (tree.dims.num_experts > 0) {
    e.experts = tree.dims.num_experts;
    e.top_k = tree.dims.experts_per_token;
    if (e.top_k < 1 || e.top_k > e.experts)
      throw InputError(spec.source, 0, 0, "num_experts_per_tok must be between 1 and the number of experts");
    e.norm_topk = f == "mixtral" || c.boolean_or({"norm_topk_prob"}, false);
    e.router_fp32_weights = f == "mixtral";
    e.moe_inter = f == "mixtral" ? e.inter : c.positive({"moe_intermediate_size"});
    for (int64_t l = 0; l < e.layers; ++l) {
      const int layer = tree.find("model.layers." + std::to_string(l));
      e.sparse.push_back(layer >= 0 && routed_experts_of(tree, layer) >= 0 ? 1 : 0);
    }
  }
  for (int64_t w : e.layer_window) e.sliding_window = std::max(e.sliding_window, w);
  if (std::all_of(e.layer_window.begin(), e.layer_window.end(), [&](int64_t w) { return w == e.sliding_window; })) {
    e.layer_window.clear();  // every layer alike
  }
  // Partial rotary (phi3 only: transformers' default RoPE of the other families ignores it).
  if (f == "phi3") {
    double prf = c.number_or({"partial_rotary_factor"}, 1.0);
    if (!c.has("partial_rotary_factor") && rp.IsDefined() && rp.IsMap())
      prf = rope_number(c, rp, "partial_rotary_factor", "rope_parameters", 1.0);
    if (!(prf > 0 && prf <= 1)) throw InputError(spec.source, 0, 0, "partial_rotary_factor must be in (0, 1]");
    e.rotary_dim = static_cast<int64_t>(static_cast<double>(e.head_dim) * prf);
    if (e.rotary_dim < 2 || e.rotary_dim % 2 != 0) {
      throw InputError(spec.source, 0, 0,
                       "partial_rotary_factor leaves " + std::to_string(e.rotary_dim) +
                           " rotary channels (an even number >= 2 is needed)");
    }
  }
  e.attn_scale = gemma_like && f != "gemma" ? std::pow(c.number_or({"query_pre_attn_scalar"}, 256.0), -0.5) : 0.0;
  // Gemma 3 never passes attention soft-capping to its attention; both cap the logits when set.
  if (f == "gemma2") e.attn_softcap = softcap_of(c, "attn_logit_softcapping", 50.0);
  if (f == "gemma2" || f == "gemma3_text")
    e.final_softcap = softcap_of(c, "final_logit_softcapping", f == "gemma2" ? 30.0 : 0.0);
  if (e.attn_softcap < 0 || e.final_softcap < 0)
    throw InputError(spec.source, 0, 0, "soft-capping values must be positive");
  if (f == "gemma3_text") {
    e.local_rope_theta = c.number_or({"rope_local_base_freq"}, 10000.0);
    if (per_type && rp["sliding_attention"].IsMap())
      e.local_rope_theta = rope_number(c, rp["sliding_attention"], "rope_theta", "rope_parameters.sliding_attention",
                                       e.local_rope_theta);
  }
  // RoPE scaling: llama3, longrope (phi3), linear (gemma3's full layers); none otherwise.
  YAML::Node rs;
  const char* where = "rope_scaling";
  const YAML::Node scaling = c.node()["rope_scaling"];
  if (scaling.IsDefined() && !scaling.IsNull()) {
    rs.reset(scaling);
  } else if (rp_full.IsDefined() && rp_full.IsMap()) {
    rs.reset(rp_full);
    where = per_type ? "rope_parameters.full_attention" : "rope_parameters";
  }
  if (rs.IsDefined() && !rs.IsNull()) {
    if (!rs.IsMap()) throw InputError(spec.source, rs.Mark().line + 1, 0, std::string(where) + ": expected a map");
    const std::string type = rs["rope_type"].IsDefined() ? rs["rope_type"].as<std::string>()
                             : rs["type"].IsDefined()    ? rs["type"].as<std::string>()
                                                         : "default";
    if (type == "llama3") {
      e.llama3_rope = true;
      e.rope_factor = rope_number(c, rs, "factor", where, 8.0);
      e.rope_low = rope_number(c, rs, "low_freq_factor", where, 1.0);
      e.rope_high = rope_number(c, rs, "high_freq_factor", where, 4.0);
      e.rope_orig_max = rope_number(c, rs, "original_max_position_embeddings", where, 8192.0);
    } else if ((type == "longrope" || type == "su") && f == "phi3") {
      const size_t half = static_cast<size_t>(e.rotary() / 2);
      e.longrope_short = rope_factors(c, rs, "short_factor", where, half);
      e.longrope_long = rope_factors(c, rs, "long_factor", where, half);
      // original_max_position_embeddings: top level (Phi-3's configs), else in the rope map.
      e.rope_orig_max =
          c.has("original_max_position_embeddings")
              ? c.number_or({"original_max_position_embeddings"}, 0.0)
              : rope_number(c, rs, "original_max_position_embeddings", where, static_cast<double>(e.max_pos));
      if (!(e.rope_orig_max > 0))
        throw InputError(spec.source, 0, 0, "longrope needs original_max_position_embeddings");
      const double factor = rope_number(c, rs, "factor", where, static_cast<double>(e.max_pos) / e.rope_orig_max);
      e.rope_attention = rope_number(c, rs, "attention_factor", where,
                                     factor <= 1 ? 1.0 : std::sqrt(1 + std::log(factor) / std::log(e.rope_orig_max)));
    } else if (type == "linear" && f == "gemma3_text") {
      e.rope_linear = rope_number(c, rs, "factor", where, 1.0);
      if (!(e.rope_linear > 0))
        throw InputError(spec.source, rs.Mark().line + 1, 0, std::string(where) + ".factor must be positive");
    } else if (type != "default") {
      throw InputError(spec.source, rs.Mark().line + 1, 0,
                       std::string(where) + " type '" + type + "' is not supported for " + f +
                           " (llama3; longrope for phi3; linear for gemma3_text)");
    }
  }
  return e;
}

std::vector<std::string> layer_modules(const ExecConfig& c) {
  switch (c.layout) {
    case ExecConfig::Layout::kPostNorm:
      return {"self_attn", "post_attention_layernorm", "mlp", "post_feedforward_layernorm"};
    case ExecConfig::Layout::kSandwich:
      return {"input_layernorm",           "self_attn", "post_attention_layernorm",
              "pre_feedforward_layernorm", "mlp",       "post_feedforward_layernorm"};
    case ExecConfig::Layout::kPreNorm: break;
  }
  return {"input_layernorm", "self_attn", "post_attention_layernorm", "mlp"};
}

std::vector<float> rope_inv_freq(const ExecConfig& cfg, bool local, bool long_factors) {
  // inv_freq in float32 as transformers computes it (and its llama3, longrope or linear adjustment).
  std::vector<float> out;
  const int64_t d = cfg.rotary();
  const float theta = static_cast<float>(local && cfg.local_rope_theta > 0 ? cfg.local_rope_theta : cfg.rope_theta);
  const std::vector<float>& ext = long_factors ? cfg.longrope_long : cfg.longrope_short;
  for (int64_t i = 0; i < d; i += 2) {
    const float base = std::pow(theta, static_cast<float>(i) / static_cast<float>(d));
    float f = ext.empty() ? 1.0f / base : 1.0f / (ext[static_cast<size_t>(i / 2)] * base);
    if (cfg.llama3_rope) {
      const double low_wl = cfg.rope_orig_max / cfg.rope_low, high_wl = cfg.rope_orig_max / cfg.rope_high;
      const double wavelen = 2 * M_PI / f;
      double scaled = wavelen > low_wl ? f / cfg.rope_factor : f;
      if (wavelen >= high_wl && wavelen <= low_wl) {
        const double smooth = (cfg.rope_orig_max / wavelen - cfg.rope_low) / (cfg.rope_high - cfg.rope_low);
        scaled = (1 - smooth) * scaled / cfg.rope_factor + smooth * scaled;
      }
      f = static_cast<float>(scaled);
    }
    if (!local && cfg.rope_linear != 1) f = f / static_cast<float>(cfg.rope_linear);
    out.push_back(f);
  }
  return out;
}

}  // namespace dmap::exec
