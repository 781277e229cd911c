#include "exec/gguf_export.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/gguf_reader.h"
#include "core/gguf_writer.h"
#include "exec/cpu/kernels.h"

namespace dmap::exec {
namespace {

bool supported(const ExecConfig& cfg) {
  const bool qk_ok = cfg.family == "qwen3" ? cfg.qk_norm == ExecConfig::QkNorm::kPerHead
                                           : cfg.qk_norm == ExecConfig::QkNorm::kNone;
  return (cfg.family == "llama" || cfg.family == "mistral" || cfg.family == "qwen2" || cfg.family == "qwen3") &&
         !cfg.gemma && cfg.layout == ExecConfig::Layout::kPreNorm && qk_ok && !cfg.fused && cfg.sparse.empty() &&
         cfg.longrope_short.empty();
}

uint32_t file_type_id(GgufFileType t) {  // llama.h llama_ftype
  switch (t) {
    case GgufFileType::kF32: return 0;
    case GgufFileType::kF16: return 1;
    case GgufFileType::kQ8_0: return 7;
    case GgufFileType::kBF16: return 32;
    default: break;
  }
  throw InputError("export gguf: type " + gguf_file_type_name(t) +
                   " is not one dmap writes (f32, f16, bf16, q8_0); quantize an f16 export with llama-quantize");
}

// Rows of q_proj / k_proj back to llama.cpp's RoPE layout (LlamaModel.permute): rows grouped
// per head as [2][head_dim / 2] become [head_dim / 2][2].
std::vector<float> permute_rows(const std::vector<float>& w, int64_t rows, int64_t cols, int64_t heads) {
  const int64_t half = rows / heads / 2;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t two = 0; two < 2; ++two) {
      for (int64_t i = 0; i < half; ++i) {
        const int64_t src = (h * 2 + two) * half + i;
        const int64_t dst = (h * half + i) * 2 + two;
        std::memcpy(&out[static_cast<size_t>(dst * cols)], &w[static_cast<size_t>(src * cols)],
                    static_cast<size_t>(cols) * sizeof(float));
      }
    }
  }
  return out;
}

std::vector<uint8_t> encode(const std::vector<float>& x, GgmlType t) {
  std::vector<uint8_t> out;
  switch (t) {
    case GgmlType::kF32:
      out.resize(x.size() * 4);
      std::memcpy(out.data(), x.data(), out.size());
      return out;
    case GgmlType::kF16:
    case GgmlType::kBF16: {
      out.resize(x.size() * 2);
      for (size_t i = 0; i < x.size(); ++i) {
        const uint16_t v = t == GgmlType::kF16 ? cpu::f32_to_f16(x[i]) : cpu::f32_to_bf16(x[i]);
        std::memcpy(&out[i * 2], &v, 2);
      }
      return out;
    }
    case GgmlType::kQ8_0: return quantize_q8_0(x.data(), static_cast<int64_t>(x.size()));
    default: break;
  }
  throw InternalError("gguf export: no encoder for " + std::string(ggml_traits(t).name));
}

}  // namespace

std::string gguf_arch(const ExecConfig& cfg) {
  if (!supported(cfg)) {
    throw InputError(cfg.source, 0, 0,
                     "export gguf: the " + cfg.family +
                         " family is not one dmap writes as GGUF yet (llama, mistral, qwen2 and qwen3 are)");
  }
  if (cfg.family == "qwen2" || cfg.family == "qwen3") return cfg.family;
  return "llama";
}

std::string gguf_tensor_name(const ExecConfig& cfg, const std::string& hf) {
  if (hf == "lm_head.weight" && cfg.tie) return "";
  const std::string name = gguf_name_of(cfg.family, hf);
  if (name.empty()) throw InputError(cfg.source, 0, 0, "export gguf: no GGUF name for tensor " + hf);
  return name;
}

std::vector<uint8_t> quantize_q8_0(const float* x, int64_t n) {
  std::vector<uint8_t> out(static_cast<size_t>(n / 32 * 34));
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* v = x + b * 32;
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127.0f;
    uint8_t* o = &out[static_cast<size_t>(b * 34)];
    const uint16_t dh = cpu::f32_to_f16(d);
    std::memcpy(o, &dh, 2);
    for (int j = 0; j < 32; ++j) {
      const float q = d == 0 ? 0.0f : std::round(v[j] / d);  // std::round: half away from zero, as np_roundf
      o[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(q));
    }
  }
  return out;
}

