// Scenario loading for the simulator.
#include "sim/sim_scenario.h"

#include "sim/quant_cost.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "core/yaml_io.h"

namespace dmap::sim {

namespace fs = std::filesystem;

const std::vector<std::string>& builtin_strategies() {
  static const std::vector<std::string> k = {"auto", "balanced", "balanced_low_0", "sequential",
                                             "cpu",  "disk",     "n_cpu_moe",      "optimal"};
  return k;
}

MaxMemory derived_max_memory(const Hardware& hw) {
  MaxMemory mm;
  for (size_t i = 0; i < hw.gpus.size(); ++i) {
    const auto& g = hw.gpus[i];
    const Bytes in_use =
        hw.gpu_memory_in_use.count(static_cast<int>(i)) ? hw.gpu_memory_in_use.at(static_cast<int>(i)) : 0;
    mm.set(Device::gpu(static_cast<int>(i)), bytes_to_bits(std::max<Bytes>(0, g.memory - g.runtime_context - in_use)));
  }
  mm.set(Device::cpu(), bytes_to_bits(hw.host.ram - hw.host.reserved_ram));
  return mm;
}

namespace {

int64_t positive_int(const std::string& file, const YAML::Node& n, const std::string& what, int64_t limit) {
  const int64_t v = yaml_int(file, n, what);
  if (v <= 0) fail_at(file, n, what + ": must be a positive integer, found " + n.Scalar());
  if (v > limit) fail_at(file, n, what + ": " + n.Scalar() + " is beyond dmap's limit of " + std::to_string(limit));
  return v;
}

// Workload limits: far beyond real use, small enough that every KV-cache and activation size
// derived from them (with the model limits of ConfigView) fits in 63 bits.
constexpr int64_t kMaxBatch = int64_t{1} << 16;
constexpr int64_t kMaxTokens = int64_t{1} << 30;

}  // namespace

SimScenario load_sim_scenario(const std::string& path, const std::string& config_dir,
                              const std::optional<std::string>& calibration_override) {
  SimScenario s;
  s.base = load_scenario(path, (fs::path(config_dir) / "models").string());
  const YAML::Node root = load_yaml_file(path);
  const std::string hw_dir = (fs::path(config_dir) / "hardware").string();
  static const std::vector<std::string> known = {
      "id",       "title",      "model",     "dtype",       "max_memory",        "no_split_module_classes",
      "entry",    "strategy",   "pipeline",  "device_maps", "expected",          "hardware",
      "workload", "strategies", "semantics", "calibration", "crossover_budgets", "quantization_config",
      "gguf",     "runtimes"};
  check_known_keys(path, root, known, "scenario");
  if (root["title"].IsDefined()) s.title = yaml_string(path, root["title"], "title");
  s.hardware = parse_hardware(root["hardware"], path, hw_dir);
  // transformers dequantizes an FP8 / MXFP4 checkpoint while loading when GPU 0 cannot run its
  // kernels (validate_environment): then the model loads in its dtype.
  if (s.base.model.quantization && !s.base.model.quantization->dequantize) {
    const double cc = s.hardware.gpus.empty() ? 0.0 : s.hardware.gpus[0].compute_capability;
    if (dequantized_on(*s.base.model.quantization, cc)) {
      s.base.model.quantization->dequantize = true;
      s.quantization_note =
          quant_method_key(s.base.model.quantization->method) + " checkpoint dequantized to " +
          std::string(dtype_name(s.base.model.checkpoint_dtype.value_or(DType::kBFloat16))) + " while loading: " +
          (s.hardware.gpus.empty() ? std::string("no GPU")
                                   : "GPU 0 has compute capability " + std::to_string(cc).substr(0, 3)) +
          " (transformers needs " + (s.base.model.quantization->method == QuantMethod::kFp8 ? "8.9" : "7.5") + ")";
    }
  }
  if (s.base.max_memory && root["max_memory"].IsMap()) {  // a cap for a GPU the hardware lacks
    for (const auto& kv : root["max_memory"]) {
      const auto d = parse_device(kv.first.IsScalar() ? kv.first.Scalar() : "");
      if (d && d->is_gpu() && d->index >= static_cast<int>(s.hardware.gpus.size())) {
        fail_at(path, kv.first,
                "max_memory: GPU " + std::to_string(d->index) + " is not one of the " +
                    std::to_string(s.hardware.gpus.size()) + " GPU(s) of this hardware");
      }
    }
  }
  if (s.base.max_memory) {  // the user's caps bound every placement, not only the planner's
    for (const auto& [d, bits] : s.base.max_memory->entries()) {
      if (d.is_gpu()) s.hardware.gpu_cap[d.index] = bits / kBitsPerByte;
      if (d.kind == Device::Kind::kCpu) s.hardware.host_cap = bits / kBitsPerByte;
    }
  }

  const YAML::Node wl = root["workload"];
  if (!wl.IsDefined() || !wl.IsMap()) fail_at(path, wl, root, "scenario needs 'workload: {batch, prompt, new_tokens}'");
  check_known_keys(path, wl, {"batch", "prompt", "new_tokens", "dtype"}, "workload");
  if (wl["batch"].IsDefined()) s.workload.batch = positive_int(path, wl["batch"], "workload.batch", kMaxBatch);
  if (!wl["prompt"].IsDefined()) fail_at(path, wl, "workload: missing 'prompt' (tokens in the prompt)");
  s.workload.prompt = positive_int(path, wl["prompt"], "workload.prompt", kMaxTokens);
  if (!wl["new_tokens"].IsDefined()) fail_at(path, wl, "workload: missing 'new_tokens'");
  s.workload.new_tokens = positive_int(path, wl["new_tokens"], "workload.new_tokens", kMaxTokens);
  std::optional<DType> dtype = s.base.dtype;
  if (wl["dtype"].IsDefined()) {
    const std::string d = yaml_string(path, wl["dtype"], "workload.dtype");
    auto dt = parse_dtype(d);
    if (!dt) fail_at(path, wl["dtype"], "workload.dtype: unknown dtype '" + d + "'");
    if (s.base.dtype && *s.base.dtype != *dt)
      fail_at(path, wl["dtype"], "workload.dtype differs from the scenario's dtype");
    dtype = dt;
  }
  s.workload.dtype = dtype.value_or(s.base.model.checkpoint_dtype.value_or(DType::kFloat32));
  if (!s.base.dtype) s.base.dtype = s.workload.dtype;  // the planner sizes the load dtype
  const int64_t max_pos = s.base.model.config.integer_or({"max_position_embeddings", "n_positions", "seq_length"}, 0);
  if (max_pos > 0 && s.workload.prompt + s.workload.new_tokens > max_pos) {
    fail_at(path, wl,
            "workload: prompt + new_tokens = " + std::to_string(s.workload.prompt + s.workload.new_tokens) +
                " exceeds the model's " + std::to_string(max_pos) + " positions");
  }

  // Strategies: the built-ins plus the file's hand-written maps.
  std::vector<std::string> maps;
  for (const auto& m : s.base.device_maps) maps.push_back(m.name);
  const YAML::Node st = root["strategies"];
  if (st.IsDefined() && !st.IsNull()) {
    if (!st.IsSequence()) fail_at(path, st, "strategies: expected a list");
    for (const auto& n : st) {
      const std::string name = yaml_string(path, n, "strategy");
      const auto& b = builtin_strategies();
      if (std::find(b.begin(), b.end(), name) == b.end() && std::find(maps.begin(), maps.end(), name) == maps.end()) {
        std::string list;
        for (const auto& x : b) list += x + ", ";
        fail_at(path, n,
                "strategies: unknown strategy '" + name + "' (one of: " + list + "or a name under device_maps)");
      }
      if (std::find(s.strategies.begin(), s.strategies.end(), name) != s.strategies.end()) {
        fail_at(path, n, "strategies: '" + name + "' listed twice");
      }
      s.strategies.push_back(name);
    }
  } else {
    s.strategies = {"auto", "balanced", "balanced_low_0", "sequential", "cpu", "n_cpu_moe", "optimal"};
    for (const auto& m : maps) s.strategies.push_back(m);
  }
  const YAML::Node se = root["semantics"];
  if (se.IsDefined() && !se.IsNull()) {
    if (!se.IsSequence()) fail_at(path, se, "semantics: expected a list");
    for (const auto& n : se) {
      const std::string name = yaml_string(path, n, "semantics");
      auto v = parse_semantics(name);
      if (!v)
        fail_at(path, n, "semantics: unknown '" + name + "' (accelerate, prefetch, in-place, cpu, routed-prefetch)");
      s.semantics.push_back(*v);
    }
  } else {
    s.semantics = {Semantics::kAccelerate, Semantics::kPrefetch, Semantics::kInPlace};
    // A GGUF file runs under llama.cpp: layers computed where they live (-ngl, --n-cpu-moe).
    if (!s.base.model.gguf_file_type.empty() || s.base.model.gguf) s.semantics = {Semantics::kInPlace};
  }
  if (const YAML::Node rt = root["runtimes"]; rt.IsDefined() && !rt.IsNull()) {
    if (!rt.IsSequence() || rt.size() == 0)
      fail_at(path, rt, "runtimes: expected a list (transformers, llama.cpp, dmap)");
    std::vector<Runtime> listed;
    for (const auto& n : rt) {
      const std::string name = yaml_string(path, n, "runtimes");
      auto v = parse_runtime(name);
      if (!v) fail_at(path, n, "runtimes: unknown '" + name + "' (transformers, llama.cpp, dmap)");
      listed.push_back(*v);
    }
    for (Runtime r : all_runtimes()) {
      if (std::find(listed.begin(), listed.end(), r) != listed.end()) s.runtimes.push_back(r);
    }
  }
  std::optional<std::string> cal = calibration_override;
  if (!cal && root["calibration"].IsDefined() && !root["calibration"].IsNull()) {
    const std::string rel = yaml_string(path, root["calibration"], "calibration");
    fs::path p(rel);
    if (p.is_relative()) {
      const fs::path beside = fs::path(path).parent_path() / p;
      const fs::path in_configs = fs::path(config_dir) / "calibrations" / (rel + ".yaml");
      std::error_code ec;
      p = fs::exists(beside, ec) ? beside : (fs::exists(in_configs, ec) ? in_configs : beside);
    }
    std::error_code ec;
    if (!fs::exists(p, ec)) fail_at(path, root["calibration"], "calibration file not found: " + p.string());
    cal = p.string();
  }
  if (cal) s.calibration = load_calibration(*cal);
  const YAML::Node cb = root["crossover_budgets"];
  if (cb.IsDefined() && !cb.IsNull()) {
    if (!cb.IsSequence()) fail_at(path, cb, "crossover_budgets: expected a list of sizes");
    for (const auto& n : cb) {
      auto b = n.IsScalar() ? parse_memory_size(n.Scalar()) : std::nullopt;
      if (!b || *b <= 0) fail_at(path, n, "crossover_budgets: cannot read size (use e.g. 8GiB)");
      s.crossover_budgets.push_back(*b);
    }
  }
  if (s.base.entry != "from_pretrained" && s.base.entry != "infer_auto_device_map") {
    fail_at(path, root["entry"], "entry: unknown");
  }
  return s;
}

}  // namespace dmap::sim
