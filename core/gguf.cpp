// GGUF tensor types and llama-quantize's per-tensor choice (see gguf.h for the sources).
#include "core/gguf.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"

namespace dmap {

namespace {

struct FileTypeName {
  GgufFileType type;
  const char* name;
  GgmlType default_type;
};
const std::vector<FileTypeName>& file_types() {
  static const std::vector<FileTypeName> k = {{GgufFileType::kF32, "F32", GgmlType::kF32},
                                              {GgufFileType::kF16, "F16", GgmlType::kF16},
                                              {GgufFileType::kBF16, "BF16", GgmlType::kBF16},
                                              {GgufFileType::kQ4_0, "Q4_0", GgmlType::kQ4_0},
                                              {GgufFileType::kQ4_1, "Q4_1", GgmlType::kQ4_1},
                                              {GgufFileType::kQ5_0, "Q5_0", GgmlType::kQ5_0},
                                              {GgufFileType::kQ5_1, "Q5_1", GgmlType::kQ5_1},
                                              {GgufFileType::kQ8_0, "Q8_0", GgmlType::kQ8_0},
                                              {GgufFileType::kQ2_K, "Q2_K", GgmlType::kQ2_K},
                                              {GgufFileType::kQ3_K_S, "Q3_K_S", GgmlType::kQ3_K},
                                              {GgufFileType::kQ3_K_M, "Q3_K_M", GgmlType::kQ3_K},
                                              {GgufFileType::kQ3_K_L, "Q3_K_L", GgmlType::kQ3_K},
                                              {GgufFileType::kQ4_K_S, "Q4_K_S", GgmlType::kQ4_K},
                                              {GgufFileType::kQ4_K_M, "Q4_K_M", GgmlType::kQ4_K},
                                              {GgufFileType::kQ5_K_S, "Q5_K_S", GgmlType::kQ5_K},
                                              {GgufFileType::kQ5_K_M, "Q5_K_M", GgmlType::kQ5_K},
                                              {GgufFileType::kQ6_K, "Q6_K", GgmlType::kQ6_K},
                                              {GgufFileType::kIQ4_XS, "IQ4_XS", GgmlType::kIQ4_XS},
                                              {GgufFileType::kMXFP4_MOE, "MXFP4_MOE", GgmlType::kMXFP4}};
  return k;
}

const FileTypeName& file_type(GgufFileType t) {
  for (const auto& f : file_types()) {
    if (f.type == t) return f;
  }
  DMAP_CHECK(false, "unknown GGUF file type");
  return file_types()[0];
}

bool is_quantized(GgmlType t) { return t != GgmlType::kF32 && t != GgmlType::kF16 && t != GgmlType::kBF16; }

// llama-quant.cpp's tensor categories.
enum class Category { kOutput, kTokenEmbd, kAttnV, kAttnK, kAttnQ, kAttnOutput, kFfnUp, kFfnGate, kFfnDown, kOther };

// What a tensor of the HF tree is in the GGUF file.
struct TensorInfo {
  bool stored = true;  // in the file at all (non-persistent buffers are not)
  bool quantizable = false;
  Category category = Category::kOther;
  int64_t ne0 = 0;  // row length (input features)
  int layer = -1;
};

bool has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

int layer_of(const std::string& name) {
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string::npos) end = name.size();
    const std::string part = name.substr(start, end - start);
    if (!part.empty() && std::all_of(part.begin(), part.end(), [](unsigned char c) { return std::isdigit(c); })) {
      return std::stoi(part);
    }
    start = end + 1;
  }
  return -1;
}

