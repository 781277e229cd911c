// infer_auto_device_map: the greedy fill with a largest-layer reserve, splitting, tied
// parameters, a forward-only device cursor and disk as the unbounded last device.
// Steps are numbered as in docs/ACCELERATE.md §4.2; comments say where accelerate's exact
// behaviour (not the obvious one) is mirrored.
#include "strategies/infer_auto_device_map.h"

#include <algorithm>
#include <deque>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"

namespace dmap::strategies {

namespace {

// Direct parameters followed by child modules: what a split puts in place of a module.
// (Direct buffers are not included: after a split they vanish from the map, as in accelerate.)
std::vector<int> split_items(const TreeNode& m) {
  std::vector<int> out;
  out.reserve(m.params.size() + m.children.size());
  out.insert(out.end(), m.params.begin(), m.params.end());
  out.insert(out.end(), m.children.begin(), m.children.end());
  return out;
}

void max_layer_visit(const ModuleTree& tree, const ModuleSizes& sizes, int id, const std::vector<char>& no_split_node,
                     Bits& best, std::vector<int>& names) {
  const TreeNode& n = tree.node(id);
  if (n.is_tensor || n.children.empty() || no_split_node[id]) {
    const Bits s = sizes.of(id);
    if (s > best) {
      best = s;
      names.assign(1, id);
    } else if (s == best) {
      names.push_back(id);
    }
    return;
  }
  for (int c : n.children) max_layer_visit(tree, sizes, c, no_split_node, best, names);
}

}  // namespace

std::pair<Bits, std::vector<int>> max_layer_size(const ModuleTree& tree, const ModuleSizes& sizes,
                                                 const std::vector<int>& items,
                                                 const std::vector<char>& no_split_node) {
  Bits best = 0;
  std::vector<int> names;
  for (int id : items) max_layer_visit(tree, sizes, id, no_split_node, best, names);
  return {best, names};
}

namespace {

class Planner {
 public:
  Planner(const ModuleTree& tree, const ModuleSizes& sizes, const MaxMemory& max_memory, const PlannerOptions& opt)
      : tree_(tree), sizes_(sizes), opt_(opt) {
    // Initialisation (§4.1): devices in max_memory order, then disk if absent.
    for (const auto& [dev, cap] : max_memory.entries()) {
      devices_.push_back(dev);
      caps_.push_back(cap);
    }
    if (!max_memory.has(Device::disk())) {
      devices_.push_back(Device::disk());
      caps_.push_back(0);
    }
    std::vector<Device> gpus;
    for (const Device& d : devices_) {
      if (d.kind != Device::Kind::kCpu && d.kind != Device::Kind::kDisk) gpus.push_back(d);
    }
    // Main devices keep room for the largest layer: the first GPU and the CPU (mps alone on Apple).
    if (std::find(gpus.begin(), gpus.end(), Device::mps()) != gpus.end()) {
      main_devices_ = {Device::mps()};
    } else if (!gpus.empty()) {
      main_devices_ = {gpus[0], Device::cpu()};
    } else {
      main_devices_ = {Device::cpu()};
    }
    used_.assign(devices_.size(), 0);
    no_split_node_.assign(tree.size(), 0);
    std::unordered_set<std::string> classes(opt.no_split.begin(), opt.no_split.end());
    for (int i = 0; i < tree.size(); ++i) {
      const TreeNode& n = tree.node(i);
      if (!n.is_tensor && classes.count(n.class_name)) no_split_node_[i] = 1;
    }
    for (const auto& g : opt.tie_groups) {
      if (g.empty()) continue;  // transformers v5 passes [[]] when nothing is tied
      std::vector<std::string> dotted;
      for (const auto& k : g) dotted.push_back(k + ".");
      groups_.push_back({g, dotted});
    }
  }

