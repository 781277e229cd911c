// ModuleTree construction and queries.
#include "core/module_tree.h"

#include <algorithm>
#include <map>

#include "core/error.h"

namespace dmap {

ModuleTree::ModuleTree(std::string root_class) {
  TreeNode root;
  root.class_name = std::move(root_class);
  nodes_.push_back(std::move(root));
  by_name_.emplace("", 0);
}

int ModuleTree::find(std::string_view full_name) const {
  auto it = by_name_.find(std::string(full_name));
  return it == by_name_.end() ? -1 : it->second;
}

int ModuleTree::add_module(int parent, const std::string& local, const std::string& class_name) {
  DMAP_CHECK(parent >= 0 && parent < size() && !nodes_[parent].is_tensor, "parent must be a module");
  TreeNode n;
  n.local = local;
  n.name = nodes_[parent].name.empty() ? local : nodes_[parent].name + "." + local;
  n.parent = parent;
  n.class_name = class_name;
  const int id = size();
  DMAP_CHECK(by_name_.emplace(n.name, id).second, "duplicate module name " + n.name);
  nodes_.push_back(std::move(n));
  nodes_[parent].children.push_back(id);
  return id;
}

int ModuleTree::add_tensor(int module, const std::string& local, std::vector<int64_t> shape, bool is_buffer) {
  DMAP_CHECK(module >= 0 && module < size() && !nodes_[module].is_tensor, "tensor owner must be a module");
  TreeNode n;
  n.local = local;
  n.name = nodes_[module].name.empty() ? local : nodes_[module].name + "." + local;
  n.parent = module;
  n.is_tensor = true;
  n.is_buffer = is_buffer;
  // Sizes come from user configs: every product is checked, and a model is limited to 2^52
  // elements (4.5 quadrillion), so that its sizes in bits fit in 63 bits at any dtype.
  constexpr int64_t kMaxModelElements = int64_t{1} << 52;
  n.numel = 1;
  for (int64_t d : shape) {
    DMAP_CHECK(d >= 0, "negative dimension in " + n.name);
    if (__builtin_mul_overflow(n.numel, d, &n.numel) || n.numel > kMaxModelElements) {
      throw InputError("the model is too large for dmap: tensor " + n.name +
                       " alone has more than 2^52 elements (check the config's sizes)");
    }
  }
  if (__builtin_add_overflow(total_numel_, n.numel, &total_numel_) || total_numel_ > kMaxModelElements) {
    throw InputError("the model is too large for dmap: more than 2^52 elements in all, at tensor " + n.name +
                     " (check the config's sizes)");
  }
  n.shape = std::move(shape);
  const int id = size();
  DMAP_CHECK(by_name_.emplace(n.name, id).second, "duplicate tensor name " + n.name);
  nodes_.push_back(std::move(n));
  (is_buffer ? nodes_[module].buffers : nodes_[module].params).push_back(id);
  return id;
}

int ModuleTree::add_param(int module, const std::string& local, std::vector<int64_t> shape) {
  return add_tensor(module, local, std::move(shape), /*is_buffer=*/false);
}

int ModuleTree::add_buffer(int module, const std::string& local, std::vector<int64_t> shape, bool follows_model_dtype,
                           DType fixed_dtype, bool persistent) {
  const int id = add_tensor(module, local, std::move(shape), /*is_buffer=*/true);
  nodes_[id].follows_model_dtype = follows_model_dtype;
  nodes_[id].fixed_dtype = fixed_dtype;
  nodes_[id].persistent = persistent;
  return id;
}

void ModuleTree::tie(const std::string& target, const std::string& source) {
  const int t = find(target);
  const int s = find(source);
  DMAP_CHECK(t >= 0 && nodes_[t].is_tensor, "tie target is not a tensor: " + target);
  DMAP_CHECK(s >= 0 && nodes_[s].is_tensor, "tie source is not a tensor: " + source);
  DMAP_CHECK(nodes_[t].numel == nodes_[s].numel, "tied tensors differ in size: " + target);
  nodes_[t].tied_source = s;
  ties_.emplace_back(target, source);
}

void ModuleTree::clear_ties() {
  for (TreeNode& n : nodes_) n.tied_source = -1;
  ties_.clear();
}

std::vector<std::vector<std::string>> ModuleTree::tie_groups() const {
  std::vector<std::vector<std::string>> groups;
  std::map<std::string, size_t> group_of_source;
  for (const auto& [target, source] : ties_) {
    auto it = group_of_source.find(source);
    if (it == group_of_source.end()) {
      group_of_source.emplace(source, groups.size());
      groups.push_back({source, target});
    } else {
      groups[it->second].push_back(target);
    }
  }
  for (auto& g : groups) std::sort(g.begin(), g.end());
  return groups;
}

int64_t ModuleTree::num_parameters() const {
  int64_t total = 0;
  for (const TreeNode& n : nodes_) {
    if (n.is_tensor && !n.is_buffer && n.tied_source < 0) total += n.numel;
  }
  return total;
}

bool is_routed_experts(const ModuleTree& tree, int module) {
  if (tree.node(module).quantized.experts > 0) return true;  // FP8Experts, Mxfp4GptOssExperts, ...
  for (int p : tree.node(module).params) {
    if (tree.node(p).local == "gate_up_proj" && tree.node(p).shape.size() == 3) return true;
  }
  return false;
}

int routed_experts_of(const ModuleTree& tree, int layer) {
  for (int block : tree.node(layer).children) {
    for (int m : tree.node(block).children) {
      if (is_routed_experts(tree, m)) return m;
    }
  }
  return -1;
}

ExpertSummary expert_summary(const ModuleTree& tree) {
  ExpertSummary out;
  out.active_parameters = tree.num_parameters();
  if (tree.dims.num_experts <= 0) return out;
  const double keep = static_cast<double>(std::min(tree.dims.experts_per_token, tree.dims.num_experts)) /
                      static_cast<double>(tree.dims.num_experts);
  for (int id = 0; id < tree.size(); ++id) {
    const TreeNode& n = tree.node(id);
    if (n.is_tensor || !is_routed_experts(tree, id)) continue;
    int64_t routed = 0;  // gate_up_proj, down_proj and their biases
    for (int p : n.params) {
      const TreeNode& t = tree.node(p);
      if (t.tied_source < 0 && (t.local.rfind("gate_up_proj", 0) == 0 || t.local.rfind("down_proj", 0) == 0))
        routed += t.numel;
    }
    ++out.sparse_layers;
    out.routed_parameters += routed;
    out.layer_parameters = std::max(out.layer_parameters, routed);
    out.active_parameters -= static_cast<int64_t>(static_cast<double>(routed) * (1.0 - keep) + 0.5);
  }
  return out;
}

std::optional<Device> device_of(const ModuleTree& tree, const DeviceMap& dm, int node) {
  for (int a = node; a >= 0; a = tree.node(a).parent) {
    if (auto d = dm.get(tree.node(a).name)) return d;
  }
  return std::nullopt;
}

}  // namespace dmap