TensorInfo tensor_info(const ModuleTree& t, int id) {
  const TreeNode& n = t.node(id);
  TensorInfo info;
  if (n.is_buffer && !n.persistent) {
    info.stored = false;
    return info;
  }
  const TreeNode& m = t.node(n.parent);
  const std::string& mod = m.local;
  const std::string parent = m.parent >= 0 ? t.node(m.parent).local : "";
  info.layer = layer_of(n.name);
  const bool weight_name =
      n.local == "weight" || ((n.local == "gate_up_proj" || n.local == "down_proj") && n.shape.size() == 3);
  // tensor_allows_quantization: 2-D and 3-D tensors whose GGUF name ends in "weight", not norms,
  // not the router (ffn_gate_inp), not position embeddings.
  // (A MoE block's `gate` is its router: ffn_gate_inp; qwen2_moe's shared_expert_gate too.)
  info.quantizable = weight_name && n.shape.size() >= 2 && !has(m.class_name, "Norm") && !has(m.class_name, "Router") &&
                     !(mod == "gate" && t.dims.num_experts > 0) && mod != "shared_expert_gate" && mod != "wpe" &&
                     mod != "embed_positions" && mod != "router";
  if (!info.quantizable) return info;
  const bool conv1d = m.class_name == "Conv1D";
  if (n.shape.size() == 3) {  // routed experts: [E, out, in], or [E, in, out] transposed
    info.ne0 = t.dims.experts_transposed ? n.shape[1] : n.shape[2];
    info.category = n.local == "down_proj" ? Category::kFfnDown : Category::kFfnUp;
    return info;
  }
  info.ne0 = conv1d ? n.shape[0] : n.shape[1];
  if (mod == "lm_head" || mod == "embed_out" || mod == "output_layer")
    info.category = Category::kOutput;
  else if (has(m.class_name, "Embedding"))
    info.category = Category::kTokenEmbd;
  else if (mod == "v_proj")
    info.category = Category::kAttnV;
  else if (mod == "qkv_proj" || mod == "c_attn" || mod == "query_key_value" || mod == "kv_b_proj")
    info.category = Category::kAttnV;
  else if (mod == "k_proj")
    info.category = Category::kAttnK;
  else if (mod == "q_proj")
    info.category = Category::kAttnQ;
  else if (mod == "o_proj" || mod == "out_proj" || mod == "dense" || (mod == "c_proj" && parent == "attn"))
    info.category = Category::kAttnOutput;
  else if (mod == "gate_proj" || mod == "w1")
    info.category = Category::kFfnGate;
  else if (mod == "up_proj" || mod == "c_fc" || mod == "fc_in" || mod == "fc1" || mod == "dense_h_to_4h" ||
           mod == "gate_up_proj")
    info.category = Category::kFfnUp;
  else if (mod == "down_proj" || mod == "c_proj" || mod == "fc_out" || mod == "fc2" || mod == "dense_4h_to_h")
    info.category = Category::kFfnDown;
  return info;
}

bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

GgmlType fallback(GgmlType type, int64_t ne0) {
  if (ne0 % ggml_traits(type).block == 0) return type;
  GgmlType r = type;
  switch (type) {
    case GgmlType::kIQ4_XS: r = GgmlType::kIQ4_NL; break;
    case GgmlType::kQ2_K:
    case GgmlType::kQ3_K: r = GgmlType::kQ4_0; break;
    case GgmlType::kQ4_K: r = GgmlType::kQ5_0; break;
    case GgmlType::kQ5_K: r = GgmlType::kQ5_1; break;
    case GgmlType::kQ6_K: r = GgmlType::kQ8_0; break;
    default:
      r = GgmlType::kF16;
      break;  // block-32 types have no fallback: llama-quantize refuses; F16 is what it would need
  }
  if (ne0 % ggml_traits(r).block != 0) r = GgmlType::kF16;
  return r;
}

}  // namespace

const GgmlTypeTraits& ggml_traits(GgmlType t) {
  static const GgmlTypeTraits k[] = {{"f32", 1, 4},      {"f16", 1, 2},      {"bf16", 1, 2},       {"q4_0", 32, 18},
                                     {"q4_1", 32, 20},   {"q5_0", 32, 22},   {"q5_1", 32, 24},     {"q8_0", 32, 34},
                                     {"q2_K", 256, 84},  {"q3_K", 256, 110}, {"q4_K", 256, 144},   {"q5_K", 256, 176},
                                     {"q6_K", 256, 210}, {"iq4_nl", 32, 18}, {"iq4_xs", 256, 136}, {"mxfp4", 32, 17}};
  return k[static_cast<int>(t)];
}