  PlannerResult run() {
    const TreeNode& root = tree_.node(tree_.root());
    // Work list: the root's direct parameters, then its children, then its direct buffers.
    todo_.insert(todo_.end(), root.params.begin(), root.params.end());
    todo_.insert(todo_.end(), root.children.begin(), root.children.end());
    todo_.insert(todo_.end(), root.buffers.begin(), root.buffers.end());
    // The initial reserve is computed over every item, tensors included.
    std::tie(reserve_, reserve_names_) =
        max_layer_size(tree_, sizes_, std::vector<int>(todo_.begin(), todo_.end()), no_split_node_);

    while (!todo_.empty()) {
      const int item = todo_.front();
      todo_.pop_front();
      step(item);
    }
    if (opt_.clean_result) clean_device_map(dm_);
    PlannerResult r;
    r.device_map = std::move(dm_);
    for (size_t i = 0; i < devices_.size(); ++i) r.used.emplace_back(devices_[i], used_[i]);
    return r;
  }

 private:
  bool is_self_or_descendant(int n, int ancestor) const {
    for (int a = n; a >= 0; a = tree_.node(a).parent) {
      if (a == ancestor) return true;
    }
    return false;
  }

  void recompute_reserve() {
    std::vector<int> modules;
    modules.reserve(todo_.size());
    for (int id : todo_) {
      if (!tree_.node(id).is_tensor) modules.push_back(id);  // modules only on recomputation
    }
    std::tie(reserve_, reserve_names_) = max_layer_size(tree_, sizes_, modules, no_split_node_);
  }

  // First entry n of `list` with p starting with n + "." (accelerate raises IndexError if none).
  template <typename List>
  int holder_of(const std::string& p, const List& list) const {
    for (int id : list) {
      const std::string& n = tree_.node(id).name;
      if (p.size() > n.size() && p[n.size()] == '.' && p.compare(0, n.size(), n) == 0) return id;
    }
    throw RuntimeFailure("tied parameter " + p +
                         " has no holder left in the work list (accelerate raises IndexError here)");
  }

  // Members of tie groups that straddle `name`, outside it (§4.2 step 2). The inside test is
  // accelerate's substring test: (name + ".") occurs in (member + ".").
  std::vector<std::string> outside_tied(const std::string& name) const {
    std::vector<std::string> out;
    const std::string dotted = name + ".";
    for (const auto& g : groups_) {
      bool any_in = false, all_in = true;
      for (const auto& k : g.dotted) {
        const bool in = k.find(dotted) != std::string::npos;
        any_in |= in;
        all_in &= in;
      }
      if (!any_in || all_in) continue;
      for (size_t i = 0; i < g.names.size(); ++i) {
        if (g.dotted[i].find(dotted) == std::string::npos) out.push_back(g.names[i]);
      }
    }
    return out;
  }

  bool is_main(const Device& d) const {
    return std::find(main_devices_.begin(), main_devices_.end(), d) != main_devices_.end();
  }

