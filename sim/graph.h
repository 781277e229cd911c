// ModelGraph: the operators one forward pass of a decoder executes, in order, derived from a
// ModuleTree — each matmul (Linear / Conv1D), embedding lookup, norm, attention over the KV
// cache (rotary, cache update and SDPA together), MLP activation and residual add — plus the
// chain of placement units (embedding, decoder layers, final norm, head) the optimal search
// walks.
//
// Data flow: ModuleTree + dtype --build_graph()--> ModelGraph --> CostModel / Simulator / DP
//
// Ops are attached to the tree node whose device decides where they run: a Linear's own
// node, the attention module for attention, the MLP module for the activation, the decoder
// layer for its residual adds. The tree's idle modules (a multimodal checkpoint's vision tower
// and projector: dmap simulates text generation, no image in the prompt) have no ops; their
// weights are placement units like any other.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/module_tree.h"
#include "core/units.h"

namespace dmap::sim {

enum class OpKind { kMatmul, kEmbedding, kNorm, kAttention, kActivation, kResidual };
std::string op_kind_name(OpKind k);

struct Op {
  OpKind kind = OpKind::kMatmul;
  int node = -1;       // tree node the op belongs to
  int64_t in = 0;      // matmul: input features; embedding/norm/residual: width; activation: intermediate
  int64_t out = 0;     // matmul: output features
  bool bias = false;   // matmul with bias
  bool gated = false;  // activation: SwiGLU/GeGLU (reads two inputs)
  bool rms = false;    // norm: RMSNorm (eager: several kernels) vs LayerNorm (one)
  bool head = false;   // matmul producing logits: only the last position in prefill (generate)
  int kernels = 1;     // kernels eager PyTorch launches for it (dispatch overhead)
  int64_t window = 0;  // attention: the sliding window of its KV cache, 0 = full
  // matmul of a layer's routed experts (in x out per expert): `experts` matrices, of which each
  // token runs `active` (transformers v5 stores them as one 3-D tensor).
  int64_t experts = 0, active = 0;
  int weight_bits = 0;       // a quantized layer: bits per weight as stored (dequantised as it runs); 0 = not
  std::vector<int> weights;  // tensor node ids the op reads as weights
};

struct ChainUnit {
  int node = -1;                 // tree node (a no-split module, or a leaf module outside them)
  int first_op = 0, end_op = 0;  // ops [first_op, end_op)
  bool is_layer = false;         // a decoder layer (has attention)
};

struct ModelGraph {
  const ModuleTree* tree = nullptr;
  DType dtype = DType::kFloat16;
  double elt = 2;                   // bytes per activation / weight element
  std::vector<Op> ops;              // forward order
  std::vector<ChainUnit> chain;     // forward order, covering every op
  std::vector<Bytes> tensor_bytes;  // per tree node: bytes of a tensor node as instantiated (0 otherwise)
  std::vector<int> chain_of_node;   // per tree node: chain unit containing it, -1 if none
  int64_t layers = 0, hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, inter = 0, vocab = 0;
  // The tensor a weight really is (tie targets resolve to their source).
  int storage_tensor(int tensor) const;
  Bytes kv_bytes_per_token(int64_t batch) const;  // one layer, K and V
  // Tokens an attention op's KV cache holds after a forward at `context`: transformers'
  // sliding-window layer keeps the whole prompt after prefill (a view of the prefill buffer)
  // and min(context, window) tokens once decoding; full layers keep the context.
  int64_t kv_tokens(const Op& attention, int64_t context, bool prefill) const;
  Bytes kv_bytes(const Op& attention, int64_t batch, int64_t context, bool prefill = false) const;
  Bytes weight_bytes_total() const;  // every parameter once
};

ModelGraph build_graph(const ModuleTree& tree, DType dtype);

}  // namespace dmap::sim
