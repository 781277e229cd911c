// ModuleTree: the nn.Module hierarchy transformers builds for a model, with every direct
// parameter, buffer and child in registration order, tensor shapes and dtypes, tied weights
// and the `_no_split_modules` class names. Planner and simulator work on this tree.
//
// Data flow: ModelSpec --build_module_tree()--> ModuleTree --compute_module_sizes()--> ModuleSizes
//
// Nodes are modules and tensors alike (accelerate treats both as placeable items); node 0 is
// the root module, whose full name is "". Node ids are stable indices into nodes().
//
// Example:
//   ModuleTree tree = build_module_tree(load_model_spec("configs/models/llama31_8b.yaml"));
//   int id = tree.find("model.layers.8.mlp");       // -1 when absent
//   for (int c : tree.node(id).children) std::cout << tree.node(c).name << "\n";
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/device_map.h"
#include "core/dtype.h"
#include "core/model_spec.h"
#include "core/quantization.h"

namespace dmap {

struct TreeNode {
  std::string name;   // full dotted name ("" for the root)
  std::string local;  // last component ("" for the root)
  int parent = -1;
  bool is_tensor = false;

  // Modules only.
  std::string class_name;
  std::vector<int> params;    // direct parameters, registration order
  std::vector<int> buffers;   // direct buffers, registration order (persistent or not)
  std::vector<int> children;  // child modules, registration order

  // Tensors only.
  bool is_buffer = false;
  bool persistent = true;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  // Parameters (and buffers created under the default dtype) take the dtype the model is
  // built/loaded in; other buffers keep `fixed_dtype` (rotary inv_freq: float32, masks: bool).
  bool follows_model_dtype = true;
  DType fixed_dtype = DType::kFloat32;
  // For a tie target (e.g. lm_head.weight): the node id of its source tensor. In accelerate's
  // tied skeleton the two are one tensor object; in transformers v5 the target is skipped.
  int tied_source = -1;
  // A quantizer's param_element_size when it differs from the dtype's, in bits per element
  // (bitsandbytes counts a Linear4bit weight at 4 bits whatever its meta dtype); 0 = the dtype's.
  int sized_bits_per_element = 0;
  // Bytes the loaded tensor holds beyond what that sizing counts, in bits (bitsandbytes' quant
  // state, LLM.int8's row scales, MXFP4's scales): the simulator counts them, maps do not.
  Bits loaded_extra_bits = 0;
  // The tensor's size in a GGUF file (core/gguf.h), -1 when the tree is not a GGUF's; its ggml
  // type (GgmlType as int), -1 when it is not stored in the file.
  Bits stored_bits = -1;
  int gguf_type = -1;

  // Modules a quantizer replaced (core/quantize.h): the layer's logical shape, whatever its
  // tensors' packed shapes. All zero for every other module.
  struct Quantized {
    int64_t in = 0, out = 0;                     // a linear layer's features
    int64_t experts = 0, hidden = 0, inter = 0;  // routed experts: gate_up is 2*inter x hidden, down hidden x inter
    int weight_bits = 0;                         // bits per weight as stored (4, 8, ...)
  } quantized;
};

// Shapes that later issues (cost model, executor) need beyond the tree itself.
struct ModelDims {
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t num_attention_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_positions = 0;
  // Per decoder layer: the sliding window of its KV cache (transformers' DynamicSlidingWindowLayer),
  // 0 = full attention. Empty = every layer full.
  std::vector<int64_t> layer_window = {};
  // The MLP is gated (SwiGLU / GeGLU: act(gate) * up): the activation costs two kernels over the
  // intermediate width.
  bool gated_mlp = false;
  // Mixture of experts: routed experts per MoE layer and how many run per token (0: dense).
  int64_t num_experts = 0;
  int64_t experts_per_token = 0;
  bool experts_transposed = false;  // gate_up_proj [E, hidden, 2I] (gpt_oss, llama4), else [E, 2I, hidden]
};

// A mixture-of-experts model's routed experts (the modules holding 3-D gate_up_proj/down_proj
// tensors): how many layers hold them, their parameters in all and per layer, and the parameters a
// token runs (every other parameter, plus k of E experts in each sparse layer).
struct ExpertSummary {
  int64_t sparse_layers = 0;
  int64_t routed_parameters = 0;  // all routed experts, every layer
  int64_t layer_parameters = 0;   // one sparse layer's routed experts
  int64_t active_parameters = 0;  // per token
};
class ModuleTree;
ExpertSummary expert_summary(const ModuleTree& tree);
// Whether a module holds routed experts as transformers v5 stores them (a 3-D gate_up_proj).
bool is_routed_experts(const ModuleTree& tree, int module);
// The routed-experts module of a decoder layer (<layer>.<block>.<experts>), or -1.
int routed_experts_of(const ModuleTree& tree, int layer);

class ModuleTree {
 public:
  explicit ModuleTree(std::string root_class);

