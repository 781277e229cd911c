// The quantizers' module replacement on the meta model (see quantize.h for the per-method table).
#include "core/quantize.h"

#include <algorithm>
#include <functional>
#include <regex>
#include <unordered_map>

#include "core/error.h"

namespace dmap {

void check_pattern(const std::string& key, const std::string& origin);

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Pre-order walk of the parameters (named_parameters() order).
void collect_params(const ModuleTree& t, int module, std::vector<int>& out) {
  const TreeNode& m = t.node(module);
  for (int p : m.params) out.push_back(p);
  for (int c : m.children) collect_params(t, c, out);
}

// The module get_output_embeddings() returns: lm_head, GPT-NeoX's embed_out, ChatGLM's output_layer.
int output_embeddings(const ModuleTree& t) {
  for (const char* name : {"lm_head", "embed_out", "transformer.output_layer"}) {
    const int id = t.find(name);
    if (id >= 0 && !t.node(id).is_tensor) return id;
  }
  return -1;
}

// A tensor the replacement module registers.
struct NewTensor {
  std::string local;
  std::vector<int64_t> shape;
  bool buffer = false;
  bool persistent = true;
  bool follows_model_dtype = false;  // created without a dtype: the load dtype
  DType dtype = DType::kFloat32;
  int sized_bits = 0;
  Bits extra_bits = 0;
};

struct Replacement {
  std::string class_name;
  std::vector<NewTensor> tensors;
  std::vector<std::pair<std::string, std::string>> children;  // kept child modules: (local, class)
  TreeNode::Quantized info;
};

NewTensor param(std::string local, std::vector<int64_t> shape, DType d) {
  NewTensor t;
  t.local = std::move(local);
  t.shape = std::move(shape);
  t.dtype = d;
  return t;
}
NewTensor model_dtype_param(std::string local, std::vector<int64_t> shape) {
  NewTensor t = param(std::move(local), std::move(shape), DType::kFloat32);
  t.follows_model_dtype = true;
  return t;
}
int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// FP8 quantized while loading: param_element_size counts every non-bias tensor of the module at
// one byte, scales included; the scales really hold their dtype.
void count_as_one_byte(NewTensor& t) {
  t.sized_bits = 8;
  t.extra_bits = numel_of(t.shape) * (static_cast<Bits>(torch_bits_per_element(t.dtype)) - 8);
}

NewTensor buffer(std::string local, std::vector<int64_t> shape, DType d, bool persistent = true) {
  NewTensor t = param(std::move(local), std::move(shape), d);
  t.buffer = true;
  t.persistent = persistent;
  return t;
}

int direct_tensor(const ModuleTree& t, int module, const char* local) {
  for (const auto* list : {&t.node(module).params, &t.node(module).buffers}) {
    for (int p : *list) {
      if (t.node(p).local == local) return p;
    }
  }
  return -1;
}

bool is_linear(const TreeNode& n) { return n.class_name == "Linear"; }
bool is_conv1d(const TreeNode& n) { return n.class_name == "Conv1D"; }

// A linear layer's (in, out, bias) from its tensors.
struct LinearShape {
  int64_t in = 0, out = 0;
  bool bias = false;
};
LinearShape linear_shape(const ModuleTree& t, int module) {
  const int w = direct_tensor(t, module, "weight");
  DMAP_CHECK(w >= 0 && t.node(w).shape.size() == 2, "linear layer without a 2-D weight: " + t.node(module).name);
  const auto& s = t.node(w).shape;
  LinearShape l;
  // nn.Linear's weight is [out, in]; Conv1D's [in, out].
  l.in = is_conv1d(t.node(module)) ? s[0] : s[1];
  l.out = is_conv1d(t.node(module)) ? s[1] : s[0];
  l.bias = direct_tensor(t, module, "bias") >= 0;
  return l;
}

[[noreturn]] void config_error(const QuantizationConfig& q, const std::string& message) {
  throw InputError(q.file, q.line, 0, message);
}

// A replacement linear layer of `cls`, its logical shape and stored bits per weight set.
Replacement linear_replacement(const char* cls, const LinearShape& l, int weight_bits) {
  Replacement r;
  r.class_name = cls;
  r.info.in = l.in;
  r.info.out = l.out;
  r.info.weight_bits = weight_bits;
  return r;
}

// --- bitsandbytes -----------------------------------------------------------------------------

int itemsize_bits(DType d) { return static_cast<int>(torch_bits_per_element(d)); }

Replacement bnb_linear(const QuantizationConfig& q, const LinearShape& l) {
  const bool four = q.method == QuantMethod::kBnb4bit;
  Replacement r = linear_replacement(four ? "Linear4bit" : "Linear8bitLt", l, four ? 4 : 8);
  const int64_t n = l.in * l.out;
  NewTensor w = q.pre_quantized ? param("weight", {l.out, l.in}, four ? q.bnb_4bit_quant_storage : DType::kInt8)
                                : model_dtype_param("weight", {l.out, l.in});
  w.sized_bits = four ? 4 : 8;
  // What bitsandbytes really holds once loaded (quantize_4bit / Int8Params), minus the sizing.
  Bits real_bits = 0;
  if (four) {
    const int64_t s = itemsize_bits(q.bnb_4bit_quant_storage) / 8;
    const int64_t packed = (n + 1) / (2 * s) * s;  // [(n+1)//(2*itemsize), 1] of the storage dtype
    const int64_t blocks = ceil_div(n, 64);        // blocksize 64
    const int64_t code = 16 * 4;                   // the nf4/fp4 code: 16 fp32
    const int64_t state = q.bnb_4bit_use_double_quant
                              ? blocks /* uint8 absmax */ + 4 * ceil_div(blocks, 256) + 4 /* offset */ + 256 * 4
                              : 4 * blocks;  // fp32 absmax per block
    real_bits = (packed + state + code) * 8;
  } else {
    real_bits = q.llm_int8_has_fp16_weight ? 0 : (n + 4 * l.out) * 8;  // int8 rows + fp32 SCB per row
  }
  if (real_bits > 0) w.extra_bits = real_bits - n * w.sized_bits;
  if (!four && q.llm_int8_has_fp16_weight) w.extra_bits = 0;  // stays in the load dtype; the map counts 1 byte
  r.tensors.push_back(w);
  if (l.bias) r.tensors.push_back(model_dtype_param("bias", {l.out}));
  return r;
}

// --- GPTQ (gptqmodel's GPTQQuantLinear._register_gptq_buffers) ------------------------------------

Replacement gptq_linear(const QuantizationConfig& q, const LinearShape& l) {
  Replacement r = linear_replacement("QuantLinear", l, q.bits);
  const int64_t g = q.group_size == -1 ? l.in : q.group_size;
  const int64_t groups = ceil_div(l.in, g);
  r.tensors.push_back(buffer("qweight", {l.in / 32 * q.bits, l.out}, DType::kInt32));
  r.tensors.push_back(buffer("qzeros", {groups, l.out / 32 * q.bits}, DType::kInt32));
  r.tensors.push_back(buffer("scales", {groups, l.out}, DType::kFloat16));
  r.tensors.push_back(buffer("g_idx", {l.in}, DType::kInt32));
  if (l.bias) r.tensors.push_back(buffer("bias", {l.out}, DType::kFloat16));
  return r;
}

// --- AWQ (gptqmodel's AWQuantLinear, AwqGEMVLinear, AwqGEMVFastLinear) ----------------------------

int64_t zeros_width(const QuantizationConfig& q, int64_t in, int64_t g, const std::string& name) {
  int64_t mult = 0;
  if (g >= 128)
    mult = 1;
  else if (g == 64)
    mult = 2;
  else if (g == 32)
    mult = 4;
  else
    config_error(q, "AWQ " + q.awq_format + " packs groups of 32, 64 or >= 128 inputs, not " + std::to_string(g) +
                        " (" + name + ")");
  const int64_t base = ceil_div(in / g, 8);
  return ceil_div(base, mult) * mult;
}

Replacement awq_linear(const QuantizationConfig& q, const LinearShape& l, const std::string& name) {
  Replacement r = linear_replacement("AwqGEMMLinear", l, q.bits);
  const int64_t g = q.group_size == -1 ? l.in : q.group_size;
  const int64_t pf = 32 / q.bits;
  if (l.in % g != 0) {
    config_error(q, name + ": `in_features`: " + std::to_string(l.in) +
                        " must be divisible by `group_size: " + std::to_string(g) + "`.");
  }
  const std::string& f = q.awq_format;
  if (f == "gemm") {
    r.tensors.push_back(buffer("qweight", {l.in, l.out / pf}, DType::kInt32));
    r.tensors.push_back(buffer("qzeros", {l.in / g, l.out / pf}, DType::kInt32));
    r.tensors.push_back(buffer("scales", {l.in / g, l.out}, DType::kFloat16));
  } else if (f == "gemv") {
    r.class_name = "AwqGEMVLinear";
    if (g != 64 && g != 128)
      config_error(q, "AWQ gemv supports group sizes 64 and 128, got " + std::to_string(g) + " (" + name + ")");
    if (l.out % 64 != 0)
      config_error(q, name + ": `out_features`: " + std::to_string(l.out) + " must be divisible by [64] (AWQ gemv).");
    const int64_t zw = zeros_width(q, l.in, g, name);
    r.tensors.push_back(buffer("qweight", {l.out, l.in / pf}, DType::kInt32));
    r.tensors.push_back(buffer("qzeros", {l.out, zw}, DType::kInt32));
    r.tensors.push_back(buffer("scales", {l.out, zw * pf}, DType::kFloat16));
  } else {  // gemv_fast, llm-awq: int16 packing, interleave 4
    r.class_name = f == "gemv_fast" ? "AwqGEMVFastLinear" : "LLMAwqLinear";
    const int64_t zw = zeros_width(q, l.in, g, name);
    const int64_t pf16 = 16 / q.bits;
    r.tensors.push_back(buffer("qweight", {l.out / 4, l.in / pf16 * 4}, DType::kInt16));
    r.tensors.push_back(buffer(f == "gemv_fast" ? "qzeros" : "scaled_zeros", {zw * pf, l.out}, DType::kFloat16));
    r.tensors.push_back(buffer("scales", {zw * pf, l.out}, DType::kFloat16));
  }
  if (l.bias) r.tensors.push_back(buffer("bias", {l.out}, DType::kFloat16));
  return r;
}

// --- FP8 ---------------------------------------------------------------------------------------

Replacement fp8_linear(const QuantizationConfig& q, const LinearShape& l) {
  Replacement r = linear_replacement("FP8Linear", l, 8);
  NewTensor w =
      q.pre_quantized ? param("weight", {l.out, l.in}, DType::kFloat8) : model_dtype_param("weight", {l.out, l.in});
  if (!q.pre_quantized) w.sized_bits = 8;
  r.tensors.push_back(w);
  if (l.bias) r.tensors.push_back(model_dtype_param("bias", {l.out}));  // registered by nn.Linear's __init__
  const DType sf = q.scale_ue8m0 ? DType::kUInt8 : DType::kFloat32;
  NewTensor scale =
      q.weight_block_size
          ? param("weight_scale_inv",
                  {ceil_div(l.out, (*q.weight_block_size)[0]), ceil_div(l.in, (*q.weight_block_size)[1])}, sf)
          : param("weight_scale_inv", {}, DType::kFloat32);
  if (!q.pre_quantized) count_as_one_byte(scale);  // on-the-fly: every non-bias tensor counted at 1 byte
  r.tensors.push_back(scale);
  if (q.activation_scheme == "static") {
    NewTensor a = param("activation_scale", {}, DType::kFloat32);
    if (!q.pre_quantized) count_as_one_byte(a);
    r.tensors.push_back(a);
  }
  return r;
}

// The routed experts' E, hidden and intermediate from the tree's 3-D tensors.
TreeNode::Quantized experts_shape(const ModuleTree& t, int module) {
  const int gu = direct_tensor(t, module, "gate_up_proj");
  DMAP_CHECK(gu >= 0 && t.node(gu).shape.size() == 3,
             "experts module without a 3-D gate_up_proj: " + t.node(module).name);
  const auto& s = t.node(gu).shape;
  TreeNode::Quantized e;
  e.experts = s[0];
  if (t.dims.experts_transposed) {  // [E, hidden, 2I]
    e.hidden = s[1];
    e.inter = s[2] / 2;
  } else {  // [E, 2I, hidden]
    e.hidden = s[2];
    e.inter = s[1] / 2;
  }
  return e;
}

Replacement fp8_experts(const QuantizationConfig& q, const ModuleTree& t, int module) {
  Replacement r;
  r.class_name = "FP8Experts";
  r.info = experts_shape(t, module);
  const int64_t E = r.info.experts, H = r.info.hidden, I = r.info.inter;
  const DType sf = q.scale_ue8m0 ? DType::kUInt8 : DType::kFloat32;
  const auto scale_shape = [&](int64_t out, int64_t in, int64_t min_out) -> std::vector<int64_t> {
    const int64_t so = q.weight_block_size ? ceil_div(out, (*q.weight_block_size)[0]) : 1;
    const int64_t si = q.weight_block_size ? ceil_div(in, (*q.weight_block_size)[1]) : 1;
    return {E, std::max(so, min_out), si};
  };
  const auto weight = [&](const char* name, std::vector<int64_t> shape) {
    NewTensor w =
        q.pre_quantized ? param(name, std::move(shape), DType::kFloat8) : model_dtype_param(name, std::move(shape));
    if (!q.pre_quantized) w.sized_bits = 8;
    return w;
  };
  const auto scale = [&](std::string name, std::vector<int64_t> shape) {
    NewTensor s = param(std::move(name), std::move(shape), sf);
    if (!q.pre_quantized) count_as_one_byte(s);
    return s;
  };
  r.tensors.push_back(weight("gate_up_proj", {E, 2 * I, H}));
  r.tensors.push_back(scale("gate_up_proj_scale_inv", scale_shape(2 * I, H, 2)));
  r.tensors.push_back(weight("down_proj", {E, H, I}));
  r.tensors.push_back(scale("down_proj_scale_inv", scale_shape(H, I, 1)));
  if (q.activation_scheme == "static") {
    for (const char* name : {"gate_up_proj_activation_scale", "down_proj_activation_scale"}) {
      NewTensor a = param(name, {E}, DType::kFloat32);
      if (!q.pre_quantized) count_as_one_byte(a);
      r.tensors.push_back(a);
    }
  }
  r.info.weight_bits = 8;
  return r;
}

Replacement fbgemm_linear(const QuantizationConfig& q, const LinearShape& l) {
  Replacement r = linear_replacement("FbgemmFp8Linear", l, 8);
  r.tensors.push_back(q.pre_quantized ? param("weight", {l.out, l.in}, DType::kFloat8)
                                      : model_dtype_param("weight", {l.out, l.in}));
  if (l.bias) r.tensors.push_back(param("bias", {l.out}, DType::kFloat32));
  r.tensors.push_back(param("weight_scale", {l.out, 1}, DType::kFloat32));
  r.tensors.push_back(buffer("input_scale_ub", {1}, DType::kFloat32, /*persistent=*/false));
  return r;
}

Replacement fbgemm_llama4_experts(const ModuleTree& t, int module) {
  Replacement r;
  r.class_name = "FbgemmFp8Llama4TextExperts";
  r.info = experts_shape(t, module);
  const int64_t E = r.info.experts, H = r.info.hidden, I = r.info.inter;
  r.tensors.push_back(param("gate_up_proj", {E, H, 2 * I}, DType::kFloat8));
  r.tensors.push_back(param("gate_up_proj_scale", {E, 1, 2 * I}, DType::kFloat32));
  r.tensors.push_back(param("down_proj", {E, I, H}, DType::kFloat8));
  r.tensors.push_back(param("down_proj_scale", {E, H, 1}, DType::kFloat32));
  r.tensors.push_back(buffer("input_scale_ub", {1}, DType::kFloat32, /*persistent=*/false));
  r.info.weight_bits = 8;
  return r;
}

Replacement compressed_linear(const QuantizationConfig& q, const CompressedGroup& g, const LinearShape& l) {
  // compressed-tensors keeps the nn.Linear and adds quantization parameters.
  Replacement r = linear_replacement("Linear", l, 8);
  r.tensors.push_back(param("weight", {l.out, l.in}, DType::kFloat8));
  if (l.bias) r.tensors.push_back(model_dtype_param("bias", {l.out}));
  // Zero points exist only before compression or for asymmetric schemes.
  const bool zero_point = q.quantization_status != "compressed" || !g.weight_symmetric;
  if (g.static_input) {
    r.tensors.push_back(model_dtype_param("input_scale", {1}));
    if (zero_point) r.tensors.push_back(param("input_zero_point", {1}, DType::kFloat8));
  }
  std::vector<int64_t> s;
  if (g.weight_strategy == "tensor")
    s = {1};
  else if (g.weight_strategy == "channel")
    s = {l.out, 1};
  else
    s = {ceil_div(l.out, g.block[0]), ceil_div(l.in, g.block[1])};
  r.tensors.push_back(model_dtype_param("weight_scale", s));
  if (zero_point) r.tensors.push_back(param("weight_zero_point", s, DType::kFloat8));
  return r;
}

Replacement mxfp4_experts(const ModuleTree& t, int module) {
  Replacement r;
  r.class_name = "Mxfp4GptOssExperts";
  r.info = experts_shape(t, module);
  const int64_t E = r.info.experts, H = r.info.hidden, I = r.info.inter;
  NewTensor gu = param("gate_up_proj", {E, 2 * I, H / 32, 16}, DType::kUInt8);
  gu.extra_bits = E * 2 * I * (H / 32) * 8;  // e8m0 scales, one byte per 32 weights: not a parameter
  r.tensors.push_back(gu);
  r.tensors.push_back(param("gate_up_proj_bias", {E, 2 * I}, DType::kFloat32));
  NewTensor d = param("down_proj", {E, H, I / 32, 16}, DType::kUInt8);
  d.extra_bits = E * H * (I / 32) * 8;
  r.tensors.push_back(d);
  r.tensors.push_back(param("down_proj_bias", {E, H}, DType::kFloat32));
  r.info.weight_bits = 4;
  return r;
}

// --- which modules ---------------------------------------------------------------------------

std::vector<std::string> skip_list(const ModuleTree& t, const std::optional<std::vector<std::string>>& skip,
                                   bool add_default_skips) {
  std::vector<std::string> out;
  if (!skip || add_default_skips) out = keys_to_not_convert(t);
  if (skip) out.insert(out.end(), skip->begin(), skip->end());
  out.insert(out.end(), t.keep_in_fp32_modules.begin(), t.keep_in_fp32_modules.end());
  return out;
}

// compressed-tensors' is_match: "re:<regex>" from the start of the name, else the exact module
// name or a class name of the module.
bool ct_match(const std::string& name, const std::string& cls, const std::string& target, const std::string& origin) {
  if (target.rfind("re:", 0) == 0) {
    check_pattern(target.substr(3), origin);
    try {
      return std::regex_search(name, std::regex(target.substr(3)), std::regex_constants::match_continuous);
    } catch (const std::regex_error&) {
      throw InputError(origin, 0, 0, "compressed-tensors pattern '" + target + "' is not a valid regular expression");
    }
  }
  return target == name || target == cls || (target == "Linear" && cls == "Linear");
}

}  // namespace

