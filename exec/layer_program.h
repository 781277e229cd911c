// The layer program: one description of a decoder layer's forward per family, which every backend
// executes — the CPU executor (exec/cpu_model.h) and the GPU orchestration over a device runtime
// (exec/device/device_model.h, CUDA or emulated). It names the timed modules, the tensors each
// step reads, the activation buffers it reads and writes, the op order, and where a 16-bit result
// is rounded. A new family or layout is a change to layer_program() alone; a new kind of op is a
// new Step::Op that each backend implements.
//
// Data flow (one layer, activations M x width in named buffers):
//   x --[norm]--> h --[q/k/v products, q/k norms, RoPE]--> q k v --[attention]--> a --[o_proj]--> h
//     --[post norm]--> x += h --[norm]--> h --[gate/up, act, down | experts]--> h --[post norm]--> x += h
//
// Example (llama): module input_layernorm: norm x->h; module self_attn: linear h->q (q_proj),
//   h->k, h->v, rope, attention, linear a->h (o_proj), residual x += h; module
//   post_attention_layernorm: norm x->h; module mlp: linear h->g, h->u, gated act, linear g->h,
//   residual.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "exec/config.h"
#include "exec/cpu/kernels.h"

namespace dmap::exec {

// The activation buffers of a layer (M rows each): the residual stream x, the branch h, the
// attention's q, k, v and output a, the MLP's gate g and up u.
enum class Act { kX, kH, kQ, kK, kV, kA, kG, kU };

struct Step {
  enum class Op {
    kModule,     // a timed module (slot) begins; the previous one ends
    kNorm,       // dst = RMSNorm(src) with gain `weight`; rows = M * groups, `width` wide
    kLinear,     // dst = src W[row0 : row0 + n]^T (+ bias), src `k` wide; rounded when `round`
    kRope,       // q and k rotated in place (this layer's tables: local or global)
    kAttention,  // a = attention(q, k, v) with the KV-cache store; this layer's window
    kGatedAct,   // g = act(g) * u (SiLU, or GELU-tanh for gemma)
    kResidual,   // x = x + h (h rounded first)
    kMoe,        // dst = sparse MoE block of src (router and experts under `prefix`)
  };
  Op op = Op::kModule;
  Act src = Act::kX, dst = Act::kX;
  std::string weight, bias;  // tensor names ("" = none)
  int64_t row0 = 0, n = 0, k = 0;
  int64_t groups = 1, width = 0;
  bool round = true;   // kLinear: round the output to the activation dtype now (the CPU executor
                       // leaves o_proj's and down_proj's output in float32: the residual add rounds it)
  int slot = -1;       // kModule: index into module_times()
  std::string prefix;  // kMoe: "model.layers.N."
};

// The steps of layer l. Slots number the modules as module_slots(cfg) lists them.
std::vector<Step> layer_program(const ExecConfig& cfg, int64_t l);

// True when some layer is a sparse MoE block (its program holds a kMoe step).
bool has_moe(const ExecConfig& cfg);

// RoPE's cos and sin for positions start .. start + T - 1 (T x rotary/2 each, row-major): float32
// rounded to the activation dtype `act` (olmo2: kept float32), scaled by longrope's attention
// factor, from `inv` (rope_inv_freq's frequencies).
void rope_tables(const ExecConfig& cfg, const std::vector<float>& inv, DType act, int64_t T, int64_t start,
                 std::vector<float>& cos, std::vector<float>& sin);

// The frequencies a forward reaching `context` positions uses: longrope's long factors past the
// original context, else the short ones; `local`: gemma3's sliding layers.
std::vector<float> rope_frequencies(const ExecConfig& cfg, int64_t context, bool local);

}  // namespace dmap::exec