  void step(int item) {
    const TreeNode& node = tree_.node(item);
    const std::string& name = node.name;

    // (1) Lazily refresh the reserve: drop remembered names that are this item or inside it;
    //     recompute over the waiting modules only when none is left.
    reserve_names_.erase(std::remove_if(reserve_names_.begin(), reserve_names_.end(),
                                        [&](int n) { return is_self_or_descendant(n, item); }),
                         reserve_names_.end());
    if (reserve_names_.empty()) recompute_reserve();

    const Bits size = sizes_.of(item);

    // (2) Tied parameters straddling this item, and the todo entries holding them.
    const std::vector<std::string> tied = outside_tied(name);
    std::vector<int> holders;
    Bits size_with_ties = size;
    for (const auto& p : tied) {
      const int h = holder_of(p, todo_);
      holders.push_back(h);
      size_with_ties += sizes_.of(h) - sizes_.of(tree_.find(p));
    }

    // (3) Capacity of the current device; main devices hold the reserve back.
    const size_t cur = cursor_;
    const Device dev = devices_[cur];
    const bool unbounded = dev.kind == Device::Kind::kDisk;
    Bits limit = unbounded ? 0 : caps_[cur];
    Bits reserved_here = 0;
    if (is_main(dev)) {
      limit -= reserve_;
      reserved_here = reserve_;
    }

    // (4) Fits together with its tie holders ("<=": equality fits).
    if (unbounded || used_[cur] + size_with_ties <= limit) {
      used_[cur] += size_with_ties;
      dm_.assign(name, dev);
      for (int h : holders) {
        auto it = std::find(todo_.begin(), todo_.end(), h);
        if (it != todo_.end()) todo_.erase(it);
        dm_.assign(tree_.node(h).name, dev);
      }
      return;
    }

    // (5) The item alone fits but not with its holders: split the first splittable holder.
    if (!tied.empty() && used_[cur] + size <= limit) {
      for (int h : holders) {
        const TreeNode& hn = tree_.node(h);
        if (hn.children.empty() || no_split_node_[h]) continue;
        auto it = std::find(todo_.begin(), todo_.end(), h);
        DMAP_CHECK(it != todo_.end(), "tie holder vanished from the work list");
        const std::vector<int> parts = split_items(hn);
        it = todo_.erase(it);
        todo_.insert(it, parts.begin(), parts.end());
        todo_.push_front(item);
        recompute_reserve();
        return;
      }
    }

    // (6) Does not fit: split the item itself if it has children and may be split.
    //     ">=" and `size` (not size_with_ties), exactly as accelerate tests it.
    if (used_[cur] + size >= limit) {
      if (!node.is_tensor && !node.children.empty() && !no_split_node_[item]) {
        const std::vector<int> parts = split_items(node);
        todo_.insert(todo_.begin(), parts.begin(), parts.end());
        recompute_reserve();
        return;
      }
    }

    // (7) Optional fallback: on an empty device, pull forward the first item that fits.
    if (used_[cur] == 0 && opt_.fallback_allocation && !unbounded) {
      const Bits fallback_limit = caps_[cur] - std::max(reserve_, size_with_ties) - used_[cur];
      if (fallback_limit >= 0 && try_fallback(item, fallback_limit)) return;
    }

    // (8) Give up on this device: charge the reserve, move the cursor on, retry the item.
    used_[cur] += reserved_here;
    ++cursor_;
    DMAP_CHECK(cursor_ < devices_.size(), "ran past the last device (disk is unbounded)");
    todo_.push_front(item);
  }

  // accelerate's fallback_allocate (§4.6): search the rest of the work list, splitting too-big
  // splittable entries in the search list, for the first item whose size with ties fits.
  bool try_fallback(int current, Bits limit) {
    std::deque<int> search(todo_.begin(), todo_.end());
    int found = -1;
    while (!search.empty()) {
      const int id = search.front();
      search.pop_front();
      const std::string& name = tree_.node(id).name;
      Bits with_ties = sizes_.of(id);
      for (const auto& p : outside_tied(name)) {
        const int h = holder_of(p, search);
        with_ties += sizes_.of(h) - sizes_.of(tree_.find(p));
      }
      if (with_ties <= limit) {
        found = id;
        break;
      }
      const TreeNode& n = tree_.node(id);
      if (n.is_tensor || n.children.empty() || no_split_node_[id]) continue;
      const std::vector<int> parts = split_items(n);
      search.insert(search.begin(), parts.begin(), parts.end());
    }
    if (found < 0) return false;
    // Split every ancestor of the found item that is still a work-list entry, outermost first.
    const std::string& fname = tree_.node(found).name;
    for (size_t dot = fname.find('.'); dot != std::string::npos; dot = fname.find('.', dot + 1)) {
      const int parent = tree_.find(fname.substr(0, dot));
      auto it = std::find(todo_.begin(), todo_.end(), parent);
      if (parent < 0 || it == todo_.end()) continue;
      const std::vector<int> parts = split_items(tree_.node(parent));
      it = todo_.erase(it);
      todo_.insert(it, parts.begin(), parts.end());
    }
    auto it = std::find(todo_.begin(), todo_.end(), found);
    DMAP_CHECK(it != todo_.end(), "fallback item is not a work-list entry");
    todo_.erase(it);
    todo_.push_front(current);
    todo_.push_front(found);
    return true;
  }

