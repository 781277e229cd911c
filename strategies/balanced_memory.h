// get_balanced_memory: the per-GPU caps behind device_map="auto"/"balanced"/"balanced_low_0"
// (docs/ACCELERATE.md §5), in accelerate's flavour (§5.1) and transformers v5's (§5.2).
#pragma once

#include "core/device_map.h"
#include "core/module_sizes.h"
#include "core/module_tree.h"

namespace dmap::strategies {

enum class BalanceFlavour { kAccelerate, kTransformersV5 };

struct BalanceInput {
  const ModuleTree* tree = nullptr;
  const ModuleSizes* sizes = nullptr;  // sized under the flavour's own rule
  MaxMemory max_memory;                // normalised caps (get_max_memory already applied)
  bool user_gave_max_memory = true;    // false: a single GPU keeps only 90% of its memory
  std::vector<std::string> no_split;
  bool low_zero = false;
  BalanceFlavour flavour = BalanceFlavour::kAccelerate;
};

// Returns the balanced caps. Throws InputError where the real code raises (accelerate's
// flavour on a "disk" key; balanced_low_0 with GPU ids that are not 0..n-1).
MaxMemory get_balanced_memory(const BalanceInput& in);

// The "buffer" added to each GPU's share: int(1.25 * max(first no-split block, mean leaf)),
// in bytes. Exposed for tests.
Bytes balanced_buffer_bytes(const BalanceInput& in);

}  // namespace dmap::strategies