size_t export_gguf(const ExecConfig& cfg, const ModelWeights& w, GgufFileType type, const std::string& name,
                   const std::string& path) {
  const std::string arch = gguf_arch(cfg);
  const uint32_t ftype = file_type_id(type);
  GgufWriter g;
  g.add_string("general.architecture", arch);
  g.add_string("general.name", name);
  g.add_u32("general.file_type", ftype);
  if (type == GgufFileType::kQ8_0) g.add_u32("general.quantization_version", 2);
  const std::string a = arch + ".";
  g.add_u32(a + "block_count", static_cast<uint32_t>(cfg.layers));
  g.add_u32(a + "context_length", static_cast<uint32_t>(cfg.max_pos));
  g.add_u32(a + "embedding_length", static_cast<uint32_t>(cfg.hidden));
  g.add_u32(a + "feed_forward_length", static_cast<uint32_t>(cfg.inter));
  g.add_u32(a + "attention.head_count", static_cast<uint32_t>(cfg.heads));
  g.add_u32(a + "attention.head_count_kv", static_cast<uint32_t>(cfg.kv_heads));
  g.add_f32(a + "rope.freq_base", static_cast<float>(cfg.rope_theta));
  g.add_f32(a + "attention.layer_norm_rms_epsilon", static_cast<float>(cfg.eps));
  g.add_u32(a + "attention.key_length", static_cast<uint32_t>(cfg.head_dim));
  g.add_u32(a + "attention.value_length", static_cast<uint32_t>(cfg.head_dim));
  g.add_u32(a + "rope.dimension_count", static_cast<uint32_t>(cfg.head_dim));
  g.add_u32(a + "vocab_size", static_cast<uint32_t>(cfg.vocab));
  g.add_string("tokenizer.ggml.model", "none");
  // llama3 RoPE scaling: no metadata, a rope_freqs tensor of per-frequency divisors, written
  // first (LlamaModel.generate_extra_tensors, in float32 as torch computes it there).
  if (cfg.llama3_rope) {
    std::vector<float> factors;
    const float dim = static_cast<float>(cfg.head_dim);
    const float old_ctx = static_cast<float>(cfg.rope_orig_max);
    const float lo = static_cast<float>(cfg.rope_low), hi = static_cast<float>(cfg.rope_high);
    const float factor = static_cast<float>(cfg.rope_factor);
    for (int64_t i = 0; i < cfg.head_dim; i += 2) {
      const float freq = 1.0f / std::pow(static_cast<float>(cfg.rope_theta), static_cast<float>(i) / dim);
      const float wavelen = static_cast<float>(2 * M_PI) / freq;
      if (wavelen < old_ctx / hi) {
        factors.push_back(1.0f);
      } else if (wavelen > old_ctx / lo) {
        factors.push_back(factor);
      } else {
        const float smooth = (old_ctx / wavelen - lo) / (hi - lo);
        factors.push_back(1.0f / ((1 - smooth) / factor + smooth));
      }
    }
    g.add_tensor("rope_freqs.weight", GgmlType::kF32, {static_cast<int64_t>(factors.size())},
                 [factors] { return encode(factors, GgmlType::kF32); });
  }

  const GgmlType wide = type == GgufFileType::kF32    ? GgmlType::kF32
                        : type == GgufFileType::kBF16 ? GgmlType::kBF16
                        : type == GgufFileType::kQ8_0 ? GgmlType::kQ8_0
                                                      : GgmlType::kF16;
  const bool permute = arch == "llama";
  for (const auto& [hf, shape] : ModelWeights::expected(cfg)) {
    const std::string gname = gguf_tensor_name(cfg, hf);
    if (gname.empty() || !w.has(hf)) continue;
    const WeightRef& ref = w.get(hf);
    const bool one_d = shape.size() <= 1;
    GgmlType t = one_d ? GgmlType::kF32 : wide;
    if (t == GgmlType::kQ8_0 && ref.w.cols % 32 != 0) t = GgmlType::kF16;  // the converter's fallback
    std::vector<int64_t> dims = one_d ? std::vector<int64_t>{ref.w.rows * ref.w.cols}
                                      : std::vector<int64_t>{ref.w.cols, ref.w.rows};
    int64_t heads = 0;
    if (permute && gname.find(".attn_q.") != std::string::npos) heads = cfg.heads;
    if (permute && gname.find(".attn_k.") != std::string::npos) heads = cfg.kv_heads;
    g.add_tensor(gname, t, dims, [ref, t, heads] {
      if (ref.on_disk) throw InternalError("export gguf: " + ref.name + " is offloaded to disk");
      const int64_t n = ref.w.rows * ref.w.cols;
      std::vector<float> x(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = cpu::load(ref.w.type, ref.w.data, i);
      // A bias is one row of `rows` values; permute it as a [rows, 1] matrix.
      if (heads > 0) {
        x = ref.w.rows == 1 ? permute_rows(x, ref.w.cols, 1, heads) : permute_rows(x, ref.w.rows, ref.w.cols, heads);
      }
      return encode(x, t);
    });
  }
  g.write(path);
  return g.tensor_count();
}

}  // namespace dmap::exec
