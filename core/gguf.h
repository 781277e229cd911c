// llama.cpp's GGUF files: the ggml tensor types (block size, bytes per block) and the per-tensor
// types llama-quantize picks for a file type (Q4_K_M, Q5_K_M, Q8_0, ...), so that a model's
// tensors are sized as the GGUF file a llama.cpp user downloads stores them.
//
// Data flow: ModuleTree (HF names) --gguf_category() per tensor (token_embd, attn_v, ffn_down, ...)
//            --llama_tensor_get_type rules of the file type, then the shape fallback-->
//            TreeNode::stored_bits (the tensor's bytes in the file) and TreeNode::gguf_type.
//
// Sources (ggml-org/llama.cpp): ggml/src/ggml.c type_traits (blck_size, type_size),
// ggml/src/ggml-common.h (block structs), src/llama-quant.cpp (llama_tensor_get_type_impl,
// tensor_allows_quantization, tensor_type_fallback; the current code, after PR #19770, which sends
// fused attn_qkv through attn_v's rules), convert_hf_to_gguf.py (1-D tensors, norms and the router
// are written F32 and never requantized).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/module_tree.h"

namespace dmap {

enum class GgmlType {
  kF32,
  kF16,
  kBF16,
  kQ4_0,
  kQ4_1,
  kQ5_0,
  kQ5_1,
  kQ8_0,
  kQ2_K,
  kQ3_K,
  kQ4_K,
  kQ5_K,
  kQ6_K,
  kIQ4_NL,
  kIQ4_XS,
  kMXFP4,
  // Types dmap's file-type rules never pick, read from GGUF files (core/gguf_reader.h).
  kQ8_1,
  kQ8_K,
  kIQ2_XXS,
  kIQ2_XS,
  kIQ3_XXS,
  kIQ1_S,
  kIQ3_S,
  kIQ2_S,
  kIQ1_M,
  kTQ1_0,
  kTQ2_0,
  kNVFP4,
  kQ1_0,
  kQ2_0,
  kI8,
  kI16,
  kI32,
  kI64,
  kF64
};

struct GgmlTypeTraits {
  const char* name;   // "q4_K"
  int64_t block = 1;  // elements per block
  int64_t bytes = 4;  // bytes per block
};
const GgmlTypeTraits& ggml_traits(GgmlType t);
// ggml's type ids as stored in a file (ggml.h enum ggml_type), and back (nullopt: unknown id).
uint32_t ggml_type_id(GgmlType t);
std::optional<GgmlType> ggml_type_from_id(uint32_t id);
// A file's general.file_type (llama_ftype) as llama-quantize names it ("Q4_K_M"); "" unknown.
std::string llama_ftype_name(uint32_t ftype);

// A file type (llama_ftype), as llama-quantize names it on its command line.
enum class GgufFileType {
  kF32,
  kF16,
  kBF16,
  kQ4_0,
  kQ4_1,
  kQ5_0,
  kQ5_1,
  kQ8_0,
  kQ2_K,
  kQ3_K_S,
  kQ3_K_M,
  kQ3_K_L,
  kQ4_K_S,
  kQ4_K_M,
  kQ5_K_S,
  kQ5_K_M,
  kQ6_K,
  kIQ4_XS,
  kMXFP4_MOE
};
std::optional<GgufFileType> parse_gguf_file_type(const std::string& name);  // "Q4_K_M", "q4_k_m", "BF16"
std::string gguf_file_type_name(GgufFileType t);
const std::vector<std::string>& gguf_file_type_names();

// Sizes every stored tensor of the tree as the GGUF file of type `ft` stores it (non-persistent
// buffers such as rotary inv_freq are not in the file: 0 bytes). The tree must not carry a
// transformers quantization. Returns the tree with stored_bits / gguf_type set.
ModuleTree gguf_module_tree(const ModuleTree& tree, GgufFileType ft);

// Per ggml type: how many tensors and bytes (the `llama_model_loader: - type q4_K: 193 tensors`
// lines), in type order.
struct GgufTypeCount {
  GgmlType type;
  int64_t tensors = 0;
  int64_t bytes = 0;
};
std::vector<GgufTypeCount> gguf_type_counts(const ModuleTree& tree);

}  // namespace dmap