std::optional<GgufFileType> parse_gguf_file_type(const std::string& name) {
  std::string up = name;
  std::transform(up.begin(), up.end(), up.begin(), [](unsigned char c) { return std::toupper(c); });
  for (const auto& f : file_types()) {
    if (up == f.name) return f.type;
  }
  return std::nullopt;
}

std::string gguf_file_type_name(GgufFileType t) { return file_type(t).name; }

const std::vector<std::string>& gguf_file_type_names() {
  static const std::vector<std::string> k = [] {
    std::vector<std::string> v;
    for (const auto& f : file_types()) v.push_back(f.name);
    return v;
  }();
  return k;
}

ModuleTree gguf_module_tree(const ModuleTree& src, GgufFileType ft) {
  if (src.quantization) {
    throw InputError("a GGUF file type with a transformers quantization_config (" + quant_summary(*src.quantization) +
                     "): llama.cpp files are quantized by llama-quantize; give one or the other");
  }
  ModuleTree t = src;
  t.gguf_file_type = gguf_file_type_name(ft);
  const GgmlType def = file_type(ft).default_type;
  const ModelDims& d = t.dims;
  const int n_layer = static_cast<int>(d.num_layers);
  const int64_t gqa = d.num_kv_heads > 0 ? d.num_attention_heads / d.num_kv_heads : 1;
  const bool e8 = d.num_experts == 8;
  const bool t70 = n_layer == 80 &&
                   ((t.model_type == "llama" && d.num_attention_heads != d.num_kv_heads) || t.model_type == "qwen2");
  // No output.weight in the file when the head is tied: the token embedding gets its treatment.
  const int head = [&] {
    for (const char* h : {"lm_head.weight", "embed_out.weight", "transformer.output_layer.weight"}) {
      if (int id = t.find(h); id >= 0) return id;
    }
    return -1;
  }();
  const bool tied = head < 0 || t.node(head).tied_source >= 0;
  int n_attention_wv = 0;
  std::vector<TensorInfo> infos(t.size());
  for (int id = 0; id < t.size(); ++id) {
    if (!t.node(id).is_tensor) continue;
    infos[id] = tensor_info(t, id);
    if (infos[id].quantizable && infos[id].category == Category::kAttnV) ++n_attention_wv;
  }
  for (int id = 0; id < t.size(); ++id) {
    TreeNode& n = t.mutable_node(id);
    if (!n.is_tensor) continue;
    const TensorInfo& info = infos[id];
    if (n.tied_source >= 0 || !info.stored) {  // a tie target is the same tensor; buffers are not stored
      n.stored_bits = 0;
      continue;
    }
    GgmlType type = GgmlType::kF32;  // convert_hf_to_gguf writes 1-D tensors, norms and the router as F32
    if (info.quantizable) {
      type = def;
      if (is_quantized(def)) {
        const int i = info.layer;
        const bool output = info.category == Category::kOutput || (tied && info.category == Category::kTokenEmbd);
        if (output) {
          if (ft == GgufFileType::kMXFP4_MOE || info.ne0 % ggml_traits(def).block != 0)
            type = GgmlType::kQ8_0;
          else if (def != GgmlType::kQ8_0)
            type = GgmlType::kQ6_K;
        } else if (ft == GgufFileType::kMXFP4_MOE) {
          type = n.shape.size() == 3 ? GgmlType::kMXFP4 : GgmlType::kQ8_0;
        } else {
          switch (info.category) {
            case Category::kAttnV: {
              if (ft == GgufFileType::kQ2_K)
                type = gqa >= 4 ? GgmlType::kQ4_K : GgmlType::kQ3_K;
              else if (ft == GgufFileType::kQ3_K_M)
                type = i < 2 ? GgmlType::kQ5_K : GgmlType::kQ4_K;
              else if (ft == GgufFileType::kQ3_K_L)
                type = GgmlType::kQ5_K;
              else if (ft == GgufFileType::kIQ4_XS && gqa >= 4)
                type = GgmlType::kQ5_K;
              else if ((ft == GgufFileType::kQ4_K_M || ft == GgufFileType::kQ5_K_M) && use_more_bits(i, n_attention_wv))
                type = GgmlType::kQ6_K;
              else if (ft == GgufFileType::kQ4_K_S && i < 4)
                type = GgmlType::kQ5_K;
              if (t70 && (type == GgmlType::kQ3_K || type == GgmlType::kQ4_K)) type = GgmlType::kQ5_K;
              if (e8) type = GgmlType::kQ8_0;
              break;
            }
            case Category::kAttnK:
              if (e8) type = GgmlType::kQ8_0;
              break;
            case Category::kFfnDown:
              if (ft == GgufFileType::kQ2_K)
                type = GgmlType::kQ3_K;
              else if (ft == GgufFileType::kQ3_K_M)
                type = i < n_layer / 16 ? GgmlType::kQ5_K : GgmlType::kQ4_K;
              else if (ft == GgufFileType::kQ3_K_L)
                type = GgmlType::kQ5_K;
              else if (ft == GgufFileType::kQ4_K_M) {
                if (use_more_bits(i, n_layer)) type = GgmlType::kQ6_K;
              } else if (ft == GgufFileType::kIQ4_XS && i < n_layer / 8)
                type = GgmlType::kQ5_K;  // no imatrix
              else if (ft == GgufFileType::kQ5_K_M && use_more_bits(i, n_layer))
                type = GgmlType::kQ6_K;
              else if (ft == GgufFileType::kQ4_K_S && i < n_layer / 8)
                type = GgmlType::kQ5_K;
              break;
            case Category::kAttnOutput:
              if (e8) {
                if (ft == GgufFileType::kQ2_K || ft == GgufFileType::kQ3_K_S || ft == GgufFileType::kQ3_K_M ||
                    ft == GgufFileType::kQ4_K_S || ft == GgufFileType::kQ4_K_M || ft == GgufFileType::kIQ4_XS) {
                  type = GgmlType::kQ5_K;
                }
              } else if (ft == GgufFileType::kQ2_K)
                type = GgmlType::kQ3_K;
              else if (ft == GgufFileType::kQ3_K_M)
                type = GgmlType::kQ4_K;
              else if (ft == GgufFileType::kQ3_K_L)
                type = GgmlType::kQ5_K;
              break;
            default: break;
          }
        }
        type = fallback(type, info.ne0);
      }
    }
    const GgmlTypeTraits& tr = ggml_traits(type);
    n.gguf_type = static_cast<int>(type);
    n.stored_bits = n.numel / tr.block * tr.bytes * 8 + (n.numel % tr.block ? tr.bytes * 8 : 0);
  }
  return t;
}

std::vector<GgufTypeCount> gguf_type_counts(const ModuleTree& t) {
  std::vector<GgufTypeCount> out;
  for (const TreeNode& n : t.nodes()) {
    if (!n.is_tensor || n.gguf_type < 0) continue;
    const GgmlType type = static_cast<GgmlType>(n.gguf_type);
    auto it = std::find_if(out.begin(), out.end(), [&](const GgufTypeCount& c) { return c.type == type; });
    if (it == out.end()) {
      out.push_back({type, 0, 0});
      it = out.end() - 1;
    }
    // A fused 3-D gate_up_proj is two tensors in the file (ffn_gate_exps, ffn_up_exps).
    it->tensors += n.local == "gate_up_proj" && n.shape.size() == 3 ? 2 : 1;
    it->bytes += n.stored_bits / 8;
  }
  std::sort(out.begin(), out.end(), [](const GgufTypeCount& a, const GgufTypeCount& b) { return a.type < b.type; });
  return out;
}

}  // namespace dmap
