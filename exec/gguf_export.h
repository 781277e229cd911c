// `dmap export gguf`: a checkpoint's weights (or seeded random ones at its shapes) written as
// the GGUF file llama.cpp's converter (convert_hf_to_gguf.py) writes for it, so that llama.cpp
// loads and runs what dmap runs — the llama.cpp runtime probe times exactly these weights.
//
// Data flow: ExecConfig + ModelWeights (transformers' names, [out, in] row-major)
//   --gguf_tensor_name (token_embd, blk.N.attn_q, ...; q_proj/k_proj rows permuted back from
//     transformers' rotate-half layout to llama.cpp's interleaved pairs for arch "llama")
//   --type rules (1-D tensors and norms F32; the rest F32/F16/BF16/Q8_0 as --outtype; a
//     Q8_0 tensor whose rows are not whole 32-blocks stays F16, as the converter falls back)
//   --> GgufWriter (metadata: general.*, {arch}.* hyperparameters, no vocabulary).
//
// Families: llama and mistral (arch "llama"), qwen2 (arch "qwen2": q/k/v biases, no permute),
// qwen3 (arch "qwen3": q/k norms over head_dim as attn_q_norm / attn_k_norm, no permute).
// Others are an InputError naming the family. No tokenizer is exported: the file says
// tokenizer.ggml.model = "none" with {arch}.vocab_size dummy tokens, which llama.cpp accepts
// for token-id input (the probe feeds ids); a vocabulary would need the checkpoint's tokenizer.
//
// Sources (ggml-org/llama.cpp as bundled in node-llama-cpp 3.21.1): conversion/llama.py
// (LlamaModel.permute, set_gguf_parameters), conversion/base.py (TextModel.set_gguf_parameters,
// the F32 rule for 1-D tensors), gguf-py/gguf/quants.py (Q8_0: d = max|x| / 127 as f16,
// q = round(x / d), half away from zero), src/llama-vocab.cpp ("none" and dummy tokens).
//
// Example:
//   ExecConfig cfg = exec_config(load_model_spec("ckpt/config.json"));
//   export_gguf(cfg, ModelWeights::from_checkpoint(cfg, ck), GgufFileType::kF16, "tiny", "tiny-f16.gguf");
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/gguf.h"
#include "exec/config.h"
#include "exec/weights.h"

namespace dmap::exec {

// The llama.cpp architecture a family is written as ("llama", "qwen2", "qwen3"); InputError otherwise.
std::string gguf_arch(const ExecConfig& cfg);
// The GGUF name of a transformers tensor ("model.layers.3.self_attn.q_proj.weight" ->
// "blk.3.attn_q.weight"); "" for a tensor the file does not store (a tied lm_head).
std::string gguf_tensor_name(const ExecConfig& cfg, const std::string& hf_name);
// Q8_0 blocks of `n` floats (n a multiple of 32), as ggml's quantize_row_q8_0_ref.
std::vector<uint8_t> quantize_q8_0(const float* x, int64_t n);
// Writes the file (f32, f16, bf16 or q8_0; others InputError). Returns the tensors written.
size_t export_gguf(const ExecConfig& cfg, const ModelWeights& w, GgufFileType type, const std::string& name,
                   const std::string& path);

}  // namespace dmap::exec
