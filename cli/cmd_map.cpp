// `dmap map`: the device map a strategy produces for a scenario, exactly as accelerate /
// transformers would produce it.
#include <cstdio>
#include <iostream>
#include <map>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/placement.h"
#include "core/error.h"
#include "core/json.h"
#include "core/module_sizes.h"
#include "core/scenario.h"
#include "core/yaml_io.h"
#include "strategies/plan.h"

namespace dmap::cli {

namespace {

const char* kMapHelp = R"(usage: dmap map SCENARIO.yaml [options]
       dmap map --model MODEL --max-memory 0=11.5GB,cpu=64GiB [options]

Prints the device map that accelerate / transformers would compute, byte for byte.
Every accelerate conformance case file is a valid SCENARIO.

options:
  --strategy S      auto | balanced | balanced_low_0 | sequential   (from_pretrained(device_map=S))
                    infer_auto_device_map                            (accelerate's function, called directly)
                    cpu | disk | 0 | cuda:N                          (the whole model on one device)
                    NAME                                             (a hand-written map from the scenario's device_maps)
                    default: what the scenario says (entry/strategy), else auto
  --device-map FILE a hand-written map (YAML/JSON {"model.layers.1": 0, "lm_head": "cpu"}) to validate and expand
  --model FILE      model YAML, HF config.json, checkpoint folder or preset name (overrides the scenario's)
  --dtype D         float32 | float16 | bfloat16 | float8 | int8 | int4   (default: scenario, else checkpoint's)
  --max-memory M    caps per device, e.g. 0=11.5GB,1=10GiB,cpu=64GiB,disk=1TB
  --no-split C      a class never split (repeat with commas), or 'none'; default: the model's own
  --quantization Q  a quantization_config passed to from_pretrained: JSON ('{"load_in_4bit": true,
                    "bnb_4bit_quant_type": "nf4"}') or a file holding it (a checkpoint's own config wins)
  --pipeline P      v5 (current transformers) | v4 | accelerate (transformers 4.x == load_checkpoint_and_dispatch)
  --format F        table (default) | json
  --help            this text

json output: {"device_map": [[module, device], ...], "max_memory": {device: bytes}}
  (devices as integers, "cpu", "disk"; max_memory = the caps the planner used, after balancing)
exit codes: 0 ok, 1 runtime failure, 2 bad input
)";

std::string caps_line(const MaxMemory& mm) {
  std::string out;
  for (const auto& [dev, cap] : mm.entries()) {
    if (!out.empty()) out += ", ";
    out +=
        dev.str() + "=" + format_bytes_human(static_cast<double>(cap) / 8.0) + " (" + format_bits_as_bytes(cap) + " B)";
  }
  return out.empty() ? "(none)" : out;
}

void print_table(const ModuleTree& tree, const MapOutcome& r) {
  std::cout << "model:      " << (tree.model_name.empty() ? tree.model_type : tree.model_name) << " ("
            << tree.model_type << ", " << tree.num_parameters() << " parameters)\n";
  std::cout << "placement:  " << r.how << "\n";
  if (tree.quantization) {
    std::cout << "quantized:  " << quant_summary(*tree.quantization)
              << (tree.quantization->pre_quantized ? " (the checkpoint's quantization_config)"
                                                   : " (quantized while loading)")
              << "\n";
  }
  std::cout << "max_memory: " << caps_line(r.max_memory) << "\n\n";
  size_t width = 6;
  for (const auto& [name, dev] : r.device_map.items()) width = std::max(width, name.size() + 2);
  std::printf("%4s  %-*s %-6s %14s\n", "#", static_cast<int>(width), "module", "device", "size");
  int i = 0;
  for (const auto& [name, dev] : r.device_map.items()) {
    const int id = tree.find(name);
    const std::string label = name.empty() ? "\"\" (whole model)" : name;
    std::printf("%4d  %-*s %-6s %14s\n", ++i, static_cast<int>(width), label.c_str(), dev.str().c_str(),
                format_bytes_human(static_cast<double>(r.sizes.of(id)) / 8.0).c_str());
  }
  // What each device holds: every counted tensor under its nearest listed ancestor.
  std::map<Device, Bits> placed;
  Bits unplaced = 0;
  for (int id = 0; id < tree.size(); ++id) {
    const TreeNode& n = tree.node(id);
    if (!n.is_tensor || !r.sizes.touched[id]) continue;
    if (auto d = strategies::device_of(tree, r.device_map, id)) {
      placed[*d] += r.sizes.of(id);
    } else {
      unplaced += r.sizes.of(id);
    }
  }
  std::cout << "\nheld per device:";
  for (const auto& [dev, bits] : placed) std::cout << "  " << dev.str() << "=" << format_bytes_human(bits / 8.0);
  if (unplaced) std::cout << "  (unlisted buffers of split modules: " << format_bytes_human(unplaced / 8.0) << ")";
  std::cout << "\n\ntransformers: device_map=" << device_map_to_json(r.device_map) << "\n";
  if (!r.refusal.empty()) std::cout << "\ntransformers refuses to load this map (ValueError): " << r.refusal << "\n";
}

}  // namespace

int cmd_map(const std::vector<std::string>& argv) {
  const Args args(
      argv,
      {"strategy", "device-map", "model", "dtype", "max-memory", "no-split", "pipeline", "format", "quantization"},
      {"help"});
  if (args.has("help")) {
    std::cout << kMapHelp;
    return 0;
  }
  const std::string format = args.get("format").value_or("table");
  if (format != "table" && format != "json") throw InputError("--format must be table or json, not '" + format + "'");
  if (args.positional().size() > 1) throw InputError("dmap map takes one scenario file (see --help)");

  Scenario sc;
  if (!args.positional().empty()) {
    sc = load_scenario(args.positional()[0], models_dir());
  } else if (!args.get("model")) {
    throw InputError("dmap map needs a SCENARIO.yaml or --model (see --help)");
  } else {
    sc.file = "command line";
  }
  if (auto m = args.get("model")) sc.model = resolve_model(*m, "", models_dir());
  apply_quantization_flag(args, sc.model);
  if (auto d = args.get("dtype")) {
    sc.dtype = parse_dtype(*d);
    if (!sc.dtype) throw InputError("--dtype: unknown dtype '" + *d + "'");
    check_dtype_for_quantization(sc.dtype, sc.model, "--dtype");
  }
  if (auto mm = args.get("max-memory")) sc.max_memory = parse_max_memory_flag(*mm, "--max-memory");
  if (auto ns = args.get("no-split")) {
    sc.no_split_given = true;
    if (*ns == "none" || ns->empty()) {
      sc.no_split = std::nullopt;
    } else {
      sc.no_split = split_commas(*ns);
    }
  }
  if (auto p = args.get("pipeline")) {
    auto pl = strategies::parse_pipeline(*p);
    if (!pl) throw InputError("--pipeline must be v5, v4 or accelerate, not '" + *p + "'");
    sc.pipeline = strategies::pipeline_name(*pl);
  }

  const ModuleTree tree = build_module_tree(sc.model);

  MapOutcome out = compute_map(args, sc, tree);

  if (format == "json") {
    JsonWriter w;
    w.begin_object();
    w.key("device_map");
    w.raw(device_map_to_pairs_json(out.device_map));
    w.key("max_memory");
    w.raw(max_memory_to_json(out.max_memory));
    if (tree.quantization) {
      w.key("quantization");
      w.value(quant_summary(*tree.quantization));
    }
    if (!out.refusal.empty()) {
      w.key("refusal");
      w.value(out.refusal);
    }
    w.end_object();
    std::cout << w.str() << "\n";
  } else {
    print_table(tree, out);
  }
  return 0;
}

}  // namespace dmap::cli
