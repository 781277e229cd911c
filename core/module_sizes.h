// Sizes of every module and tensor of a ModuleTree, under the two sizing rules that
// accelerate and transformers use (docs/ACCELERATE.md §1.2 and §1.3). Exact to the bit.
//
// Example:
//   SizingOptions opt;  opt.rule = SizingRule::kAccelerate;  opt.dtype = DType::kFloat16;
//   ModuleSizes s = compute_module_sizes(tree, opt);
//   Bits head = s.of(tree.find("lm_head"));          // 0 for a tied head
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/module_tree.h"
#include "core/units.h"

namespace dmap {

enum class SizingRule {
  // accelerate.compute_module_sizes(model, dtype, special_dtypes) on a tied skeleton:
  // floating tensors take min(dtype, own dtype); integer/bool tensors keep theirs (bool = 1 bit);
  // a tied tensor is counted once, under the first name the parameter walk reaches.
  kAccelerate,
  // transformers v5 compute_module_sizes: each tensor's real element size as instantiated
  // under the load dtype (bool = 1 byte, float32 rotary buffers stay 4 bytes); tie targets skipped.
  kTransformersV5,
};

struct SizingOptions {
  SizingRule rule = SizingRule::kAccelerate;
  // kAccelerate: the `dtype` argument (nullopt = every tensor at its own dtype).
  // kTransformersV5: the dtype the model is instantiated under (required).
  std::optional<DType> dtype;
  // kAccelerate: default dtype the skeleton was built under (what "own dtype" means for
  // parameters and default-dtype buffers). Default float32, as `model = Cls(config)` does.
  DType skeleton_dtype = DType::kFloat32;
  // kAccelerate: per-tensor overrides (`special_dtypes`, e.g. _keep_in_fp32_modules).
  std::vector<std::pair<std::string, DType>> special_dtypes;
  // kTransformersV5 only: what the loaded tensors hold (a quantizer's packed size plus the state
  // its sizing does not count, TreeNode::loaded_extra_bits) instead of what the map counts.
  bool loaded = false;
};

struct ModuleSizes {
  std::vector<Bits> bits;     // per node id; 0 for a node no counted tensor lies under
  std::vector<char> touched;  // per node id: has a key in the size mapping
  std::vector<int> order;     // node ids in the mapping's insertion order ("" first)
  // transformers v5 second mapping: bytes held directly by each module that owns a tensor
  // (key = tensor name minus its last component), in insertion order.
  std::vector<std::pair<int, Bits>> direct;

  Bits of(int id) const { return id >= 0 ? bits[id] : 0; }
  Bits total() const { return bits.empty() ? 0 : bits[0]; }
};

ModuleSizes compute_module_sizes(const ModuleTree& tree, const SizingOptions& options);

// The tensor's dtype as instantiated: its own fixed dtype or the model dtype.
DType instantiated_dtype(const TreeNode& tensor, DType model_dtype);

}  // namespace dmap
