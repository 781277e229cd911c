// The from_pretrained / load_checkpoint_and_dispatch pipelines and the maps needing no planner.
#include "strategies/plan.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "strategies/balanced_memory.h"
#include "strategies/infer_auto_device_map.h"

namespace dmap::strategies {

std::optional<Strategy> parse_strategy(const std::string& s) {
  if (s == "auto") return Strategy::kAuto;
  if (s == "balanced") return Strategy::kBalanced;
  if (s == "balanced_low_0") return Strategy::kBalancedLow0;
  if (s == "sequential") return Strategy::kSequential;
  return std::nullopt;
}

std::string strategy_name(Strategy s) {
  switch (s) {
    case Strategy::kAuto: return "auto";
    case Strategy::kBalanced: return "balanced";
    case Strategy::kBalancedLow0: return "balanced_low_0";
    case Strategy::kSequential: return "sequential";
  }
  return "?";
}

std::optional<Pipeline> parse_pipeline(const std::string& s) {
  if (s == "v5" || s == "transformers_v5" || s == "transformers") return Pipeline::kTransformersV5;
  if (s == "v4" || s == "accelerate" || s == "transformers_v4" || s == "transformers_v4_accelerate") {
    return Pipeline::kTransformersV4;
  }
  return std::nullopt;
}

std::string pipeline_name(Pipeline p) {
  return p == Pipeline::kTransformersV5 ? "transformers_v5" : "transformers_v4_accelerate";
}

namespace {
std::optional<Bytes> read_mem_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  long long kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemAvailable:") return static_cast<Bytes>(kib) * 1024;
  }
  return std::nullopt;
}
// transformers 4.x sized a bitsandbytes model with one target dtype (adjust_target_dtype: INT4 or
// int8) applied to every floating tensor, and gave the modules it does not convert back their
// dtype through special_dtypes (get_special_dtypes_update: a substring match of
// modules_to_not_convert, which 4.x's get_keys_to_not_convert built from the ties, or the output
// embedding of an untied model, plus llm_int8_skip_modules).
void add_v4_bnb_sizing(const ModuleTree& tree, DType load, SizingOptions& so) {
  if (!tree.quantization) return;
  const QuantizationConfig& q = *tree.quantization;
  if (q.method != QuantMethod::kBnb4bit && q.method != QuantMethod::kBnb8bit) return;
  so.dtype = q.method == QuantMethod::kBnb4bit ? DType::kInt4 : DType::kInt8;
  std::vector<std::string> keep;
  if (q.skip_modules) {
    keep = *q.skip_modules;
  } else if (tree.ties().empty()) {
    for (const char* head : {"lm_head", "embed_out", "transformer.output_layer"}) {
      if (tree.find(head) >= 0) {
        keep.push_back(head);
        break;
      }
    }
  } else {
    std::vector<std::string> untouched;
    for (const auto& [target, source] : tree.ties()) {
      untouched.push_back(target);
      untouched.push_back(source);
    }
    // The last of named_parameters() (tied targets are duplicates there).
    std::string last;
    for (int id = 0; id < tree.size(); ++id) {
      const TreeNode& n = tree.node(id);
      if (n.is_tensor && !n.is_buffer && n.tied_source < 0) last = n.name;
    }
    if (std::find(untouched.begin(), untouched.end(), last) == untouched.end()) untouched.push_back(last);
    for (std::string name : untouched) {
      for (const std::string& cut : {std::string(".weight"), std::string(".bias")}) {
        if (auto at = name.find(cut); at != std::string::npos) name.erase(at, cut.size());
      }
      keep.push_back(name);
    }
  }
  keep.insert(keep.end(), tree.keep_in_fp32_modules.begin(), tree.keep_in_fp32_modules.end());
  for (int id = 0; id < tree.size(); ++id) {
    const TreeNode& n = tree.node(id);
    if (!n.is_tensor || n.is_buffer) continue;
    for (const std::string& m : keep) {
      if (n.name.find(m) != std::string::npos) {
        so.special_dtypes.emplace_back(n.name, load);
        break;
      }
    }
  }
}

}  // namespace

MaxMemory normalize_max_memory(const MaxMemory& user, std::optional<Bytes> host_available_bytes) {
  MaxMemory mm = user;  // MaxMemory keeps accelerate's order already
  if (!mm.has(Device::cpu())) {
    std::optional<Bytes> avail = host_available_bytes ? host_available_bytes : read_mem_available();
    if (!avail) throw RuntimeFailure("max_memory has no 'cpu' cap and the available RAM cannot be read");
    // psutil.virtual_memory().available * 0.8 (a float; compared exactly, so floor to bits)
    mm.set(Device::cpu(), static_cast<Bits>(static_cast<double>(*avail) * 0.8 * 8.0));
  }
  return mm;
}

