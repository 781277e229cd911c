// The layer program of each family (see layer_program.h).
#include "exec/layer_program.h"

#include <cmath>

namespace dmap::exec {

std::vector<Step> layer_program(const ExecConfig& cfg, int64_t l) {
  using Layout = ExecConfig::Layout;
  using QkNorm = ExecConfig::QkNorm;
  using Op = Step::Op;
  const std::string p = "model.layers." + std::to_string(l) + ".";
  const int64_t H = cfg.hidden, d = cfg.head_dim, qd = cfg.heads * d, kvd = cfg.kv_heads * d, I = cfg.inter;
  const std::vector<std::string> modules = layer_modules(cfg);
  const int first_slot = 1 + static_cast<int>(l * static_cast<int64_t>(modules.size()));
  std::vector<Step> s;
  auto module = [&](const std::string& name) {
    Step st;
    st.op = Op::kModule;
    for (size_t i = 0; i < modules.size(); ++i)
      if (modules[i] == name) st.slot = first_slot + static_cast<int>(i);
    s.push_back(st);
  };
  auto norm = [&](Act src, Act dst, const std::string& weight, int64_t groups, int64_t width) {
    Step st;
    st.op = Op::kNorm;
    st.src = src;
    st.dst = dst;
    st.weight = weight;
    st.groups = groups;
    st.width = width;
    s.push_back(st);
  };
  auto linear = [&](Act src, Act dst, const std::string& weight, const std::string& bias, int64_t row0, int64_t n,
                    int64_t k, bool round) {
    Step st;
    st.op = Op::kLinear;
    st.src = src;
    st.dst = dst;
    st.weight = weight;
    st.bias = bias;
    st.row0 = row0;
    st.n = n;
    st.k = k;
    st.round = round;
    s.push_back(st);
  };
  auto simple = [&](Op op) {
    Step st;
    st.op = op;
    s.push_back(st);
  };

  // Attention: pre-norm (llama, gemma2/3: input_layernorm), or on x itself (olmo2).
  if (cfg.layout != Layout::kPostNorm) {
    module("input_layernorm");
    norm(Act::kX, Act::kH, p + "input_layernorm.weight", 1, H);
  }
  module("self_attn");
  const Act in = cfg.layout == Layout::kPostNorm ? Act::kX : Act::kH;
  if (cfg.fused) {  // phi3: qkv_proj rows [q | k | v]
    const std::string w = p + "self_attn.qkv_proj.weight";
    linear(in, Act::kQ, w, "", 0, qd, H, true);
    linear(in, Act::kK, w, "", qd, kvd, H, true);
    linear(in, Act::kV, w, "", qd + kvd, kvd, H, true);
  } else {
    auto bias = [&](const char* proj) { return cfg.qkv_bias ? p + "self_attn." + proj + ".bias" : std::string(); };
    linear(in, Act::kQ, p + "self_attn.q_proj.weight", bias("q_proj"), 0, qd, H, true);
    linear(in, Act::kK, p + "self_attn.k_proj.weight", bias("k_proj"), 0, kvd, H, true);
    linear(in, Act::kV, p + "self_attn.v_proj.weight", bias("v_proj"), 0, kvd, H, true);
  }
  // q/k norms: over all heads before the split (olmo2), or per head over head_dim (qwen3, gemma3).
  if (cfg.qk_norm == QkNorm::kAllHeads) {
    norm(Act::kQ, Act::kQ, p + "self_attn.q_norm.weight", 1, qd);
    norm(Act::kK, Act::kK, p + "self_attn.k_norm.weight", 1, kvd);
  } else if (cfg.qk_norm == QkNorm::kPerHead) {
    norm(Act::kQ, Act::kQ, p + "self_attn.q_norm.weight", cfg.heads, d);
    norm(Act::kK, Act::kK, p + "self_attn.k_norm.weight", cfg.kv_heads, d);
  }
  simple(Op::kRope);
  simple(Op::kAttention);
  linear(Act::kA, Act::kH, p + "self_attn.o_proj.weight", "", 0, H, qd, false);
  if (cfg.layout != Layout::kPreNorm) {  // the attention output normed, then added (olmo2, gemma2/3)
    module("post_attention_layernorm");
    norm(Act::kH, Act::kH, p + "post_attention_layernorm.weight", 1, H);
  }
  simple(Op::kResidual);

  // MLP: pre-norm by post_attention_layernorm (llama) or pre_feedforward_layernorm (gemma2/3).
  if (cfg.layout == Layout::kPreNorm) {
    module("post_attention_layernorm");
    norm(Act::kX, Act::kH, p + "post_attention_layernorm.weight", 1, H);
  }
  if (cfg.layout == Layout::kSandwich) {
    module("pre_feedforward_layernorm");
    norm(Act::kX, Act::kH, p + "pre_feedforward_layernorm.weight", 1, H);
  }
  module("mlp");
  if (cfg.is_sparse(l)) {
    Step st;
    st.op = Op::kMoe;
    st.src = in;
    st.dst = Act::kH;
    st.prefix = p;
    s.push_back(st);
  } else {
    if (cfg.fused) {  // phi3: gate_up_proj rows [gate | up]
      const std::string w = p + "mlp.gate_up_proj.weight";
      linear(in, Act::kG, w, "", 0, I, H, true);
      linear(in, Act::kU, w, "", I, I, H, true);
    } else {
      linear(in, Act::kG, p + "mlp.gate_proj.weight", "", 0, I, H, true);
      linear(in, Act::kU, p + "mlp.up_proj.weight", "", 0, I, H, true);
    }
    simple(Op::kGatedAct);
    linear(Act::kG, Act::kH, p + "mlp.down_proj.weight", "", 0, H, I, false);
  }
  if (cfg.layout != Layout::kPreNorm) {
    module("post_feedforward_layernorm");
    norm(Act::kH, Act::kH, p + "post_feedforward_layernorm.weight", 1, H);
  }
  simple(Op::kResidual);
  return s;
}

bool has_moe(const ExecConfig& cfg) {
  for (int64_t l = 0; l < cfg.layers; ++l)
    if (cfg.is_sparse(l)) return true;
  return false;
}

void rope_tables(const ExecConfig& cfg, const std::vector<float>& inv, DType act, int64_t T, int64_t start,
                 std::vector<float>& cos, std::vector<float>& sin) {
  const int64_t half = cfg.rotary() / 2;
  const float factor = static_cast<float>(cfg.rope_attention);
  cos.resize(static_cast<size_t>(T * half));
  sin.resize(static_cast<size_t>(T * half));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const float ang = static_cast<float>(start + t) * inv[static_cast<size_t>(i)];
      const float c = std::cos(ang) * factor, n = std::sin(ang) * factor;
      cos[static_cast<size_t>(t * half + i)] = cfg.rope_fp32 ? c : cpu::round_to(act, c);
      sin[static_cast<size_t>(t * half + i)] = cfg.rope_fp32 ? n : cpu::round_to(act, n);
    }
}

std::vector<float> rope_frequencies(const ExecConfig& cfg, int64_t context, bool local) {
  if (local) return rope_inv_freq(cfg, true);
  const bool long_rope = !cfg.longrope_long.empty() && static_cast<double>(context) > cfg.rope_orig_max;
  return rope_inv_freq(cfg, false, long_rope);
}

}  // namespace dmap::exec
