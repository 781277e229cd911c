// Placement resolution shared by `dmap map` and `dmap run`.
#include "cli/placement.h"

#include <filesystem>

#include "core/error.h"
#include "core/module_sizes.h"
#include "core/yaml_io.h"
#include "strategies/plan.h"

namespace dmap::cli {

MapOutcome compute_map(const Args& args, Scenario& sc, const ModuleTree& tree) {
  MapOutcome out;
  // Which placement: the --strategy flag, a --device-map file, or the scenario's own entry.
  std::optional<std::string> strategy = args.get("strategy");
  std::optional<std::vector<std::pair<std::string, Device>>> manual;
  std::vector<int> manual_lines;
  std::string manual_origin, manual_label;
  if (auto f = args.get("device-map")) {
    manual = parse_device_map_node(load_yaml_file(*f), *f, &manual_lines);
    manual_origin = manual_label = *f;
  } else if (strategy) {
    for (const auto& m : sc.device_maps) {
      if (m.name == *strategy || "manual:" + m.name == *strategy) {
        manual = m.entries;
        manual_lines = m.entry_lines;
        manual_origin = sc.file;
        manual_label = sc.file + " (device_maps." + m.name + ")";
      }
    }
  }
  auto sizes_for_display = [&]() {
    SizingOptions so;
    so.rule = SizingRule::kTransformersV5;
    so.dtype = sc.dtype.value_or(tree.checkpoint_dtype);
    return compute_module_sizes(tree, so);
  };

  if (manual) {
    out.device_map = strategies::validate_manual_map(tree, *manual, manual_origin, manual_lines);
    out.how = "hand-written map from " + manual_label;
    out.sizes = sizes_for_display();
    if (sc.max_memory) out.max_memory = *sc.max_memory;
  } else if (strategy && !strategies::parse_strategy(*strategy) && *strategy != "infer_auto_device_map" &&
             *strategy != "iadm") {
    auto dev = parse_device(*strategy);
    if (!dev) {
      throw InputError("--strategy: unknown strategy or map '" + *strategy +
                       "' (auto, balanced, balanced_low_0, sequential, infer_auto_device_map, cpu, disk, 0, cuda:N, "
                       "or a name under the scenario's device_maps)");
    }
    out.device_map = strategies::whole_model_map(*dev);
    out.how = "device_map=\"" + (dev->is_gpu() ? "cuda:" + dev->str() : dev->str()) + "\" (whole model on one device)";
    out.sizes = sizes_for_display();
    if (sc.max_memory) out.max_memory = *sc.max_memory;
  } else {
    if (strategy) {
      if (*strategy == "infer_auto_device_map" || *strategy == "iadm") {
        sc.entry = "infer_auto_device_map";
      } else {
        sc.entry = "from_pretrained";
        sc.strategy = *strategy;
      }
    }
    if (!sc.max_memory)
      throw InputError(sc.file, 0, 0, "no max_memory: give --max-memory 0=...,cpu=... or a scenario key");
    const strategies::PlanRequest req = strategies::plan_request_for(sc, tree);
    strategies::PlanResult res = strategies::plan_device_map(req);
    out.device_map = std::move(res.device_map);
    out.max_memory = std::move(res.effective_max_memory);
    out.sizes = std::move(res.sizes);
    std::string ns = req.entry == strategies::Entry::kInferAutoDeviceMap ? "None" : "model's own";
    if (req.no_split) {
      ns.clear();
      for (const auto& c : *req.no_split) ns += (ns.empty() ? "" : ",") + c;
      if (ns.empty()) ns = "None";
    }
    if (req.entry == strategies::Entry::kInferAutoDeviceMap) {
      out.how =
          "infer_auto_device_map(dtype=" + std::string(req.dtype ? dtype_name(*req.dtype) : std::string_view("None")) +
          ", no_split_module_classes=" + ns + ")";
    } else {
      out.how = "from_pretrained(device_map=\"" + strategies::strategy_name(req.strategy) +
                "\", dtype=" + std::string(dtype_name(*req.dtype)) + ") via " +
                strategies::pipeline_name(req.pipeline) + ", no_split=" + ns;
    }
  }

  out.refusal = strategies::quantizer_refusal(tree, out.device_map);
  return out;
}

void apply_quantization_flag(const Args& args, ModelSpec& spec) {
  const auto text = args.get("quantization");
  if (!text) return;
  std::error_code ec;
  const bool file = !text->empty() && text->front() != '{' && std::filesystem::exists(*text, ec);
  const YAML::Node node = file ? load_yaml_file(*text) : load_yaml_string(*text, "--quantization");
  set_user_quantization(spec, node, file ? *text : "--quantization");
}

void check_dtype_for_quantization(const std::optional<DType>& dtype, const ModelSpec& spec, const std::string& origin) {
  if (!dtype || !spec.quantization) return;
  if (spec.quantization->method == QuantMethod::kFbgemmFp8 && *dtype == DType::kFloat16) {
    throw InputError(origin, 0, 0,
                     "You cannot use FP8 with dtype=torch.float16. We recommend you passing dtype=torch.bfloat16 "
                     "(transformers' fbgemm_fp8 quantizer refuses float16)");
  }
  if (is_floating(*dtype) && *dtype != DType::kFloat8) return;
  throw InputError(origin, 0, 0,
                   "dtype " + std::string(dtype_name(*dtype)) + " with a quantized checkpoint (" +
                       quant_summary(*spec.quantization) + ", " + spec.quantization->file +
                       "): the dtype is the load dtype of its unquantized modules (float16, bfloat16 or float32)");
}

}  // namespace dmap::cli