PlanResult plan_device_map(const PlanRequest& req) {
  DMAP_CHECK(req.tree != nullptr, "plan request without a model tree");
  const ModuleTree& tree = *req.tree;
  for (const auto& [dev, cap] : req.max_memory.entries()) {
    if (cap < 0) throw InputError("max_memory: negative cap for device " + dev.str());
  }
  PlanResult out;
  PlannerOptions popt;
  popt.tie_groups = tree.tie_groups();
  popt.fallback_allocation = req.fallback_allocation;
  const MaxMemory normalized = normalize_max_memory(req.max_memory, req.host_available_bytes);

  if (req.entry == Entry::kInferAutoDeviceMap) {
    // Called directly: accelerate sizes of a skeleton built in float32, the given dtype.
    SizingOptions so;
    so.rule = SizingRule::kAccelerate;
    so.dtype = req.dtype;
    so.skeleton_dtype = DType::kFloat32;
    so.special_dtypes = req.special_dtypes;
    out.sizes = compute_module_sizes(tree, so);
    popt.no_split = req.no_split.value_or(std::vector<std::string>{});
    out.balanced_max_memory = normalized;
    out.effective_max_memory = normalized;
  } else {
    if (!req.dtype) throw InputError("from_pretrained needs a dtype (torch_dtype)");
    const bool v5 = req.pipeline == Pipeline::kTransformersV5;
    SizingOptions so;
    so.dtype = req.dtype;
    if (v5) {
      so.rule = SizingRule::kTransformersV5;  // tensors as instantiated under the load dtype
    } else {
      so.rule = SizingRule::kAccelerate;  // model built under the load dtype, then dtype=target
      so.skeleton_dtype = *req.dtype;
      so.special_dtypes = req.special_dtypes;
      add_v4_bnb_sizing(tree, *req.dtype, so);
    }
    out.sizes = compute_module_sizes(tree, so);
    popt.no_split = req.no_split.value_or(tree.no_split_modules);

    if (req.strategy != Strategy::kSequential) {
      BalanceInput bin;
      bin.tree = &tree;
      bin.sizes = &out.sizes;
      bin.max_memory = normalized;
      bin.user_gave_max_memory = req.user_gave_max_memory;
      bin.no_split = popt.no_split;
      bin.low_zero = req.strategy == Strategy::kBalancedLow0;
      bin.flavour = v5 ? BalanceFlavour::kTransformersV5 : BalanceFlavour::kAccelerate;
      out.balanced_max_memory = get_balanced_memory(bin);
    } else {
      out.balanced_max_memory = normalized;
    }
    // Unused reserved GPU memory is 0 before anything is loaded; then the user's caps win.
    out.effective_max_memory = out.balanced_max_memory;
    if (req.user_gave_max_memory) {
      for (const auto& [dev, cap] : out.balanced_max_memory.entries()) {
        if (auto u = req.max_memory.get(dev)) out.effective_max_memory.set(dev, std::min(cap, *u));
      }
    }
    // hf_quantizer.adjust_max_memory: bitsandbytes keeps 90 % of every device ("need more space
    // for buffers that are created during quantization"), the CPU and disk included.
    if (tree.quantization &&
        (tree.quantization->method == QuantMethod::kBnb4bit || tree.quantization->method == QuantMethod::kBnb8bit)) {
      for (const auto& [dev, cap] : out.effective_max_memory.entries()) {
        // val * 0.90 in Python floats (bytes); compared exactly, so floor to bits.
        const double bytes = static_cast<double>(cap) / 8.0 * 0.90;
        out.effective_max_memory.set(dev, static_cast<Bits>(bytes * 8.0));
      }
    }
  }
  PlannerResult r = infer_auto_device_map(tree, out.sizes, out.effective_max_memory, popt);
  out.device_map = std::move(r.device_map);
  out.used = std::move(r.used);
  if (req.entry == Entry::kFromPretrained) out.refusal = quantizer_refusal(tree, out.device_map);
  return out;
}

