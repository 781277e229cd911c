// Quantized checkpoints: the `quantization_config` of a config.json (or the one a user passes to
// from_pretrained), read and checked as transformers v5's config classes read and check it.
//
// Data flow:
//   config.json `quantization_config` ─┐
//   scenario `quantization_config` /   ├─ read_quantization_config() ─ merge_quantization_configs()
//   `--quantization '{json}'` ─────────┘        ─> QuantizationConfig ─> quantize_module_tree() (core/quantize.h)
//
// Methods dmap sizes (quant_method): bitsandbytes 4-bit and 8-bit (`load_in_4bit` / `load_in_8bit`),
// gptq, awq, fp8 (block FP8, DeepSeek-V3's), fbgemm_fp8, compressed-tensors (float8 schemes) and
// mxfp4 (gpt-oss). Any other method transformers knows (hqq, quanto, torchao, ...) and any method it
// does not know are input errors that name the method and list the supported ones: a checkpoint
// sized at its torch_dtype would be wrong by 2-4x without saying so.
//
// Sources (transformers v5 main): utils/quantization_config.py (the config classes and their
// post_init checks), quantizers/auto.py (quant_method dispatch, merge_quantization_configs).
#pragma once

#include <yaml-cpp/yaml.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace dmap {

enum class QuantMethod { kBnb4bit, kBnb8bit, kGptq, kAwq, kFp8, kFbgemmFp8, kCompressedTensors, kMxfp4 };

// transformers' quant_method key: "bitsandbytes_4bit", "gptq", "fp8", "compressed-tensors", ...
std::string quant_method_key(QuantMethod m);
// A short human name: "bitsandbytes 4-bit (nf4)", "GPTQ 4-bit g128", "block FP8 128x128", ...
struct QuantizationConfig;
std::string quant_summary(const QuantizationConfig& q);

// compressed-tensors: the weight scheme of one config group.
struct CompressedGroup {
  std::vector<std::string> targets;           // class names ("Linear") or "re:<regex>" module names
  std::string weight_strategy = "tensor";     // tensor | channel | block
  std::array<int64_t, 2> block = {128, 128};  // block_structure (strategy block)
  bool weight_symmetric = true;
  bool static_input = false;  // input_activations present and not dynamic: an input_scale
  std::string input_strategy = "tensor";
};

struct QuantizationConfig {
  QuantMethod method = QuantMethod::kBnb4bit;
  std::string file;  // where it was read (errors name it)
  int line = 0;
  // Read from the checkpoint's config.json (pre-quantized weights) or passed by the user for an
  // unquantized checkpoint (quantized while loading).
  bool pre_quantized = true;

  // The skip list: bitsandbytes' llm_int8_skip_modules, modules_to_not_convert (awq, fp8,
  // fbgemm_fp8, mxfp4). nullopt = None, which turns on transformers' default skips.
  std::optional<std::vector<std::string>> skip_modules;
  // The quantizer replaces nothing and the weights are dequantized to the model dtype while
  // loading (fp8, mxfp4, compressed-tensors: a loading attribute).
  bool dequantize = false;

  // bitsandbytes (BitsAndBytesConfig).
  std::string bnb_4bit_quant_type = "fp4";  // fp4 | nf4
  bool bnb_4bit_use_double_quant = false;
  DType bnb_4bit_compute_dtype = DType::kFloat32;
  DType bnb_4bit_quant_storage = DType::kUInt8;
  double llm_int8_threshold = 6.0;
  bool llm_int8_enable_fp32_cpu_offload = false;
  bool llm_int8_has_fp16_weight = false;

  // gptq (GPTQConfig) / awq (AwqConfig).
  int bits = 4;
  int64_t group_size = 128;  // -1 = one group over the whole input
  bool desc_act = false;
  bool sym = true;
  std::optional<std::string> block_name_to_quantize;      // gptq
  std::vector<std::string> modules_in_block_to_quantize;  // gptq: flattened; empty = all
  std::string awq_format = "gemm";                        // gemm | gemv | gemv_fast | llm-awq
  bool zero_point = true;                                 // awq

  // fp8 (FineGrainedFP8Config) / fbgemm_fp8.
  std::optional<std::array<int64_t, 2>> weight_block_size = std::array<int64_t, 2>{128, 128};  // nullopt = per tensor
  std::string activation_scheme = "dynamic";                                                   // dynamic | static
  bool scale_ue8m0 = false;             // scale_fmt "ue8m0": 1-byte scales
  double activation_scale_ub = 1200.0;  // fbgemm_fp8

  // compressed-tensors.
  std::vector<CompressedGroup> groups;
  std::vector<std::string> ignore;  // module names, class names or "re:<regex>"
  std::string format = "float-quantized";
  std::string quantization_status = "compressed";
};

// Reads a `quantization_config` mapping (from a config.json, a scenario or the --quantization
// flag) with transformers' dispatch and checks. Unknown or unsupported methods, fields of the
// wrong type and values the config class refuses are InputErrors at the offending line.
QuantizationConfig read_quantization_config(const YAML::Node& node, const std::string& file, bool pre_quantized);

// The checkpoint's quantization_config: `quantization_config` at the top of the config, else in
// its text_config (get_text_config(decoder=True)). nullopt when there is none.
std::optional<QuantizationConfig> checkpoint_quantization(const YAML::Node& config, const std::string& file);

// transformers' merge_quantization_configs: a checkpoint's config wins over a user's; for fp8,
// fbgemm_fp8, gptq, awq, compressed-tensors and mxfp4 the user's loading attributes (dequantize,
// modules_to_not_convert for fp8, activation_scale_ub) are applied to it. A user config of another
// method than the checkpoint's is an InputError (transformers raises ValueError).
QuantizationConfig merge_quantization_configs(const QuantizationConfig& checkpoint, const QuantizationConfig& user,
                                              const YAML::Node& user_node);

// The quant_method keys dmap supports, in transformers' order.
const std::vector<std::string>& supported_quant_methods();

}  // namespace dmap