// A pattern comes from a config file: refuse what could make a backtracking matcher run for
// ever (a repeated group that itself repeats, "(a+)+") or blow its stack (very long patterns).
void check_pattern(const std::string& key, const std::string& origin) {
  if (key.size() > 512)
    throw InputError(origin, 0, 0, "module pattern of " + std::to_string(key.size()) + " characters (at most 512)");
  std::vector<bool> inner;  // per open group: has a quantifier inside
  for (size_t i = 0; i < key.size(); ++i) {
    const char c = key[i];
    if (c == '\\') {
      ++i;
      continue;
    }
    if (c == '(') inner.push_back(false);
    const bool quant = c == '*' || c == '+' || c == '{' || c == '?';
    if (quant && !inner.empty()) inner.back() = true;
    if (c == ')' && !inner.empty()) {
      const bool had = inner.back();
      inner.pop_back();
      const char next = i + 1 < key.size() ? key[i + 1] : '\0';
      if (had && (next == '*' || next == '+' || next == '{')) {
        throw InputError(
            origin, 0, 0,
            "module pattern '" + key +
                "' repeats a group that repeats (nested quantifiers): refused, it can take exponential time to match");
      }
      if (!inner.empty()) inner.back() = inner.back() || had;
    }
  }
}

bool should_convert_module(const std::string& name, const std::vector<std::string>& patterns,
                           const std::string& origin) {
  static thread_local std::unordered_map<std::string, std::regex> cache;
  for (const std::string& key : patterns) {
    if (ends_with(name, key)) return false;
    auto it = cache.find(key);
    if (it == cache.end()) {
      check_pattern(key, origin);
      try {
        it = cache.emplace(key, std::regex(key)).first;
      } catch (const std::regex_error&) {
        throw InputError(origin, 0, 0, "module pattern '" + key + "' is not a valid regular expression");
      }
    }
    if (std::regex_search(name, it->second, std::regex_constants::match_continuous)) return false;
  }
  return true;
}

