// Reading `quantization_config` as transformers v5's config classes do (utils/quantization_config.py)
// and dispatching it as quantizers/auto.py does.
#include "core/quantization.h"

#include <algorithm>
#include <sstream>

#include "core/error.h"
#include "core/yaml_io.h"

namespace dmap {

namespace {

// transformers' AUTO_QUANTIZER_MAPPING keys (v5 main), the ones dmap sizes marked.
const std::vector<std::string>& transformers_methods() {
  static const std::vector<std::string> k = {"awq",
                                             "bitsandbytes_4bit",
                                             "bitsandbytes_8bit",
                                             "gptq",
                                             "aqlm",
                                             "quanto",
                                             "quark",
                                             "fouroversix",
                                             "fp_quant",
                                             "eetq",
                                             "higgs",
                                             "hqq",
                                             "compressed-tensors",
                                             "fbgemm_fp8",
                                             "torchao",
                                             "bitnet",
                                             "vptq",
                                             "spqr",
                                             "fp8",
                                             "auto-round",
                                             "mxfp4",
                                             "metal",
                                             "sinq",
                                             "mxfp8"};
  return k;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

bool present(const YAML::Node& map, const char* key) { return map[key].IsDefined() && !map[key].IsNull(); }

// Python's isinstance(x, bool): YAML/JSON true/false only.
bool strict_bool(const std::string& file, const YAML::Node& map, const char* key, bool fallback,
                 const std::string& message) {
  if (!present(map, key)) return fallback;
  const YAML::Node n = map[key];
  if (!n.IsScalar()) fail_at(file, n, message);
  const std::string& s = n.Scalar();
  if (s == "true" || s == "True") return true;
  if (s == "false" || s == "False") return false;
  fail_at(file, n, message);
}

std::string string_field(const std::string& file, const YAML::Node& map, const char* key, const std::string& fallback) {
  if (!present(map, key)) return fallback;
  return yaml_string(file, map[key], std::string("quantization_config.") + key);
}

std::optional<std::vector<std::string>> string_list_field(const std::string& file, const YAML::Node& map,
                                                          const char* key, const std::string& message) {
  if (!present(map, key)) return std::nullopt;
  const YAML::Node n = map[key];
  if (!n.IsSequence()) fail_at(file, n, message);
  std::vector<std::string> out;
  for (const YAML::Node& item : n) out.push_back(yaml_string(file, item, std::string("quantization_config.") + key));
  return out;
}

DType dtype_field(const std::string& file, const YAML::Node& node, const std::string& what) {
  const std::string s = yaml_string(file, node, what);
  auto t = parse_dtype(s);
  if (!t) fail_at(file, node, what + ": unknown dtype '" + s + "'");
  return *t;
}

int line_of(const YAML::Node& n) { return n.Mark().line >= 0 ? n.Mark().line + 1 : 0; }

void read_bnb(const std::string& file, const YAML::Node& n, QuantizationConfig& q) {
  if (present(n, "llm_int8_threshold")) {
    const YAML::Node t = n["llm_int8_threshold"];
    // Python checks isinstance(threshold, float): an integer literal is refused.
    if (!t.IsScalar() || is_int_literal(t.Scalar())) fail_at(file, t, "llm_int8_threshold must be a float");
    q.llm_int8_threshold = yaml_double(file, t, "llm_int8_threshold");
  }
  q.skip_modules =
      string_list_field(file, n, "llm_int8_skip_modules", "llm_int8_skip_modules must be a list of strings");
  q.llm_int8_enable_fp32_cpu_offload = strict_bool(file, n, "llm_int8_enable_fp32_cpu_offload", false,
                                                   "llm_int8_enable_fp32_cpu_offload must be a boolean");
  q.llm_int8_has_fp16_weight =
      strict_bool(file, n, "llm_int8_has_fp16_weight", false, "llm_int8_has_fp16_weight must be a boolean");
  if (present(n, "bnb_4bit_compute_dtype")) {
    q.bnb_4bit_compute_dtype = dtype_field(file, n["bnb_4bit_compute_dtype"], "bnb_4bit_compute_dtype");
  }
  q.bnb_4bit_quant_type = string_field(file, n, "bnb_4bit_quant_type", "fp4");
  q.bnb_4bit_use_double_quant =
      strict_bool(file, n, "bnb_4bit_use_double_quant", false, "bnb_4bit_use_double_quant must be a boolean");
  if (present(n, "bnb_4bit_quant_storage")) {
    const YAML::Node s = n["bnb_4bit_quant_storage"];
    const std::string v = yaml_string(file, s, "bnb_4bit_quant_storage");
    static const std::vector<std::string> ok = {"float16", "float32", "int8", "uint8", "float64", "bfloat16"};
    if (std::find(ok.begin(), ok.end(), v) == ok.end()) {
      fail_at(file, s,
              "`bnb_4bit_quant_storage` must be a valid string (one of 'float16', 'float32', 'int8', 'uint8', "
              "'float64', 'bfloat16'), got '" +
                  v + "'");
    }
    q.bnb_4bit_quant_storage = *parse_dtype(v);
  }
}

void read_gptq_like(const std::string& file, const YAML::Node& n, QuantizationConfig& q, bool awq) {
  const std::string what = awq ? "awq" : "gptq";
  if (present(n, "bits")) {
    q.bits = static_cast<int>(yaml_int(file, n["bits"], "quantization_config.bits"));
  } else if (!awq) {
    fail_at(file, n, "quantization_config (gptq) has no 'bits' (GPTQConfig requires it)");
  }
  if (present(n, "group_size")) q.group_size = yaml_int(file, n["group_size"], "quantization_config.group_size");
  if (present(n, "desc_act")) q.desc_act = yaml_bool(file, n["desc_act"], "quantization_config.desc_act");
  if (present(n, "sym")) q.sym = yaml_bool(file, n["sym"], "quantization_config.sym");
  if (awq) {
    // AwqConfig: the legacy key `version` (AutoAWQ's "GEMM") overrides `format`, lower-cased.
    // (yaml-cpp's Node::operator= rebinds the shared node: never assign one node to another.)
    const bool legacy = present(n, "version");
    std::string fmt = legacy ? string_field(file, n, "version", "gemm") : string_field(file, n, "format", "gemm");
    const YAML::Node at = legacy ? n["version"] : n["format"];
    std::transform(fmt.begin(), fmt.end(), fmt.begin(), [](unsigned char c) { return std::tolower(c); });
    if (present(n, "backend") && string_field(file, n, "backend", "") == "llm-awq") fmt = "llm-awq";
    static const std::vector<std::string> formats = {"gemm", "gemv", "gemv_fast", "llm-awq"};
    if (std::find(formats.begin(), formats.end(), fmt) == formats.end()) {
      fail_at(file, at, "Invalid format '" + fmt + "'. Must be one of: ['gemm', 'gemv', 'gemv_fast', 'llm-awq']");
    }
    q.awq_format = fmt;
    if (present(n, "zero_point")) q.zero_point = yaml_bool(file, n["zero_point"], "quantization_config.zero_point");
    q.skip_modules =
        string_list_field(file, n, "modules_to_not_convert", "modules_to_not_convert must be a list of strings");
    // transformers v5 does not check AWQ's bits and group size (AwqConfig.post_init replaces
    // GPTQConfig's); gptqmodel's AWQ kernels take 4-bit only (Marlin: 4 or 8), and dmap sizes
    // those layouts only.
    if (q.bits != 4 && q.bits != 8) {
      fail_at(file, present(n, "bits") ? n["bits"] : n,
              "AWQ with " + std::to_string(q.bits) +
                  " bits: gptqmodel's AWQ kernels pack 4-bit weights (Marlin also 8-bit)");
    }
  } else {
    if (q.bits != 2 && q.bits != 3 && q.bits != 4 && q.bits != 8) {
      fail_at(file, n["bits"], "Only support quantize to [2,3,4,8] bits but found " + std::to_string(q.bits));
    }
    if (present(n, "block_name_to_quantize")) {
      q.block_name_to_quantize = string_field(file, n, "block_name_to_quantize", "");
    }
    if (present(n, "modules_in_block_to_quantize")) {
      const YAML::Node m = n["modules_in_block_to_quantize"];
      if (!m.IsSequence()) fail_at(file, m, "modules_in_block_to_quantize must be a list of lists of module names");
      for (const YAML::Node& group : m) {
        if (group.IsScalar()) {
          q.modules_in_block_to_quantize.push_back(group.Scalar());
          continue;
        }
        if (!group.IsSequence())
          fail_at(file, group, "modules_in_block_to_quantize must be a list of lists of module names");
        for (const YAML::Node& name : group)
          q.modules_in_block_to_quantize.push_back(yaml_string(file, name, "module name"));
      }
    }
  }
  if (q.group_size != -1 && q.group_size <= 0) {
    fail_at(file, n["group_size"], "group_size must be greater than 0 or equal to -1");
  }
  (void)what;
}

void read_fp8(const std::string& file, const YAML::Node& n, QuantizationConfig& q) {
  q.activation_scheme = string_field(file, n, "activation_scheme", "dynamic");
  std::transform(q.activation_scheme.begin(), q.activation_scheme.end(), q.activation_scheme.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (q.activation_scheme != "dynamic" && q.activation_scheme != "static") {
    fail_at(file, n["activation_scheme"], "Activation scheme " + q.activation_scheme + " not supported");
  }
  if (n["weight_block_size"].IsDefined()) {
    const YAML::Node b = n["weight_block_size"];
    if (b.IsNull()) {
      q.weight_block_size.reset();
    } else {
      if (!b.IsSequence() || b.size() != 2) fail_at(file, b, "weight_block_size must be a tuple of two integers");
      const int64_t b0 = yaml_int(file, b[0], "weight_block_size[0]"),
                    b1 = yaml_int(file, b[1], "weight_block_size[1]");
      if (b0 <= 0 || b1 <= 0) fail_at(file, b, "weight_block_size must be a tuple of two positive integers");
      q.weight_block_size = std::array<int64_t, 2>{b0, b1};
    }
  }
  const std::string fmt = string_field(file, n, "scale_fmt", "float");
  if (fmt != "float" && fmt != "ue8m0")
    fail_at(file, n["scale_fmt"], "scale_fmt must be 'float' or 'ue8m0'; got '" + fmt + "'");
  q.scale_ue8m0 = fmt == "ue8m0";
  q.skip_modules =
      string_list_field(file, n, "modules_to_not_convert", "modules_to_not_convert must be a list of strings");
  if (!q.skip_modules) {
    q.skip_modules = string_list_field(file, n, "ignored_layers", "ignored_layers must be a list of strings");
  }
}

void read_compressed_tensors(const std::string& file, const YAML::Node& n, QuantizationConfig& q) {
  q.format = string_field(file, n, "format", "float-quantized");
  q.quantization_status = string_field(file, n, "quantization_status", "compressed");
  if (present(n, "ignore")) q.ignore = *string_list_field(file, n, "ignore", "ignore must be a list of module names");
  if (!present(n, "config_groups") || !n["config_groups"].IsMap()) {
    fail_at(file, n, "compressed-tensors quantization_config has no config_groups mapping");
  }
  for (const auto& kv : n["config_groups"]) {
    const YAML::Node g = kv.second;
    const std::string name = yaml_string(file, kv.first, "config group name");
    if (!g.IsMap()) fail_at(file, g, "config group '" + name + "' must be a mapping");
    CompressedGroup cg;
    if (auto t = string_list_field(file, g, "targets", "targets must be a list")) cg.targets = *t;
    const YAML::Node w = g["weights"];
    if (!w.IsDefined() || !w.IsMap()) fail_at(file, g, "config group '" + name + "' has no weights scheme");
    const std::string type = string_field(file, w, "type", "int");
    const int64_t num_bits = present(w, "num_bits") ? yaml_int(file, w["num_bits"], "num_bits") : 8;
    if (type != "float" || num_bits != 8) {
      fail_at(file, w,
              "compressed-tensors scheme '" + name + "' stores " + std::to_string(num_bits) + "-bit " + type +
                  " weights: dmap sizes the float8 schemes (FP8, FP8_DYNAMIC, FP8_BLOCK) only");
    }
    cg.weight_strategy = string_field(file, w, "strategy", "tensor");
    if (cg.weight_strategy != "tensor" && cg.weight_strategy != "channel" && cg.weight_strategy != "block") {
      fail_at(file, w["strategy"],
              "compressed-tensors weight strategy '" + cg.weight_strategy +
                  "' for float8 weights (known: tensor, channel, block)");
    }
    if (cg.weight_strategy == "block") {
      const YAML::Node b = w["block_structure"];
      if (!b.IsDefined() || !b.IsSequence() || b.size() != 2)
        fail_at(file, w, "block strategy needs block_structure: [rows, cols]");
      cg.block = {yaml_int(file, b[0], "block_structure[0]"), yaml_int(file, b[1], "block_structure[1]")};
      if (cg.block[0] <= 0 || cg.block[1] <= 0) fail_at(file, b, "block_structure must be two positive integers");
    }
    if (present(w, "symmetric")) cg.weight_symmetric = yaml_bool(file, w["symmetric"], "symmetric");
    const YAML::Node in = g["input_activations"];
    if (in.IsDefined() && in.IsMap()) {
      const bool dynamic = present(in, "dynamic") && in["dynamic"].IsScalar() && in["dynamic"].Scalar() == "true";
      cg.static_input = !dynamic;
      cg.input_strategy = string_field(file, in, "strategy", "tensor");
    }
    q.groups.push_back(cg);
  }
}

}  // namespace

std::string quant_method_key(QuantMethod m) {
  switch (m) {
    case QuantMethod::kBnb4bit: return "bitsandbytes_4bit";
    case QuantMethod::kBnb8bit: return "bitsandbytes_8bit";
    case QuantMethod::kGptq: return "gptq";
    case QuantMethod::kAwq: return "awq";
    case QuantMethod::kFp8: return "fp8";
    case QuantMethod::kFbgemmFp8: return "fbgemm_fp8";
    case QuantMethod::kCompressedTensors: return "compressed-tensors";
    case QuantMethod::kMxfp4: return "mxfp4";
  }
  return "?";
}

std::string quant_summary(const QuantizationConfig& q) {
  std::ostringstream s;
  switch (q.method) {
    case QuantMethod::kBnb4bit:
      s << "bitsandbytes 4-bit (" << q.bnb_4bit_quant_type << (q.bnb_4bit_use_double_quant ? ", double quant" : "")
        << ")";
      break;
    case QuantMethod::kBnb8bit: s << "bitsandbytes 8-bit (LLM.int8)"; break;
    case QuantMethod::kGptq: s << "GPTQ " << q.bits << "-bit, group " << q.group_size; break;
    case QuantMethod::kAwq:
      s << "AWQ " << q.bits << "-bit, group " << q.group_size << " (" << q.awq_format << ")";
      break;
    case QuantMethod::kFp8:
      s << "FP8";
      if (q.weight_block_size)
        s << " blocks " << (*q.weight_block_size)[0] << "x" << (*q.weight_block_size)[1];
      else
        s << " per tensor";
      break;
    case QuantMethod::kFbgemmFp8: s << "FBGEMM FP8 (per channel)"; break;
    case QuantMethod::kCompressedTensors:
      s << "compressed-tensors FP8 (" << (q.groups.empty() ? std::string("?") : q.groups[0].weight_strategy) << ")";
      break;
    case QuantMethod::kMxfp4: s << "MXFP4 experts"; break;
  }
  if (q.dequantize) s << ", dequantized while loading";
  return s.str();
}

const std::vector<std::string>& supported_quant_methods() {
  static const std::vector<std::string> k = {
      "bitsandbytes (load_in_4bit / load_in_8bit)", "gptq", "awq", "fp8", "fbgemm_fp8", "compressed-tensors", "mxfp4"};
  return k;
}

QuantizationConfig read_quantization_config(const YAML::Node& n, const std::string& file, bool pre_quantized) {
  if (!n.IsMap()) fail_at(file, n, "quantization_config must be a mapping (the JSON object of a config.json)");
  QuantizationConfig q;
  q.file = file;
  q.line = line_of(n);
  q.pre_quantized = pre_quantized;

  const bool in4 = strict_bool(file, n, "load_in_4bit", false, "load_in_4bit must be a boolean");
  const bool in8 = strict_bool(file, n, "load_in_8bit", false, "load_in_8bit must be a boolean");
  if (in4 && in8)
    fail_at(file, n, "load_in_4bit and load_in_8bit are both True, but only one can be used at the same time");
  std::string method;
  if (in4 || in8) {
    method = in8 ? "bitsandbytes_8bit" : "bitsandbytes_4bit";
  } else if (present(n, "quant_method")) {
    method = yaml_string(file, n["quant_method"], "quant_method");
    if (method == "bitsandbytes") method = "bitsandbytes_4bit";  // neither flag set: 4-bit, as from_config does
  } else {
    fail_at(file, n,
            "The model's quantization config from the arguments has no `quant_method` attribute. Make sure that the "
            "model has been correctly quantized");
  }
  const YAML::Node at = present(n, "quant_method") ? n["quant_method"] : n;
  if (method == "bitsandbytes_4bit" || method == "bitsandbytes_8bit") {
    q.method = method == "bitsandbytes_8bit" ? QuantMethod::kBnb8bit : QuantMethod::kBnb4bit;
    read_bnb(file, n, q);
  } else if (method == "gptq") {
    q.method = QuantMethod::kGptq;
    read_gptq_like(file, n, q, false);
  } else if (method == "awq") {
    q.method = QuantMethod::kAwq;
    read_gptq_like(file, n, q, true);
  } else if (method == "fp8") {
    q.method = QuantMethod::kFp8;
    read_fp8(file, n, q);
  } else if (method == "fbgemm_fp8") {
    q.method = QuantMethod::kFbgemmFp8;
    if (present(n, "activation_scale_ub"))
      q.activation_scale_ub = yaml_double(file, n["activation_scale_ub"], "activation_scale_ub");
    q.skip_modules =
        string_list_field(file, n, "modules_to_not_convert", "modules_to_not_convert must be a list of strings");
  } else if (method == "compressed-tensors") {
    q.method = QuantMethod::kCompressedTensors;
    read_compressed_tensors(file, n, q);
  } else if (method == "mxfp4") {
    q.method = QuantMethod::kMxfp4;
    q.skip_modules =
        string_list_field(file, n, "modules_to_not_convert", "modules_to_not_convert must be a list of strings");
  } else {
    const auto& all = transformers_methods();
    const bool known = std::find(all.begin(), all.end(), method) != all.end();
    fail_at(file, at,
            (known ? "quantization method '" + method + "' is not sized by dmap"
                   : "Unknown quantization type, got '" + method + "' (transformers knows: " + join(all) + ")") +
                "; dmap sizes: " + join(supported_quant_methods()) +
                (pre_quantized && !known ? " (transformers would warn and load the checkpoint unquantized: remove the "
                                           "quantization_config to size it at its torch_dtype)"
                                         : ""));
  }
  if (present(n, "dequantize")) {
    if (q.method != QuantMethod::kFp8 && q.method != QuantMethod::kMxfp4 &&
        q.method != QuantMethod::kCompressedTensors) {
      fail_at(file, n["dequantize"], "dequantize is a loading attribute of fp8, mxfp4 and compressed-tensors only");
    }
    q.dequantize = yaml_bool(file, n["dequantize"], "dequantize");
  }
  if (q.method == QuantMethod::kCompressedTensors) {
    if (present(n, "run_compressed") && !yaml_bool(file, n["run_compressed"], "run_compressed")) q.dequantize = true;
    if (q.format == "dense") q.dequantize = true;
  }
  return q;
}

std::optional<QuantizationConfig> checkpoint_quantization(const YAML::Node& config, const std::string& file) {
  if (present(config, "quantization_config"))
    return read_quantization_config(config["quantization_config"], file, true);
  const YAML::Node text = config["text_config"];
  if (text.IsDefined() && text.IsMap() && present(text, "quantization_config")) {
    return read_quantization_config(text["quantization_config"], file, true);
  }
  return std::nullopt;
}

QuantizationConfig merge_quantization_configs(const QuantizationConfig& checkpoint, const QuantizationConfig& user,
                                              const YAML::Node& user_node) {
  const bool bnb_c = checkpoint.method == QuantMethod::kBnb4bit || checkpoint.method == QuantMethod::kBnb8bit;
  const bool bnb_u = user.method == QuantMethod::kBnb4bit || user.method == QuantMethod::kBnb8bit;
  if (checkpoint.method != user.method && !(bnb_c && bnb_u)) {
    throw InputError(user.file, user.line, 0,
                     "The model is quantized with " + quant_method_key(checkpoint.method) + " (" + checkpoint.file +
                         ") but you are passing a " + quant_method_key(user.method) +
                         " config. Please make sure to pass the same quantization config class to `from_pretrained` "
                         "with different loading attributes.");
  }
  QuantizationConfig out = checkpoint;
  // BitsAndBytesConfig is not a loading-attributes type: the user's settings are ignored.
  if (bnb_c) return out;
  if (present(user_node, "dequantize")) out.dequantize = user.dequantize;
  if (checkpoint.method == QuantMethod::kFp8 &&
      (present(user_node, "modules_to_not_convert") || present(user_node, "ignored_layers"))) {
    out.skip_modules = user.skip_modules;
  }
  if (checkpoint.method == QuantMethod::kFbgemmFp8 && present(user_node, "activation_scale_ub")) {
    out.activation_scale_ub = user.activation_scale_ub;
  }
  return out;
}

}  // namespace dmap
