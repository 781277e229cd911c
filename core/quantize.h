// quantize_module_tree: what transformers v5's quantizer does to the model on the meta device
// before the device map is computed (HfQuantizer.preprocess_model ->
// _process_model_before_weight_loading), so that maps and sizes follow from the tree as they do
// for any model.
//
// Data flow: ModuleTree (built under the load dtype) + QuantizationConfig
//              --skip list (get_modules_to_not_convert / optimum's block prefix / compressed-tensors'
//                targets and ignore)--> modules to replace
//              --each replaced by the module the method registers, with its real tensors-->
//            ModuleTree whose replaced modules carry TreeNode::quantized (logical shape, bits).
//
// Per method (sources: transformers v5 quantizers/*.py and integrations/*.py, bitsandbytes
// nn/modules.py, gptqmodel nn_modules/qlinear, compressed-tensors lifecycle/initialize.py):
//   bitsandbytes 4/8-bit  nn.Linear and Conv1D -> Linear4bit / Linear8bitLt: weight [out, in]
//                         (pre-quantized: bnb_4bit_quant_storage / int8; else the load dtype), counted
//                         at 4 / 8 bits per element (param_element_size); bias in the load dtype. The
//                         quant state is not a tensor: it is loaded_extra_bits.
//   gptq                  Linear/Conv1D under the block prefix -> QuantLinear buffers: qweight int32
//                         [in/32*bits, out], qzeros int32 [ceil(in/G), out/32*bits], scales fp16
//                         [ceil(in/G), out], g_idx int32 [in], bias fp16.
//   awq                   nn.Linear -> gemm: qweight int32 [in, out/8], qzeros int32 [in/G, out/8],
//                         scales fp16 [in/G, out] (gemv, gemv_fast and llm-awq layouts too); the
//                         activation of starcoder2/gptj/gpt_neox becomes ScaledActivation (+ scales).
//   fp8                   nn.Linear -> FP8Linear: weight fp8 [out, in], weight_scale_inv fp32
//                         [ceil(out/b0), ceil(in/b1)] (a scalar per tensor), activation_scale when
//                         static; `*.experts` -> FP8Experts (3-D fp8 + block scales).
//   fbgemm_fp8            nn.Linear -> FbgemmFp8Linear: weight fp8, weight_scale fp32 [out, 1], bias
//                         fp32, input_scale_ub (non-persistent, 1 float); Llama4TextExperts likewise.
//   compressed-tensors    targeted nn.Linear: weight fp8, weight_scale (load dtype) by strategy,
//                         input_scale when static; fused experts are dequantized (unchanged).
//   mxfp4                 GptOssExperts -> Mxfp4GptOssExperts: gate_up_proj uint8 [E, 2I, H/32, 16],
//                         down_proj uint8 [E, H, I/32, 16], biases fp32; the e8m0 scales are not
//                         parameters (loaded_extra_bits).
// `dequantize` (fp8, mxfp4, compressed-tensors) replaces nothing: the model loads in its dtype.
#pragma once

#include "core/module_tree.h"
#include "core/quantization.h"

namespace dmap {

// Returns the quantized tree. Inconsistent configs (an AWQ group size that does not divide a
// layer's input features, no block prefix for GPTQ, ...) are InputErrors naming the config's file
// and line and the module.
ModuleTree quantize_module_tree(const ModuleTree& tree, const QuantizationConfig& q);

// transformers' should_convert_module: false when a pattern matches the module name as a regex
// anchored at its start, or as a plain suffix. A pattern that is not a valid regex is an
// InputError naming `origin`.
bool should_convert_module(const std::string& name, const std::vector<std::string>& patterns,
                           const std::string& origin);

// get_keys_to_not_convert: both sides of every tie, the last parameter's name and the output
// embedding module, `.weight` stripped.
std::vector<std::string> keys_to_not_convert(const ModuleTree& tree);

}  // namespace dmap
