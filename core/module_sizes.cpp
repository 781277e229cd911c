// compute_module_sizes under accelerate's and transformers v5's rules.
#include "core/module_sizes.h"

#include <algorithm>
#include <unordered_map>

#include "core/error.h"

namespace dmap {

DType instantiated_dtype(const TreeNode& tensor, DType model_dtype) {
  return tensor.follows_model_dtype ? model_dtype : tensor.fixed_dtype;
}

namespace {

// Pre-order walk collecting tensors: all parameters of the tree first, then all buffers
// (named_parameters() then named_buffers(), each recursing module by module).
void collect(const ModuleTree& tree, int module, bool buffers, std::vector<int>& out) {
  const TreeNode& m = tree.node(module);
  for (int t : buffers ? m.buffers : m.params) out.push_back(t);
  for (int c : m.children) collect(tree, c, buffers, out);
}

Bits accelerate_size(const TreeNode& t, const SizingOptions& opt,
                     const std::unordered_map<std::string, DType>& special) {
  // A tensor a quantizer sizes itself (a bitsandbytes weight) was a floating tensor of the
  // skeleton for accelerate: the target dtype applies to it.
  const DType own = t.sized_bits_per_element > 0 ? opt.skeleton_dtype : instantiated_dtype(t, opt.skeleton_dtype);
  if (!special.empty()) {
    auto it = special.find(t.name);
    if (it != special.end()) return t.numel * accelerate_bits_per_element(it->second);
  }
  if (!opt.dtype) return t.numel * accelerate_bits_per_element(own);
  if (!is_floating(own)) return t.numel * accelerate_bits_per_element(own);
  return t.numel * std::min(accelerate_bits_per_element(*opt.dtype), accelerate_bits_per_element(own));
}

// numel * hf_quantizer.param_element_size(): the quantizer's size where it has one.
Bits v5_size(const TreeNode& t, DType load_dtype) {
  if (t.stored_bits >= 0) return t.stored_bits;  // a GGUF file's tensor
  if (t.sized_bits_per_element > 0) return t.numel * t.sized_bits_per_element;
  return t.numel * torch_bits_per_element(instantiated_dtype(t, load_dtype));
}

}  // namespace

ModuleSizes compute_module_sizes(const ModuleTree& tree, const SizingOptions& opt) {
  const int n = tree.size();
  ModuleSizes s;
  s.bits.assign(n, 0);
  s.touched.assign(n, 0);
  s.order.reserve(n);

  std::vector<int> tensors;
  tensors.reserve(n);
  collect(tree, tree.root(), false, tensors);
  collect(tree, tree.root(), true, tensors);

  std::unordered_map<std::string, DType> special(opt.special_dtypes.begin(), opt.special_dtypes.end());
  const bool v5 = opt.rule == SizingRule::kTransformersV5;
  DMAP_CHECK(!v5 || opt.dtype.has_value(), "transformers v5 sizing needs the load dtype");

  std::vector<char> seen_storage(n, 0);
  std::vector<int> chain;
  std::unordered_map<int, size_t> direct_index;
  for (int id : tensors) {
    const TreeNode& t = tree.node(id);
    Bits size = 0;
    if (v5) {
      if (t.tied_source >= 0) continue;  // in all_tied_weights_keys: skipped
      size = v5_size(t, *opt.dtype) + (opt.loaded ? t.loaded_extra_bits : 0);
    } else {
      // A tied parameter is one tensor object: counted once, at the first name reached.
      const int storage = t.tied_source >= 0 ? t.tied_source : id;
      if (seen_storage[storage]) continue;
      seen_storage[storage] = 1;
      size = accelerate_size(t, opt, special);
    }
    // Add to every prefix of the name, root first (insertion order = first touch).
    chain.clear();
    for (int a = id; a >= 0; a = tree.node(a).parent) chain.push_back(a);
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      if (!s.touched[*it]) {
        s.touched[*it] = 1;
        s.order.push_back(*it);
      }
      s.bits[*it] += size;
    }
    if (v5 && t.parent > 0) {  // a name with a dot: its owning module is a "leaf"
      auto [it, inserted] = direct_index.emplace(t.parent, s.direct.size());
      if (inserted) s.direct.emplace_back(t.parent, 0);
      s.direct[it->second].second += size;
    }
  }
  return s;
}

}  // namespace dmap
