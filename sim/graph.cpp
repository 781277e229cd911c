// Operators of a forward pass, derived from the module tree's class names and shapes.
#include "sim/graph.h"

#include <algorithm>

#include "core/error.h"
#include "core/module_sizes.h"

namespace dmap::sim {

std::string op_kind_name(OpKind k) {
  switch (k) {
    case OpKind::kMatmul: return "matmul";
    case OpKind::kEmbedding: return "embedding";
    case OpKind::kNorm: return "norm";
    case OpKind::kAttention: return "attention";
    case OpKind::kActivation: return "activation";
    case OpKind::kResidual: return "residual";
  }
  return "?";
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// nn.Linear, Conv1D, or a linear layer a quantizer replaced (Linear4bit, QuantLinear, FP8Linear, ...).
bool is_linear(const TreeNode& n) { return n.class_name == "Linear" || n.class_name == "Conv1D" || n.quantized.in > 0; }

int direct_param(const ModuleTree& t, int module, const char* local) {
  for (int p : t.node(module).params) {
    if (t.node(p).local == local) return p;
  }
  return -1;
}

int direct_tensor(const ModuleTree& t, int module, const char* local) {
  const int p = direct_param(t, module, local);
  if (p >= 0) return p;
  for (int b : t.node(module).buffers) {
    if (t.node(b).local == local) return b;
  }
  return -1;
}

// A linear layer's output features (a quantized one's logical width).
int64_t linear_out(const ModuleTree& t, int module) {
  const TreeNode& n = t.node(module);
  if (n.quantized.out > 0) return n.quantized.out;
  const auto& s = t.node(direct_param(t, module, "weight")).shape;
  return n.class_name == "Conv1D" ? s[1] : s[0];
}

bool has_linear_child(const ModuleTree& t, int module) {
  for (int c : t.node(module).children) {
    if (is_linear(t.node(c))) return true;
  }
  return false;
}

// Kernel counts of transformers' eager modules (what each op costs in launches):
// RMSNorm: to(fp32), pow, mean, add eps, rsqrt, mul, mul weight, to(dtype) = 8.
// Attention: rotary on q and k (cos/sin index, mul, rotate_half = slice+slice+neg+cat, mul, add)
// ~ 12, cache update 2, SDPA 1, reshapes 1 = 16. Gated activation: act + mul = 2.
constexpr int kRmsNormKernels = 8;
constexpr int kAttentionKernels = 16;

struct Builder {
  const ModuleTree& t;
  ModelGraph& g;
  bool gated_family;
  size_t attention_index = 0;  // the i-th attention op is decoder layer i's

  void visit(int id) {
    const TreeNode& n = t.node(id);
    if (n.is_tensor) return;
    if (std::find(t.idle_modules.begin(), t.idle_modules.end(), n.name) != t.idle_modules.end()) return;  // no ops
    const std::string& cls = n.class_name;
    if (n.quantized.in > 0) {  // packed weights, scales, zeros: every tensor of the module is read
      Op op;
      op.kind = OpKind::kMatmul;
      op.node = id;
      op.in = n.quantized.in;
      op.out = n.quantized.out;
      op.weight_bits = n.quantized.weight_bits;
      for (int p : n.params) op.weights.push_back(p);
      for (int p : n.buffers) {
        if (t.node(p).persistent) op.weights.push_back(p);
      }
      op.bias = direct_tensor(t, id, "bias") >= 0;
      op.head = op.out == g.vocab;
      g.ops.push_back(op);
      return;
    }
    if (is_linear(n)) {
      const int w = direct_param(t, id, "weight");
      if (w < 0) return;
      const auto& shape = t.node(w).shape;
      DMAP_CHECK(shape.size() == 2, "linear weight must be 2-D: " + n.name);
      Op op;
      op.kind = OpKind::kMatmul;
      op.node = id;
      op.in = cls == "Conv1D" ? shape[0] : shape[1];
      op.out = cls == "Conv1D" ? shape[1] : shape[0];
      op.weights.push_back(w);
      const int b = direct_param(t, id, "bias");
      if (b >= 0) {
        op.bias = true;
        op.weights.push_back(b);
      }
      op.head = op.out == g.vocab;
      g.ops.push_back(op);
      return;
    }
    if (contains(cls, "Embedding") && !contains(cls, "Rotary")) {
      const int w = direct_param(t, id, "weight");
      if (w >= 0) {
        Op op;
        op.kind = OpKind::kEmbedding;
        op.node = id;
        op.in = t.node(w).shape.back();
        op.weights.push_back(w);
        g.ops.push_back(op);
      }
      for (int c : n.children) visit(c);  // ChatGLM's Embedding wraps word_embeddings
      return;
    }
    // A router (*TopKRouter: a `weight` [E, hidden] Parameter, gpt_oss a bias): logits per expert.
    if (ends_with(cls, "Router") && direct_param(t, id, "weight") >= 0) {
      const int w = direct_param(t, id, "weight");
      const auto& shape = t.node(w).shape;
      DMAP_CHECK(shape.size() == 2, "router weight must be 2-D: " + n.name);
      Op op;
      op.kind = OpKind::kMatmul;
      op.node = id;
      op.in = shape[1];
      op.out = shape[0];
      op.weights.push_back(w);
      const int b = direct_param(t, id, "bias");
      if (b >= 0) {
        op.bias = true;
        op.weights.push_back(b);
      }
      g.ops.push_back(op);
      return;
    }
    // Routed experts (v5: one module of 3-D tensors gate_up_proj and down_proj, [E, out, in], or
    // gpt_oss's transposed [E, in, out] with biases): two expert products and the gated activation
    // over the k experts each token runs.
    if (is_routed_experts(t, id) && direct_param(t, id, "down_proj") >= 0) {
      const int gate_up = direct_param(t, id, "gate_up_proj"), down = direct_param(t, id, "down_proj");
      const bool transposed = t.dims.experts_transposed;
      const TreeNode::Quantized& q = n.quantized;
      for (const auto& [w, bias_name] : {std::pair{gate_up, "gate_up_proj_bias"}, std::pair{down, "down_proj_bias"}}) {
        const auto& s = t.node(w).shape;
        Op op;
        op.kind = OpKind::kMatmul;
        op.node = id;
        if (q.experts > 0) {  // quantized experts (FP8Experts, MXFP4): packed shapes; the logical ones
          op.in = w == gate_up ? q.hidden : q.inter;
          op.out = w == gate_up ? 2 * q.inter : q.hidden;
          op.experts = q.experts;
          op.weight_bits = q.weight_bits;
          // The weight's scales (gate_up_proj_scale_inv, ...) are read with it.
          const std::string stem = w == gate_up ? "gate_up_proj" : "down_proj";
          for (int p : n.params) {
            const std::string& local = t.node(p).local;
            if (p != w && local.rfind(stem, 0) == 0 && local != bias_name) op.weights.push_back(p);
          }
        } else {
          DMAP_CHECK(s.size() == 3, "expert weights must be 3-D: " + n.name);
          op.in = transposed ? s[1] : s[2];
          op.out = transposed ? s[2] : s[1];
          op.experts = s[0];
        }
        op.active = std::max<int64_t>(1, std::min(t.dims.experts_per_token, op.experts));
        op.weights.insert(op.weights.begin(), w);
        const int b = direct_param(t, id, bias_name);
        if (b >= 0) {
          op.bias = true;
          op.weights.push_back(b);
        }
        g.ops.push_back(op);
        if (w == gate_up) {  // the activation runs between the two products
          Op act;
          act.kind = OpKind::kActivation;
          act.node = id;
          act.gated = true;
          act.in = (op.out / 2) * op.active;
          act.kernels = 2;
          g.ops.push_back(act);
        }
      }
      return;
    }
    if (contains(cls, "Norm")) {
      Op op;
      op.kind = OpKind::kNorm;
      op.node = id;
      op.rms = contains(cls, "RMS");
      op.kernels = op.rms ? kRmsNormKernels : 1;
      for (int p : n.params) op.weights.push_back(p);
      op.in = op.weights.empty() ? g.hidden : t.node(op.weights.front()).numel;
      g.ops.push_back(op);
      return;
    }
    for (int c : n.children) visit(c);
    if (ends_with(cls, "Attention") && has_linear_child(t, id)) {
      Op op;
      op.kind = OpKind::kAttention;
      op.node = id;
      op.kernels = kAttentionKernels;
      const auto& windows = t.dims.layer_window;
      if (attention_index < windows.size()) op.window = windows[attention_index];
      ++attention_index;
      g.ops.push_back(op);
    }
    const bool is_block =
        std::find(t.no_split_modules.begin(), t.no_split_modules.end(), cls) != t.no_split_modules.end();
    const bool mlp = ends_with(cls, "MLP") && has_linear_child(t, id);  // (gpt_oss's GptOssMLP is a MoE block)
    // The MLP activation: in the MLP module, or (OPT) in a block holding fc1/fc2 itself.
    if (mlp || (is_block && has_linear_child(t, id))) {
      int64_t width = 0;
      bool gate_proj = false;  // a SwiGLU MLP's own width (a shared expert's is not the config's)
      for (int c : n.children) {
        if (is_linear(t.node(c))) {
          width = linear_out(t, c);
          gate_proj = t.node(c).local == "gate_proj";
          break;
        }
      }
      Op op;
      op.kind = OpKind::kActivation;
      op.node = id;
      op.gated = gated_family;
      // ChatGLM's dense_h_to_4h produces both halves of the SwiGLU: the activation width is half.
      op.in = (gated_family && t.model_type == "chatglm") ? width / 2 : (gated_family && !gate_proj ? g.inter : width);
      op.kernels = gated_family ? 2 : 1;
      g.ops.push_back(op);
    }
    if (is_block) {
      for (int r = 0; r < 2; ++r) {
        Op op;
        op.kind = OpKind::kResidual;
        op.node = id;
        op.in = g.hidden;
        g.ops.push_back(op);
      }
    }
  }
};

// Chain units: no-split modules and the weight-holding modules outside them, in order.
void collect_chain(const ModuleTree& t, int id, std::vector<int>& out) {
  const TreeNode& n = t.node(id);
  const bool is_block =
      std::find(t.no_split_modules.begin(), t.no_split_modules.end(), n.class_name) != t.no_split_modules.end();
  if (is_block || (n.children.empty() && (!n.params.empty() || !n.buffers.empty()))) {
    out.push_back(id);
    return;
  }
  if (!n.params.empty() && id != t.root()) {
    out.push_back(id);  // a module with its own weights and children: keep it whole
    return;
  }
  for (int c : n.children) collect_chain(t, c, out);
}

}  // namespace

int ModelGraph::storage_tensor(int tensor) const {
  const int s = tree->node(tensor).tied_source;
  return s >= 0 ? s : tensor;
}

Bytes ModelGraph::kv_bytes_per_token(int64_t batch) const {
  return static_cast<Bytes>(2.0 * static_cast<double>(batch * kv_heads * head_dim) * elt);
}

int64_t ModelGraph::kv_tokens(const Op& attention, int64_t context, bool prefill) const {
  if (prefill || attention.window <= 0) return context;
  return std::min(context, attention.window);
}

Bytes ModelGraph::kv_bytes(const Op& attention, int64_t batch, int64_t context, bool prefill) const {
  const int64_t tokens = kv_tokens(attention, context, prefill);
  const double bytes = 2.0 * static_cast<double>(batch) * static_cast<double>(kv_heads) *
                       static_cast<double>(head_dim) * elt * static_cast<double>(tokens);
  if (bytes > static_cast<double>(kMaxMemoryBytes)) {  // sizes from user input: refuse, never overflow
    throw InputError("the KV cache of one attention layer would hold " + format_bytes_human(bytes) + " (batch " +
                     std::to_string(batch) + ", " + std::to_string(tokens) + " tokens): beyond dmap's limit of 64 PiB");
  }
  return kv_bytes_per_token(batch) * tokens;
}

Bytes ModelGraph::weight_bytes_total() const {
  Bytes total = 0;
  for (int i = 0; i < tree->size(); ++i) {
    const TreeNode& n = tree->node(i);
    if (n.is_tensor && !n.is_buffer && n.tied_source < 0) total += tensor_bytes[i];
  }
  return total;
}

ModelGraph build_graph(const ModuleTree& tree, DType dtype) {
  ModelGraph g;
  g.tree = &tree;
  g.dtype = dtype;
  g.elt = static_cast<double>(torch_bits_per_element(dtype)) / 8.0;
  const ModelDims& d = tree.dims;
  g.layers = d.num_layers;
  g.hidden = d.hidden_size;
  g.heads = d.num_attention_heads;
  g.kv_heads = d.num_kv_heads > 0 ? d.num_kv_heads : d.num_attention_heads;
  g.head_dim = d.head_dim > 0 ? d.head_dim : d.hidden_size / std::max<int64_t>(1, d.num_attention_heads);
  g.inter = d.intermediate_size;
  g.vocab = d.vocab_size;

  g.tensor_bytes.assign(tree.size(), 0);
  for (int i = 0; i < tree.size(); ++i) {
    const TreeNode& n = tree.node(i);
    if (!n.is_tensor) continue;
    // What the loaded tensor holds: a quantizer's packed size and its state where it has one.
    const Bits per =
        n.sized_bits_per_element > 0 ? n.sized_bits_per_element : torch_bits_per_element(instantiated_dtype(n, dtype));
    g.tensor_bytes[i] = n.stored_bits >= 0 ? (n.stored_bits + 7) / 8 : (n.numel * per + n.loaded_extra_bits + 7) / 8;
  }

  Builder b{tree, g, d.gated_mlp};
  b.visit(tree.root());

  std::vector<int> units;
  collect_chain(tree, tree.root(), units);
  // Map every node to its unit, then cut the op list at unit boundaries.
  g.chain_of_node.assign(tree.size(), -1);
  for (size_t u = 0; u < units.size(); ++u) {
    std::vector<int> stack = {units[u]};
    while (!stack.empty()) {
      const int id = stack.back();
      stack.pop_back();
      g.chain_of_node[id] = static_cast<int>(u);
      for (int c : tree.node(id).children) stack.push_back(c);
      for (int p : tree.node(id).params) g.chain_of_node[p] = static_cast<int>(u);
      for (int p : tree.node(id).buffers) g.chain_of_node[p] = static_cast<int>(u);
    }
  }
  g.chain.resize(units.size());
  for (size_t u = 0; u < units.size(); ++u) g.chain[u].node = units[u];
  size_t i = 0;
  for (size_t u = 0; u < units.size(); ++u) {
    g.chain[u].first_op = static_cast<int>(i);
    while (i < g.ops.size() && g.chain_of_node[g.ops[i].node] == static_cast<int>(u)) {
      if (g.ops[i].kind == OpKind::kAttention) g.chain[u].is_layer = true;
      ++i;
    }
    g.chain[u].end_op = static_cast<int>(i);
  }
  DMAP_CHECK(i == g.ops.size(), "operators out of placement-unit order at " +
                                    (i < g.ops.size() ? tree.node(g.ops[i].node).name : std::string("end")));
  return g;
}

}  // namespace dmap::sim
