// Scenario loading.
#include "core/scenario.h"

#include "core/gguf.h"

#include <filesystem>

#include "core/error.h"
#include "core/output.h"
#include "core/yaml_io.h"

namespace dmap {

namespace fs = std::filesystem;

MaxMemory parse_max_memory_node(const YAML::Node& node, const std::string& file) {
  if (!node.IsMap()) fail_at(file, node, "max_memory: expected a mapping device -> size");
  MaxMemory mm;
  for (const auto& kv : node) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
    auto dev = parse_device(key);
    if (!dev) fail_at(file, kv.first, "max_memory: unknown device '" + key + "' (use 0, 1, ..., cpu, disk)");
    if (mm.has(*dev)) fail_at(file, kv.first, "max_memory: device " + dev->str() + " given twice");
    if (!kv.second.IsScalar()) fail_at(file, kv.second, kv.first, "max_memory: expected a size for " + key);
    const std::string text = kv.second.Scalar();
    auto check = [&](double bytes) {
      if (bytes > static_cast<double>(kMaxMemoryBytes)) {
        fail_at(file, kv.second, "max_memory: " + text + " for device " + key + " is beyond dmap's limit of 64 PiB");
      }
    };
    Bits cap = 0;
    if (is_int_literal(text)) {
      const int64_t v = yaml_int(file, kv.second, "max_memory[" + key + "]");
      if (v < 0) fail_at(file, kv.second, "max_memory: negative cap " + text + " for device " + key);
      check(static_cast<double>(v));
      cap = bytes_to_bits(v);
    } else {
      if (!text.empty() && text[0] == '-')
        fail_at(file, kv.second, "max_memory: negative cap " + text + " for device " + key);
      auto bytes = parse_memory_size(text);
      if (!bytes) {
        // A float byte count (e.g. a balanced cap written back) is accepted when exact in eighths.
        char* end = nullptr;
        const double d = std::strtod(text.c_str(), &end);
        if (end != text.c_str() && *end == '\0' && d >= 0 && d < 9e17 &&
            d * 8 == static_cast<double>(static_cast<Bits>(d * 8))) {
          check(d);
          cap = static_cast<Bits>(d * 8);
        } else {
          fail_at(file, kv.second,
                  "max_memory: cannot read size '" + text + "' for device " + key +
                      " (use e.g. 10GiB, 11.5GB, 500MB, 5Gb or a byte count)");
        }
      } else {
        check(static_cast<double>(*bytes));
        cap = bytes_to_bits(*bytes);
      }
    }
    mm.set(*dev, cap);
  }
  return mm;
}

std::vector<std::pair<std::string, Device>> parse_device_map_node(const YAML::Node& node, const std::string& file,
                                                                  std::vector<int>* lines) {
  std::vector<std::pair<std::string, Device>> out;
  auto line_of = [&](const YAML::Node& n) {
    if (lines) lines->push_back(n.Mark().line >= 0 ? n.Mark().line + 1 : 0);
  };
  if (node.IsSequence()) {  // [[name, device], ...] as accelerate's ordered pairs
    for (const auto& pair : node) {
      if (!pair.IsSequence() || pair.size() != 2) fail_at(file, pair, "device map: expected [module, device] pairs");
      const std::string name = pair[0].IsNull() ? "" : yaml_string(file, pair[0], "module name");
      const std::string dtext = yaml_string(file, pair[1], "device");
      auto dev = parse_device(dtext);
      if (!dev) fail_at(file, pair[1], "device map: unknown device '" + dtext + "' for '" + name + "'");
      out.emplace_back(name, *dev);
      line_of(pair);
    }
    return out;
  }
  if (!node.IsMap()) fail_at(file, node, "device map: expected a mapping module -> device");
  for (const auto& kv : node) {
    const std::string name = kv.first.IsNull() ? "" : yaml_string(file, kv.first, "module name");
    if (!kv.second.IsScalar()) fail_at(file, kv.second, kv.first, "device map: expected a device for '" + name + "'");
    const std::string dtext = kv.second.Scalar();
    auto dev = parse_device(dtext);
    if (!dev) fail_at(file, kv.second, "device map: unknown device '" + dtext + "' for '" + name + "'");
    out.emplace_back(name, *dev);
    line_of(kv.first);
  }
  return out;
}

ModelSpec resolve_model(const std::string& ref, const std::string& base_dir, const std::string& models_dir) {
  std::error_code ec;
  std::vector<fs::path> candidates;
  const fs::path p(ref);
  if (p.is_absolute()) {
    candidates.push_back(p);
  } else {
    if (!base_dir.empty()) candidates.push_back(fs::path(base_dir) / p);
    candidates.push_back(p);
  }
  if (!models_dir.empty()) {
    candidates.push_back(fs::path(models_dir) / (ref + ".yaml"));
    candidates.push_back(fs::path(models_dir) / ref);
  }
  for (const auto& c : candidates) {
    if (fs::exists(c, ec)) return load_model_spec(c.string());
  }
  throw InputError("model '" + ref + "' not found (not a file, a checkpoint folder, or a preset in " + models_dir +
                   ")");
}

