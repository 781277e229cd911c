// GGUF tensor types and llama-quantize's per-tensor choice (see gguf.h for the sources).
#include "core/gguf.h"

#include <algorithm>
#include <cctype>
#include <map>

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

bool is_quantized(GgmlType t) {
  return t != GgmlType::kF32 && t != GgmlType::kF16 && t != GgmlType::kBF16 && t < GgmlType::kI8;
}

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

namespace {

// In GgmlType order: name, id (ggml.h), elements per block and bytes per block (ggml-common.h's
// block structs, as their static_asserts size them).
struct TypeRow {
  GgmlTypeTraits traits;
  uint32_t id;
};
const TypeRow* type_rows() {
  static const TypeRow k[] = {
      {{"f32", 1, 4}, 0},         {{"f16", 1, 2}, 1},          {{"bf16", 1, 2}, 30},        {{"q4_0", 32, 18}, 2},
      {{"q4_1", 32, 20}, 3},      {{"q5_0", 32, 22}, 6},       {{"q5_1", 32, 24}, 7},       {{"q8_0", 32, 34}, 8},
      {{"q2_K", 256, 84}, 10},    {{"q3_K", 256, 110}, 11},    {{"q4_K", 256, 144}, 12},    {{"q5_K", 256, 176}, 13},
      {{"q6_K", 256, 210}, 14},   {{"iq4_nl", 32, 18}, 20},    {{"iq4_xs", 256, 136}, 23},  {{"mxfp4", 32, 17}, 39},
      {{"q8_1", 32, 36}, 9},      {{"q8_K", 256, 292}, 15},    {{"iq2_xxs", 256, 66}, 16},  {{"iq2_xs", 256, 74}, 17},
      {{"iq3_xxs", 256, 98}, 18}, {{"iq1_s", 256, 50}, 19},    {{"iq3_s", 256, 110}, 21},   {{"iq2_s", 256, 82}, 22},
      {{"iq1_m", 256, 56}, 29},   {{"tq1_0", 256, 54}, 34},    {{"tq2_0", 256, 66}, 35},    {{"nvfp4", 64, 36}, 40},
      {{"q1_0", 128, 18}, 41},    {{"q2_0", 64, 18}, 42},      {{"i8", 1, 1}, 24},          {{"i16", 1, 2}, 25},
      {{"i32", 1, 4}, 26},        {{"i64", 1, 8}, 27},         {{"f64", 1, 8}, 28}};
  static_assert(sizeof(k) / sizeof(k[0]) == static_cast<size_t>(GgmlType::kF64) + 1, "a row per GgmlType");
  return k;
}

}  // namespace

const GgmlTypeTraits& ggml_traits(GgmlType t) { return type_rows()[static_cast<int>(t)].traits; }

uint32_t ggml_type_id(GgmlType t) { return type_rows()[static_cast<int>(t)].id; }

std::optional<GgmlType> ggml_type_from_id(uint32_t id) {
  for (int i = 0; i <= static_cast<int>(GgmlType::kF64); ++i) {
    if (type_rows()[i].id == id) return static_cast<GgmlType>(i);
  }
  return std::nullopt;
}

std::string llama_ftype_name(uint32_t ftype) {
  static const std::map<uint32_t, const char*> k = {
      {0, "F32"},       {1, "F16"},      {2, "Q4_0"},     {3, "Q4_1"},     {7, "Q8_0"},      {8, "Q5_0"},
      {9, "Q5_1"},      {10, "Q2_K"},    {11, "Q3_K_S"},  {12, "Q3_K_M"},  {13, "Q3_K_L"},   {14, "Q4_K_S"},
      {15, "Q4_K_M"},   {16, "Q5_K_S"},  {17, "Q5_K_M"},  {18, "Q6_K"},    {19, "IQ2_XXS"},  {20, "IQ2_XS"},
      {21, "Q2_K_S"},   {22, "IQ3_XS"},  {23, "IQ3_XXS"}, {24, "IQ1_S"},   {25, "IQ4_NL"},   {26, "IQ3_S"},
      {27, "IQ3_M"},    {28, "IQ2_S"},   {29, "IQ2_M"},   {30, "IQ4_XS"},  {31, "IQ1_M"},    {32, "BF16"},
      {36, "TQ1_0"},    {37, "TQ2_0"},   {38, "MXFP4_MOE"}, {39, "NVFP4"}, {40, "Q1_0"},     {41, "Q2_0"}};
  auto it = k.find(ftype);
  return it == k.end() ? "" : it->second;
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
