// get_balanced_memory, both flavours. All arithmetic is exact: sizes are in bits and the
// Python float operations involved (floor division, true division then int(), 1.25*x) are
// reproduced on values that are exactly representable.
#include "strategies/balanced_memory.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "core/error.h"

namespace dmap::strategies {

namespace {

// Python floor division of a size in bits (bytes may be fractional) by an integer count:
// the result is a whole number of bytes.
Bits floor_div_bytes(Bits total_bits, int64_t k) {
  const Bits denom = k * kBitsPerByte;
  Bits q = total_bits / denom;
  if ((total_bits % denom != 0) && ((total_bits < 0) != (denom < 0))) --q;
  return q * kBitsPerByte;
}

// First no-split block's size, in bits: the first module (in size-map order) of each listed
// class, then the largest of those.
Bits no_split_block_bits(const BalanceInput& in) {
  if (in.no_split.empty()) return 0;
  std::unordered_set<std::string> wanted(in.no_split.begin(), in.no_split.end());
  std::unordered_set<std::string> seen;
  Bits best = 0;
  bool any = false;
  for (int id : in.sizes->order) {
    if (id == in.tree->root()) continue;
    const TreeNode& n = in.tree->node(id);
    if (n.is_tensor) continue;  // a Parameter's class is never a layer class
    if (wanted.count(n.class_name) && !seen.count(n.class_name)) {
      seen.insert(n.class_name);
      best = any ? std::max(best, in.sizes->of(id)) : in.sizes->of(id);
      any = true;
    }
    if (seen.size() == wanted.size()) break;
  }
  return best;
}

// Mean leaf size in whole bytes (int(sum / count)).
Bytes mean_leaf_bytes(const BalanceInput& in) {
  Bits sum = 0;
  int64_t count = 0;
  if (in.flavour == BalanceFlavour::kTransformersV5) {
    // Bytes held directly by each module that owns a tensor.
    for (const auto& [id, bits] : in.sizes->direct) {
      sum += bits;
      ++count;
    }
  } else {
    // accelerate: drop the tensor keys (the first leaves), then average the modules left
    // without any sub-entry. A module has a sub-entry iff one of its child modules is a key.
    const ModuleTree& t = *in.tree;
    for (int id : in.sizes->order) {
      if (id == t.root()) continue;
      const TreeNode& n = t.node(id);
      if (n.is_tensor) continue;
      bool has_sub = false;
      for (int c : n.children) {
        if (in.sizes->touched[c]) {
          has_sub = true;
          break;
        }
      }
      if (!has_sub) {
        sum += in.sizes->of(id);
        ++count;
      }
    }
  }
  const double mean = (static_cast<double>(sum) / 8.0) / static_cast<double>(std::max<int64_t>(count, 1));
  return static_cast<Bytes>(std::trunc(mean));
}

}  // namespace

Bytes balanced_buffer_bytes(const BalanceInput& in) {
  const Bits block = no_split_block_bits(in);
  const Bytes mean = mean_leaf_bytes(in);
  const double x = std::max(static_cast<double>(block) / 8.0, static_cast<double>(mean));
  return static_cast<Bytes>(std::trunc(1.25 * x));
}

MaxMemory get_balanced_memory(const BalanceInput& in) {
  DMAP_CHECK(in.tree && in.sizes, "balance input needs a tree and sizes");
  MaxMemory mm = in.max_memory;

  // Count the accelerators that have memory.
  int64_t n = 0;
  for (const auto& [dev, cap] : mm.entries()) {
    if (in.flavour == BalanceFlavour::kAccelerate) {
      if (dev.kind == Device::Kind::kDisk) {
        throw InputError(
            "accelerate's get_balanced_memory cannot take a 'disk' key in max_memory (torch.device('disk') raises); "
            "use the v5 pipeline, the 'sequential' strategy, or drop the disk key");
      }
      if (dev.is_gpu() && cap > 0) ++n;
    } else {
      if (dev.kind != Device::Kind::kCpu && dev.kind != Device::Kind::kDisk && cap > 0) ++n;
    }
  }
  if (n == 0) return mm;

  bool low_zero = in.low_zero;
  if (n == 1) {
    low_zero = false;
    if (!in.user_gave_max_memory) {
      for (const auto& [dev, cap] : mm.entries()) {
        if (dev.is_gpu()) {
          mm.set(dev, static_cast<Bits>(std::floor(static_cast<double>(cap) * 0.9)));
          break;
        }
      }
    }
  }

  const Bits total = in.sizes->total();
  Bits per_gpu = floor_div_bytes(total, low_zero ? n - 1 : n);
  per_gpu += bytes_to_bits(balanced_buffer_bytes(in));

  std::vector<Device> gpu_ids;
  for (const auto& [dev, cap] : mm.entries()) {
    if (dev.is_gpu() && cap > 0) gpu_ids.push_back(dev);
  }
  auto cap_of = [&](int index) -> Bits {
    auto v = mm.get(Device::gpu(index));
    if (!v) {
      throw InputError(
          "balanced_low_0 needs GPU ids 0.." + std::to_string(n - 1) +
          " in max_memory (accelerate reads them by position and raises KeyError; accelerate issue #4297)");
    }
    return *v;
  };
  // The last GPU keeps its full cap as slack; the others are cut to the per-GPU share.
  for (size_t i = 0; i + 1 < gpu_ids.size(); ++i) {
    const Device d = gpu_ids[i];
    const Bits current = *mm.get(d);
    const Bits share = (low_zero && d.index == 0) ? cap_of(0) : per_gpu;
    mm.set(d, std::min(share, current));
  }
  if (low_zero) {
    Bits others = 0;
    for (int i = 1; i < n; ++i) others += cap_of(i);
    const Bits min_zero = std::max<Bits>(0, total - others);
    mm.set(Device::gpu(0), std::min(min_zero, cap_of(0)));
  }
  return mm;
}

}  // namespace dmap::strategies
