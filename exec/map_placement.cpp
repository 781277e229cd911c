// From a device map to the executor's placement (see map_placement.h).
#include "exec/map_placement.h"

#include <optional>

#include "core/error.h"

namespace dmap::exec {

std::optional<Semantics> parse_exec_semantics(const std::string& s) {
  for (Semantics x : {Semantics::kAccelerate, Semantics::kPrefetch, Semantics::kInPlace}) {
    if (s == semantics_name(x)) return x;
  }
  return std::nullopt;
}

std::vector<std::pair<std::string, Device>> tensor_devices(const ModuleTree& tree, const DeviceMap& dm,
                                                           const ModelWeights& weights) {
  std::vector<std::pair<std::string, Device>> out;
  for (const auto& name : weights.names()) {
    const int node = tree.find(name);
    DMAP_CHECK(node >= 0, "executor tensor missing from the module tree: " + name);
    const auto d = device_of(tree, dm, node);
    if (!d) throw InputError("the device map gives no device for " + name);
    out.emplace_back(name, *d);
  }
  return out;
}

Placement map_placement(const ModuleTree& tree, const DeviceMap& dm, const ModelWeights& weights, const ExecConfig& cfg,
                        Semantics semantics) {
  Placement p;
  p.semantics = semantics;
  for (const auto& [name, d] : dm.items()) {
    if (d.is_gpu()) {
      p.main_gpu = d.index;  // accelerate's main device: the first GPU among the map's values
      break;
    }
  }
  for (const auto& [name, d] : tensor_devices(tree, dm, weights)) p.tensor_home[name] = d;
  // A unit's device: the one all its tensors share.
  auto unit_device = [&](const std::string& unit, const std::string& prefix) {
    std::optional<Device> dev;
    for (const auto& [name, d] : p.tensor_home) {
      if (name.rfind(prefix, 0) != 0) continue;
      if (dev && *dev != d) {
        throw InputError(
            "the device map splits " + unit + " across devices (" + dev->str() + " and " + d.str() +
            "); dmap's executor runs each decoder layer, the embedding, the final norm and the head on one device");
      }
      dev = d;
    }
    return dev;
  };
  auto mapped = [&](const std::string& module) -> std::optional<Device> {
    const int node = tree.find(module);
    return node < 0 ? std::nullopt : device_of(tree, dm, node);
  };
  p.units.push_back(*unit_device("model.embed_tokens", "model.embed_tokens."));
  for (int64_t l = 0; l < cfg.layers; ++l) {
    const std::string unit = "model.layers." + std::to_string(l);
    p.units.push_back(*unit_device(unit, unit + "."));
  }
  p.units.push_back(*unit_device("model.norm", "model.norm."));
  // A tied head has no tensor of its own: where the map puts lm_head (else beside the norm).
  std::optional<Device> head = cfg.tie ? mapped("lm_head") : unit_device("lm_head", "lm_head.");
  p.units.push_back(head.value_or(p.units.back()));
  return p;
}

}  // namespace dmap::exec