  int root() const { return 0; }
  int size() const { return static_cast<int>(nodes_.size()); }
  const TreeNode& node(int id) const { return nodes_[id]; }
  const std::vector<TreeNode>& nodes() const { return nodes_; }
  int find(std::string_view full_name) const;            // -1 when absent
  TreeNode& mutable_node(int id) { return nodes_[id]; }  // for builders and the quantizer

  // Construction (registration order = call order).
  int add_module(int parent, const std::string& local, const std::string& class_name);
  int add_param(int module, const std::string& local, std::vector<int64_t> shape);
  int add_buffer(int module, const std::string& local, std::vector<int64_t> shape, bool follows_model_dtype,
                 DType fixed_dtype, bool persistent);
  // Declares `target` (e.g. "lm_head.weight") tied to `source` ("model.embed_tokens.weight").
  void tie(const std::string& target, const std::string& source);
  void clear_ties();

  // Tie groups as accelerate's find_tied_parameters / transformers v5 build them: each group
  // = the targets sharing a source plus the source, sorted; groups in order of first source.
  std::vector<std::vector<std::string>> tie_groups() const;
  const std::vector<std::pair<std::string, std::string>>& ties() const { return ties_; }

  std::vector<std::string> no_split_modules;  // class names (the model's `_no_split_modules`)
  // The model's `_keep_in_fp32_modules` (name fragments; quantizers never convert them).
  std::vector<std::string> keep_in_fp32_modules;
  // The quantization the tree was built with (quantize_module_tree), if any.
  std::shared_ptr<const QuantizationConfig> quantization;
  std::string gguf_file_type;  // "Q4_K_M" when the tree is sized as a GGUF file (core/gguf.h)
  std::string gguf_path;       // the GGUF file it was read from (core/gguf_reader.h); "" otherwise
  // Full names of modules that compute nothing in text generation (a multimodal checkpoint's
  // vision tower and projector when no image is given): placed and sized, no operators.
  std::vector<std::string> idle_modules;
  std::string model_type;
  std::string model_name;
  ModelDims dims;
  DType checkpoint_dtype = DType::kFloat32;  // config torch_dtype (float32 when unstated)

  int64_t num_parameters() const;  // parameters counted once (ties shared)

 private:
  int add_tensor(int module, const std::string& local, std::vector<int64_t> shape, bool is_buffer);
  std::vector<TreeNode> nodes_;
  std::unordered_map<std::string, int> by_name_;
  int64_t total_numel_ = 0;  // every tensor's elements so far (checked against kMaxModelElements)
  std::vector<std::pair<std::string, std::string>> ties_;
};

// Builds the tree for a supported family (llama, mistral, qwen2, gemma, gpt2, opt, gptj,
// gpt_neox, chatglm). Unknown model_type or a missing config field -> InputError.
ModuleTree build_module_tree(const ModelSpec& spec);

// The model types build_module_tree() accepts.
const std::vector<std::string>& supported_model_types();

// The device a node lands on under `dm`: that of its nearest listed ancestor, itself included
// (accelerate's rule for a module or tensor the map does not name).
std::optional<Device> device_of(const ModuleTree& tree, const DeviceMap& dm, int node);

}  // namespace dmap
