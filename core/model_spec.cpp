// Parsing model descriptions.
#include "core/model_spec.h"

#include "core/gguf_reader.h"

#include <filesystem>

#include "core/error.h"
#include "core/yaml_io.h"

namespace dmap {

bool ConfigView::has(const std::string& key) const {
  if (!config_.IsMap()) return false;
  YAML::Node n = config_[key];
  return n.IsDefined() && !n.IsNull();
}

YAML::Node ConfigView::find(std::initializer_list<const char*> keys) const {
  if (!config_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  for (const char* k : keys) {
    YAML::Node n = config_[k];
    if (n.IsDefined() && !n.IsNull()) return n;
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

int64_t ConfigView::integer(std::initializer_list<const char*> keys) const {
  YAML::Node n = find(keys);
  if (!n.IsDefined()) fail_at(file_, n, config_, std::string("missing config field '") + *keys.begin() + "'");
  return yaml_int(file_, n, std::string("config field '") + *keys.begin() + "'");
}

int64_t ConfigView::integer_or(std::initializer_list<const char*> keys, int64_t fallback) const {
  YAML::Node n = find(keys);
  if (!n.IsDefined()) return fallback;
  return yaml_int(file_, n, std::string("config field '") + *keys.begin() + "'");
}

double ConfigView::number_or(std::initializer_list<const char*> keys, double fallback) const {
  YAML::Node n = find(keys);
  if (!n.IsDefined()) return fallback;
  return yaml_double(file_, n, std::string("config field '") + *keys.begin() + "'");
}

bool ConfigView::boolean_or(std::initializer_list<const char*> keys, bool fallback) const {
  YAML::Node n = find(keys);
  if (!n.IsDefined()) return fallback;
  return yaml_bool(file_, n, std::string("config field '") + *keys.begin() + "'");
}

std::optional<std::string> ConfigView::string(const char* key) const {
  YAML::Node n = find({key});
  if (!n.IsDefined()) return std::nullopt;
  return yaml_string(file_, n, std::string("config field '") + key + "'");
}

namespace {

// The largest value dmap accepts for a size or count in a config: far beyond any real model,
// and small enough that every byte count derived from them fits in 63 bits (a tensor is at
// most 2^24 x 2^20 elements, a model at most 2^14 layers of them).
int64_t config_limit(const std::string& key) {
  static const std::pair<const char*, int64_t> kLimits[] = {
      {"vocab_size", int64_t{1} << 24},
      {"padded_vocab_size", int64_t{1} << 24},
      {"num_hidden_layers", int64_t{1} << 14},
      {"n_layer", int64_t{1} << 14},
      {"num_layers", int64_t{1} << 14},
      {"num_attention_heads", int64_t{1} << 14},
      {"n_head", int64_t{1} << 14},
      {"num_key_value_heads", int64_t{1} << 14},
      {"multi_query_group_num", int64_t{1} << 14},
      {"max_position_embeddings", int64_t{1} << 31},
      {"n_positions", int64_t{1} << 31},
      {"seq_length", int64_t{1} << 31},
  };
  for (const auto& [k, limit] : kLimits) {
    if (key == k) return limit;
  }
  return int64_t{1} << 20;  // widths: hidden, intermediate, head_dim, experts, ...
}

}  // namespace

int64_t ConfigView::positive(std::initializer_list<const char*> keys) const {
  int64_t v = integer(keys);
  if (v <= 0) fail_at(file_, find(keys), std::string("config field '") + *keys.begin() + "' must be positive");
  const YAML::Node n = find(keys);
  for (const char* k : keys) {  // the key that gave the value names the limit
    if (config_[k].IsDefined() && !config_[k].IsNull()) {
      const int64_t limit = config_limit(k);
      if (v > limit) {
        fail_at(file_, n,
                std::string("config field '") + k + "' = " + std::to_string(v) + " is beyond dmap's limit of " +
                    std::to_string(limit));
      }
      break;
    }
  }
  return v;
}

int64_t ConfigView::positive_or(std::initializer_list<const char*> keys, int64_t fallback) const {
  YAML::Node n = find(keys);
  if (!n.IsDefined()) return fallback;
  return positive(keys);
}

namespace {

std::vector<std::string> string_list(const std::string& file, const YAML::Node& node, const std::string& what) {
  std::vector<std::string> out;
  if (node.IsNull()) return out;
  if (node.IsScalar()) return {node.Scalar()};
  if (!node.IsSequence()) fail_at(file, node, what + ": expected a list of class names");
  for (const YAML::Node& item : node) out.push_back(yaml_string(file, item, what));
  return out;
}

}  // namespace

ModelSpec model_spec_from_node(const YAML::Node& node, const std::string& file) {
  if (!node.IsMap()) fail_at(file, node, "a model description must be a mapping (config.json or model YAML)");
  ModelSpec spec;
  spec.source = file;
  // Note: yaml-cpp's Node::operator= rebinds the *shared* node it refers to, which would
  // rewrite the caller's document; nodes are therefore only ever copy-constructed here.
  const bool nested = node["config"].IsDefined() && node["config"].IsMap();
  const YAML::Node config = nested ? node["config"] : node;
  spec.config = ConfigView(config, file);

  const bool top_type = node["model_type"].IsDefined() && !node["model_type"].IsNull();
  const YAML::Node mt = top_type ? node["model_type"] : config["model_type"];
  if (!mt.IsDefined() || mt.IsNull()) fail_at(file, node, "missing 'model_type' in the model description");
  spec.model_type = yaml_string(file, mt, "model_type");

  if (node["name"].IsDefined() && !node["name"].IsNull()) spec.name = yaml_string(file, node["name"], "name");
  if (node["no_split_modules"].IsDefined()) {
    spec.no_split_modules = string_list(file, node["no_split_modules"], "no_split_modules");
  }
  if (node["tied_weights"].IsDefined() && !node["tied_weights"].IsNull()) {
    const YAML::Node tw = node["tied_weights"];
    if (!tw.IsMap()) fail_at(file, tw, "tied_weights: expected a mapping target -> source");
    std::vector<std::pair<std::string, std::string>> ties;
    for (const auto& kv : tw) {
      ties.emplace_back(yaml_string(file, kv.first, "tied_weights key"),
                        yaml_string(file, kv.second, "tied_weights value"));
    }
    spec.tied_weights = std::move(ties);
  }
  for (const char* key : {"torch_dtype", "dtype"}) {
    YAML::Node d = config[key];
    if (d.IsDefined() && d.IsScalar()) {
      if (auto t = parse_dtype(d.Scalar())) {
        spec.checkpoint_dtype = *t;
        break;
      }
    }
  }
  spec.quantization = checkpoint_quantization(config, file);
  return spec;
}

void set_user_quantization(ModelSpec& spec, const YAML::Node& node, const std::string& file) {
  QuantizationConfig user = read_quantization_config(node, file, /*pre_quantized=*/false);
  spec.quantization = spec.quantization ? merge_quantization_configs(*spec.quantization, user, node) : user;
}

ModelSpec load_model_spec(const std::string& path) {
  std::string file = path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    file = (std::filesystem::path(path) / "config.json").string();
    if (!std::filesystem::exists(file, ec)) throw InputError(path, 0, 0, "checkpoint folder has no config.json");
  }
  if (std::filesystem::path(file).extension() == ".gguf") {
    ModelSpec g = gguf_model_spec(read_gguf(file));
    if (g.name.empty()) g.name = std::filesystem::path(file).stem().string();
    return g;
  }
  ModelSpec spec = model_spec_from_node(load_yaml_file(file), file);
  if (spec.name.empty()) {
    std::filesystem::path p(file);
    spec.name = p.filename() == "config.json" ? p.parent_path().filename().string() : p.stem().string();
  }
  return spec;
}

}  // namespace dmap