std::string quantizer_refusal(const ModuleTree& tree, const DeviceMap& dm) {
  if (!tree.quantization || tree.quantization->dequantize) return "";
  const QuantizationConfig& q = *tree.quantization;
  bool cpu = false, disk = false, all_cpu = true;
  size_t entries = 0;
  for (const auto& [name, dev] : dm.items()) {
    ++entries;
    cpu = cpu || dev.kind == Device::Kind::kCpu;
    disk = disk || dev.kind == Device::Kind::kDisk;
    all_cpu = all_cpu && dev.kind == Device::Kind::kCpu;
  }
  switch (q.method) {
    case QuantMethod::kBnb4bit:
    case QuantMethod::kBnb8bit:
      if (!q.llm_int8_enable_fp32_cpu_offload && !all_cpu && (cpu || disk)) {
        return "Some modules are dispatched on the CPU or the disk. Make sure you have enough GPU RAM to fit the "
               "quantized model. If you want to dispatch the model on the CPU or the disk while keeping these modules "
               "in 32-bit, you need to set `llm_int8_enable_fp32_cpu_offload=True` and pass a custom `device_map` to "
               "`from_pretrained`.";
      }
      break;
    case QuantMethod::kFp8:
      if (!q.pre_quantized && entries > 1 && (cpu || disk)) {
        return "You are attempting to load an FP8 model with a device_map that contains a cpu/disk device. This is not "
               "supported when the model is quantized on the fly.";
      }
      break;
    case QuantMethod::kFbgemmFp8:
      if (!q.pre_quantized && (cpu || disk)) {
        return "You are attempting to load an FP8 model with a device_map that contains a CPU or disk device. This is "
               "not supported when the model is quantized on the fly.";
      }
      break;
    case QuantMethod::kMxfp4:
      if (!q.pre_quantized && disk) {
        return "You are attempting to load an FP4 model with a device_map that contains a disk device. This is not "
               "supported when the model is quantized on the fly.";
      }
      break;
    default: break;
  }
  return "";
}

PlanRequest plan_request_for(const Scenario& s, const ModuleTree& tree) {
  PlanRequest req;
  req.tree = &tree;
  req.entry = s.entry == "infer_auto_device_map" ? Entry::kInferAutoDeviceMap : Entry::kFromPretrained;
  req.pipeline = parse_pipeline(s.pipeline).value_or(Pipeline::kTransformersV5);
  req.strategy = parse_strategy(s.strategy).value_or(Strategy::kAuto);
  req.dtype = s.dtype;
  if (!req.dtype && req.entry == Entry::kFromPretrained) {
    req.dtype = req.pipeline == Pipeline::kTransformersV5 ? tree.checkpoint_dtype : DType::kFloat32;
    // 4.x's bitsandbytes, GPTQ and AWQ quantizers turned torch_dtype=None into float16
    // (update_torch_dtype: "Overriding torch_dtype=None with torch_dtype=torch.float16").
    if (req.pipeline == Pipeline::kTransformersV4 && tree.quantization) {
      const QuantMethod m = tree.quantization->method;
      if (m == QuantMethod::kBnb4bit || m == QuantMethod::kBnb8bit || m == QuantMethod::kGptq ||
          m == QuantMethod::kAwq) {
        req.dtype = DType::kFloat16;
      }
    }
  }
  if (s.max_memory) req.max_memory = *s.max_memory;  // else the caller derives it from the hardware
  if (req.entry == Entry::kInferAutoDeviceMap || s.no_split_given) req.no_split = s.no_split;
  if (req.entry == Entry::kFromPretrained && s.no_split_given && !s.no_split) req.no_split = std::vector<std::string>{};
  return req;
}

DeviceMap whole_model_map(Device d) {
  DeviceMap dm;
  dm.assign("", d);
  return dm;
}

DeviceMap validate_manual_map(const ModuleTree& tree, const std::vector<std::pair<std::string, Device>>& entries,
                              const std::string& origin, const std::vector<int>& lines) {
  DeviceMap dm;
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& [name, dev] = entries[i];
    const int line = i < lines.size() ? lines[i] : 0;
    if (tree.find(name) < 0) {
      throw InputError(origin, line, 0,
                       "device map names '" + name.substr(0, 200) + "', which is not a module or tensor of " +
                           (tree.model_name.empty() ? tree.model_type : tree.model_name));
    }
    if (dm.get(name)) throw InputError(origin, line, 0, "device map lists '" + name + "' twice");
    dm.assign(name, dev);
  }
  // Every parameter and persistent buffer (what state_dict() holds) must be covered.
  std::vector<std::string> uncovered;
  for (int id = 0; id < tree.size(); ++id) {
    const TreeNode& n = tree.node(id);
    if (!n.is_tensor || (n.is_buffer && !n.persistent)) continue;
    if (!device_of(tree, dm, id)) uncovered.push_back(n.name);
  }
  if (!uncovered.empty()) {
    std::string list;
    for (size_t i = 0; i < uncovered.size() && i < 5; ++i) list += (i ? ", " : "") + uncovered[i];
    if (uncovered.size() > 5) list += ", ... (" + std::to_string(uncovered.size()) + " in all)";
    throw InputError(origin, 0, 0, "device map gives no device for: " + list);
  }
  return dm;
}

}  // namespace dmap::strategies