  struct TieGroup {
    std::vector<std::string> names;
    std::vector<std::string> dotted;
  };

  const ModuleTree& tree_;
  const ModuleSizes& sizes_;
  const PlannerOptions& opt_;
  std::vector<Device> devices_;
  std::vector<Bits> caps_;
  std::vector<Device> main_devices_;
  std::vector<Bits> used_;
  std::vector<char> no_split_node_;
  std::vector<TieGroup> groups_;
  std::deque<int> todo_;
  size_t cursor_ = 0;
  Bits reserve_ = 0;
  std::vector<int> reserve_names_;
  DeviceMap dm_;
};

}  // namespace

PlannerResult infer_auto_device_map(const ModuleTree& tree, const ModuleSizes& sizes, const MaxMemory& max_memory,
                                    const PlannerOptions& options) {
  return Planner(tree, sizes, max_memory, options).run();
}

// clean_device_map over a trie of the map's keys. A node's verdict only depends on the keys
// below it, and merges never touch a sibling subtree, so the statistics can be computed once.
void clean_device_map(DeviceMap& dm) {
  struct TrieNode {
    std::string path;
    std::vector<int> children;  // first-appearance order
    std::unordered_map<std::string, int> by_part;
    int count = 0;        // keys strictly below (for the root: all keys)
    bool uniform = true;  // all those keys map to one device
    Device value;
  };
  std::vector<TrieNode> trie(1);
  const auto items = dm.items();
  auto note = [&](int t, const Device& d) {
    TrieNode& n = trie[t];
    if (n.count == 0) {
      n.value = d;
    } else if (n.value != d) {
      n.uniform = false;
    }
    ++n.count;
  };
  for (const auto& [key, dev] : items) {
    int t = 0;
    note(0, dev);  // the root's prefix "" matches every key, "" included
    if (key.empty()) continue;
    size_t start = 0;
    while (true) {
      const size_t dot = key.find('.', start);
      const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      auto it = trie[t].by_part.find(part);
      int child;
      if (it == trie[t].by_part.end()) {
        child = static_cast<int>(trie.size());
        TrieNode n;
        n.path = trie[t].path.empty() && t == 0 ? part : trie[t].path + "." + part;
        trie.push_back(std::move(n));
        trie[t].by_part.emplace(part, child);
        trie[t].children.push_back(child);
      } else {
        child = it->second;
      }
      t = child;
      if (dot == std::string::npos) break;
      note(t, dev);  // `key` lies strictly below this prefix
      start = dot + 1;
    }
  }

  std::vector<std::string> doomed;
  auto erase_below = [&](const std::string& path) {
    doomed.clear();
    const std::string prefix = path.empty() ? "" : path + ".";
    for (const auto& [key, dev] : dm.items()) {
      if (key.compare(0, prefix.size(), prefix) == 0) doomed.push_back(key);
    }
    for (const auto& k : doomed) dm.erase(k);
  };
  // Iterative DFS with an explicit stack, children in first-appearance order.
  std::vector<int> stack{0};
  while (!stack.empty()) {
    const int t = stack.back();
    stack.pop_back();
    const TrieNode& n = trie[t];
    if (n.count > 1 && n.uniform) {
      erase_below(n.path);
      dm.assign(n.path, n.value);  // appended at the end (or updated in place if present)
      continue;
    }
    for (auto it = n.children.rbegin(); it != n.children.rend(); ++it) stack.push_back(*it);
  }
}

}  // namespace dmap::strategies