Scenario load_scenario(const std::string& path, const std::string& models_dir) {
  const YAML::Node root = load_yaml_file(path);
  if (!root.IsMap()) fail_at(path, root, "a scenario must be a mapping");
  Scenario s;
  s.file = path;
  // The id names the scenario's output files (reports/<id>/, <golden dir>/<id>.json): it must
  // be a plain file name, never a path.
  const char* kNameRule = " (use letters, digits, '.', '_' and '-', at most 100 characters, not starting with '.')";
  if (root["id"].IsDefined() && !root["id"].IsNull()) {
    if (!root["id"].IsScalar()) fail_at(path, root["id"], "id must be a name, not a list or a mapping");
    s.id = root["id"].Scalar();
    if (const std::string why = unsafe_name_reason(s.id); !why.empty()) {
      fail_at(path, root["id"],
              "id " + quote_for_message(s.id) + " cannot name the scenario's files: " + why + kNameRule);
    }
  } else {
    s.id = fs::path(path).stem().string();
    if (const std::string why = unsafe_name_reason(s.id); !why.empty()) {
      throw InputError(path, 0, 0,
                       "the file name cannot serve as the scenario's id: " + why + "; give it an 'id:'" + kNameRule);
    }
  }

  const YAML::Node model = root["model"];
  if (!model.IsDefined() || model.IsNull()) fail_at(path, root, "scenario has no 'model'");
  if (model.IsScalar()) {
    s.model = resolve_model(model.Scalar(), fs::path(path).parent_path().string(), models_dir);
  } else {
    s.model = model_spec_from_node(model, path);
    if (s.model.name.empty()) s.model.name = s.id;
  }

  if (root["gguf"].IsDefined() && !root["gguf"].IsNull()) {
    const std::string g = yaml_string(path, root["gguf"], "gguf");
    if (!parse_gguf_file_type(g)) {
      std::string known;
      for (const auto& n : gguf_file_type_names()) known += (known.empty() ? "" : ", ") + n;
      fail_at(path, root["gguf"], "gguf: unknown llama.cpp file type '" + g + "' (known: " + known + ")");
    }
    if (root["quantization_config"].IsDefined()) {
      fail_at(path, root["gguf"],
              "gguf: a llama.cpp file type and a transformers quantization_config exclude each other");
    }
    s.model.gguf_file_type = gguf_file_type_name(*parse_gguf_file_type(g));
  }
  if (root["quantization_config"].IsDefined() && !root["quantization_config"].IsNull()) {
    set_user_quantization(s.model, root["quantization_config"], path);
  }
  if (root["dtype"].IsDefined() && !root["dtype"].IsNull()) {
    const std::string d = yaml_string(path, root["dtype"], "dtype");
    s.dtype = parse_dtype(d);
    if (!s.dtype) fail_at(path, root["dtype"], "unknown dtype '" + d + "'");
    if (s.model.quantization && s.model.quantization->method == QuantMethod::kFbgemmFp8 &&
        *s.dtype == DType::kFloat16) {
      fail_at(path, root["dtype"],
              "You cannot use FP8 with dtype=torch.float16. We recommend you passing dtype=torch.bfloat16 "
              "(transformers' fbgemm_fp8 quantizer refuses float16)");
    }
    if (s.model.quantization && (!is_floating(*s.dtype) || *s.dtype == DType::kFloat8)) {
      fail_at(path, root["dtype"],
              "dtype " + d + " with a quantized checkpoint (" + quant_summary(*s.model.quantization) +
                  "): the dtype is the load dtype of its unquantized modules (float16, bfloat16 or float32)");
    }
  }
  if (root["max_memory"].IsDefined() && !root["max_memory"].IsNull()) {
    s.max_memory = parse_max_memory_node(root["max_memory"], path);
  }
  if (root["no_split_module_classes"].IsDefined()) {
    s.no_split_given = true;
    const YAML::Node ns = root["no_split_module_classes"];
    if (ns.IsNull() || (ns.IsScalar() && ns.Scalar() == "none")) {
      s.no_split = std::nullopt;  // accelerate's None
    } else if (ns.IsScalar()) {
      s.no_split = std::vector<std::string>{ns.Scalar()};
    } else if (ns.IsSequence()) {
      std::vector<std::string> classes;
      for (const auto& c : ns) classes.push_back(yaml_string(path, c, "no_split_module_classes"));
      s.no_split = std::move(classes);
    } else {
      fail_at(path, ns, "no_split_module_classes: expected a list of class names or null");
    }
  }
  auto read_choice = [&](const char* key, std::string& out, std::initializer_list<const char*> allowed) {
    const YAML::Node n = root[key];
    if (!n.IsDefined() || n.IsNull()) return;
    out = yaml_string(path, n, key);
    for (const char* a : allowed) {
      if (out == a) return;
    }
    std::string list;
    for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    fail_at(path, n, std::string(key) + ": unknown value '" + out + "' (one of: " + list + ")");
  };
  read_choice("entry", s.entry, {"infer_auto_device_map", "from_pretrained"});
  read_choice("strategy", s.strategy, {"auto", "balanced", "balanced_low_0", "sequential"});
  read_choice("pipeline", s.pipeline, {"transformers_v5", "transformers_v4_accelerate", "v5", "v4", "accelerate"});

  if (root["device_maps"].IsDefined() && !root["device_maps"].IsNull()) {
    const YAML::Node maps = root["device_maps"];
    if (!maps.IsMap()) fail_at(path, maps, "device_maps: expected a mapping name -> device map");
    for (const auto& kv : maps) {
      NamedDeviceMap m;
      m.name = yaml_string(path, kv.first, "device map name");
      // A hand-written map must not hide a built-in strategy of the same name.
      static const char* kBuiltins[] = {"auto", "balanced", "balanced_low_0", "sequential",
                                        "cpu",  "disk",     "optimal",        "infer_auto_device_map"};
      for (const char* b : kBuiltins) {
        if (m.name == b)
          fail_at(path, kv.first, "device_maps: '" + m.name + "' is a built-in strategy; give the map another name");
      }
      m.line = kv.first.Mark().line >= 0 ? kv.first.Mark().line + 1 : 0;
      m.entries = parse_device_map_node(kv.second, path, &m.entry_lines);
      s.device_maps.push_back(std::move(m));
    }
  }
  if (root["expected"].IsDefined()) s.expected = root["expected"];
  return s;
}

}  // namespace dmap