std::vector<std::string> keys_to_not_convert(const ModuleTree& t) {
  std::vector<std::string> keys;
  for (const auto& [target, source] : t.ties()) {
    keys.push_back(target);
    keys.push_back(source);
  }
  std::vector<int> params;
  collect_params(t, t.root(), params);
  if (!params.empty()) keys.push_back(t.node(params.back()).name);
  if (int head = output_embeddings(t); head >= 0) keys.push_back(t.node(head).name);
  for (const TreeNode& n : t.nodes()) {
    if (!n.is_tensor &&
        (n.name.find("audio_tower") != std::string::npos || n.name.find("embed_audio") != std::string::npos)) {
      keys.push_back(n.name);
    }
  }
  for (std::string& k : keys) {
    if (ends_with(k, ".weight")) k.resize(k.size() - 7);
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

ModuleTree quantize_module_tree(const ModuleTree& src, const QuantizationConfig& q) {
  const std::string origin = q.file;
  std::vector<std::optional<Replacement>> plan(src.size());
  std::vector<char> scaled_act(src.size(), 0);  // AWQ: activation modules that gain `scales`
  std::vector<int64_t> scaled_width(src.size(), 0);
  int replaced = 0;

  if (!q.dequantize) {
    // GPTQ: optimum's convert_model takes the layers under the block prefix.
    std::string prefix;
    if (q.method == QuantMethod::kGptq) {
      if (q.block_name_to_quantize) {
        prefix = *q.block_name_to_quantize;
      } else {
        for (const char* candidate : {"transformer.h", "model.decoder.layers", "gpt_neox.layers", "model.layers"}) {
          for (const TreeNode& n : src.nodes()) {
            if (!n.is_tensor && n.name.rfind(candidate, 0) == 0) {
              prefix = candidate;
              break;
            }
          }
          if (!prefix.empty()) break;
        }
        if (prefix.empty()) {
          config_error(q,
                       "GPTQ: Block pattern could not be match. Pass `block_name_to_quantize` argument in "
                       "`quantize_model` (" +
                           src.model_type +
                           "'s layers are under none of transformer.h, "
                           "model.decoder.layers, gpt_neox.layers, model.layers)");
        }
      }
    }
    const bool awq = q.method == QuantMethod::kAwq;
    const std::vector<std::string> skips = q.method == QuantMethod::kGptq || q.method == QuantMethod::kCompressedTensors
                                               ? std::vector<std::string>{}
                                               : skip_list(src, q.skip_modules, awq);
    for (int id = 0; id < src.size(); ++id) {  // ids are in named_modules() order
      const TreeNode& n = src.node(id);
      if (n.is_tensor || id == src.root()) continue;
      const bool linear = is_linear(n), conv1d = is_conv1d(n);
      switch (q.method) {
        case QuantMethod::kBnb4bit:
        case QuantMethod::kBnb8bit:
          if ((linear || conv1d) && should_convert_module(n.name, skips, origin))
            plan[id] = bnb_linear(q, linear_shape(src, id));
          break;
        case QuantMethod::kGptq: {
          if (!(linear || conv1d) || n.name.rfind(prefix, 0) != 0) break;
          if (!q.modules_in_block_to_quantize.empty() &&
              std::none_of(q.modules_in_block_to_quantize.begin(), q.modules_in_block_to_quantize.end(),
                           [&](const std::string& s) { return ends_with(n.name, s); })) {
            break;
          }
          plan[id] = gptq_linear(q, linear_shape(src, id));
          break;
        }
        case QuantMethod::kAwq:
          if (linear && should_convert_module(n.name, skips, origin))
            plan[id] = awq_linear(q, linear_shape(src, id), n.name);
          break;
        case QuantMethod::kFp8:
          if (!should_convert_module(n.name, skips, origin)) break;
          if (ends_with(n.name, ".experts") && is_routed_experts(src, id)) {
            if (direct_tensor(src, id, "gate_up_proj_bias") >= 0) {
              config_error(q,
                           "fp8: " + n.name + " has biases, which transformers' FP8Experts does not take (has_bias)");
            }
            plan[id] = fp8_experts(q, src, id);
          } else if (linear) {
            plan[id] = fp8_linear(q, linear_shape(src, id));
          }
          break;
        case QuantMethod::kFbgemmFp8:
          if (!should_convert_module(n.name, skips, origin)) break;
          if (n.class_name == "Llama4TextExperts")
            plan[id] = fbgemm_llama4_experts(src, id);
          else if (linear)
            plan[id] = fbgemm_linear(q, linear_shape(src, id));
          break;
        case QuantMethod::kCompressedTensors: {
          if (!linear) break;
          if (std::any_of(q.ignore.begin(), q.ignore.end(),
                          [&](const std::string& s) { return ct_match(n.name, n.class_name, s, origin); })) {
            break;
          }
          for (const CompressedGroup& g : q.groups) {
            if (std::any_of(g.targets.begin(), g.targets.end(),
                            [&](const std::string& s) { return ct_match(n.name, n.class_name, s, origin); })) {
              plan[id] = compressed_linear(q, g, linear_shape(src, id));
              break;
            }
          }
          break;
        }
        case QuantMethod::kMxfp4:
          if (n.class_name == "GptOssExperts" && should_convert_module(n.name, skips, origin))
            plan[id] = mxfp4_experts(src, id);
          break;
      }
      if (plan[id]) ++replaced;
    }
    // AWQ's replace_quantization_scales: the MLP activation of these families gains `scales`
    // sized to the out_features of the layer before it.
    if (q.method == QuantMethod::kAwq) {
      static const std::vector<std::tuple<std::string, std::string, std::string>> mappings = {
          {"starcoder2", "act", "c_fc"}, {"gptj", "act", "fc_in"}, {"gpt_neox", "act", "dense_h_to_4h"}};
      for (const auto& [type, act, before] : mappings) {
        if (src.model_type != type) continue;
        for (int id = 0; id < src.size(); ++id) {
          const TreeNode& n = src.node(id);
          if (n.is_tensor) continue;
          int a = -1, b = -1;
          for (int c : n.children) {
            if (src.node(c).local == act) a = c;
            if (src.node(c).local == before) b = c;
          }
          if (a >= 0 && b >= 0) {
            scaled_act[a] = 1;
            scaled_width[a] = linear_shape(src, b).out;
          }
        }
      }
    }
  }
  if (replaced == 0 && !q.dequantize) {
    config_error(q, quant_method_key(q.method) + ": no module of " +
                        (src.model_name.empty() ? src.model_type : src.model_name) +
                        " is quantized by this config (check its skip list / targets)");
  }

  // Rebuild the tree in registration order with the replacements in place.
  ModuleTree out(src.node(src.root()).class_name);
  std::function<void(int, int)> copy = [&](int s, int d) {
    const TreeNode& sn = src.node(s);
    const auto copy_tensor = [&](int t) {
      const TreeNode& tn = src.node(t);
      const int id = tn.is_buffer
                         ? out.add_buffer(d, tn.local, tn.shape, tn.follows_model_dtype, tn.fixed_dtype, tn.persistent)
                         : out.add_param(d, tn.local, tn.shape);
      TreeNode& nn = out.mutable_node(id);
      nn.follows_model_dtype = tn.follows_model_dtype;
      nn.fixed_dtype = tn.fixed_dtype;
      nn.sized_bits_per_element = tn.sized_bits_per_element;
      nn.loaded_extra_bits = tn.loaded_extra_bits;
    };
    if (plan[s]) {
      const Replacement& r = *plan[s];
      for (const NewTensor& t : r.tensors) {
        const int id = t.buffer ? out.add_buffer(d, t.local, t.shape, t.follows_model_dtype, t.dtype, t.persistent)
                                : out.add_param(d, t.local, t.shape);
        TreeNode& nn = out.mutable_node(id);
        nn.follows_model_dtype = t.follows_model_dtype;
        nn.fixed_dtype = t.dtype;
        nn.sized_bits_per_element = t.sized_bits;
        nn.loaded_extra_bits = t.extra_bits;
      }
      out.mutable_node(d).quantized = r.info;
      return;  // a replaced linear/experts module has no child modules left (bnb, gptq, fp8: none)
    }
    for (int p : sn.params) copy_tensor(p);
    for (int b : sn.buffers) copy_tensor(b);
    for (int c : sn.children) {
      const TreeNode& cn = src.node(c);
      if (scaled_act[c]) {
        // ScaledActivation(act, scales): child `act`, parameter `scales`.
        const int wrapper = out.add_module(d, cn.local, "ScaledActivation");
        const int inner = out.add_module(wrapper, "act", cn.class_name);
        copy(c, inner);
        out.add_param(wrapper, "scales", {scaled_width[c]});
        continue;
      }
      copy(c, out.add_module(d, cn.local, plan[c] ? plan[c]->class_name : cn.class_name));
    }
  };
  copy(src.root(), out.root());
  // Buffers were copied after parameters within each module, as registration keeps them apart.
  for (const auto& [target, source] : src.ties()) {
    const int t = out.find(target), s = out.find(source);
    if (t >= 0 && s >= 0 && out.node(t).is_tensor && out.node(s).is_tensor && out.node(t).numel == out.node(s).numel) {
      out.tie(target, source);
    }
  }
  out.no_split_modules = src.no_split_modules;
  out.keep_in_fp32_modules = src.keep_in_fp32_modules;
  out.idle_modules = src.idle_modules;
  out.model_type = src.model_type;
  out.model_name = src.model_name;
  out.dims = src.dims;
  out.checkpoint_dtype = src.checkpoint_dtype;
  out.quantization = std::make_shared<QuantizationConfig>(q);
  return out;
}

}  // namespace dmap
