// A seeded generator of simulator scenarios over the shipped models and hardware presets (1-8
// GPUs, caps, RAM that forces disk, tied and untied heads, batch, prompt and token counts),
// each as self-contained YAML text. Shared by the optimal search's property test and its
// benchmark over the same scenarios.
#pragma once

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace dmap::sim::testing {

// The stems of the YAML files in `dir` (of the given `kind:` when not empty), sorted.
inline std::vector<std::string> presets(const std::string& dir, const std::string& kind) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".yaml") continue;
    if (kind.empty()) {
      out.push_back(e.path().stem().string());
    } else {
      const YAML::Node n = YAML::LoadFile(e.path().string());
      if (n["kind"] && n["kind"].Scalar() == kind) out.push_back(e.path().stem().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline std::string flow(const YAML::Node& n) {
  YAML::Emitter e;
  e.SetMapFormat(YAML::Flow);
  e.SetSeqFormat(YAML::Flow);
  e << n;
  return e.c_str();
}

// One random scenario as YAML text (self-contained: the model inline); `configs` is the
// project's configs/ folder.
inline std::string generate(std::mt19937_64& rng, const std::string& configs, const std::vector<std::string>& models,
                            const std::vector<std::string>& gpus, const std::vector<std::string>& hosts, int index) {
  auto pick = [&](const auto& v) { return v[rng() % v.size()]; };
  auto uniform = [&](double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); };
  YAML::Node model = YAML::LoadFile(configs + "/models/" + pick(models) + ".yaml");
  const std::string mt = model["model_type"].Scalar();
  if (mt == "llama" || mt == "mistral" || mt == "qwen2" || mt == "gemma" || mt == "opt" || mt == "gpt2") {
    model["tie_word_embeddings"] = (rng() % 2) == 0;
  }
  const int64_t max_pos = model["max_position_embeddings"] ? model["max_position_embeddings"].as<int64_t>()
                          : model["n_positions"]           ? model["n_positions"].as<int64_t>()
                          : model["seq_length"]            ? model["seq_length"].as<int64_t>()
                                                           : 2048;
  const int ngpu = 1 + static_cast<int>(rng() % 8);
  std::ostringstream y;
  y << "id: generated_" << index << "\n";
  y << "model: " << flow(model) << "\n";
  y << "hardware:\n  host: " << pick(hosts) << "\n  gpus: [";
  std::string gpu0;
  for (int i = 0; i < ngpu; ++i) {
    const std::string g = pick(gpus);
    if (i == 0) gpu0 = g;
    y << (i ? ", " : "") << g;
  }
  y << "]\n  link: " << (rng() % 2 ? "pcie4_x16" : "pcie3_x16")
    << "\n  disk: " << (rng() % 2 ? "nvme_gen4" : "nvme_gen3") << "\n";
  if (rng() % 4 == 0) {  // another program on GPU 0: up to 6 GiB, and under half of a small card
    const YAML::Node g = YAML::LoadFile(configs + "/hardware/" + gpu0 + ".yaml");
    const std::string mem = g["memory"] ? g["memory"].Scalar() : "";
    const double gib =
        mem.size() > 3 && mem.compare(mem.size() - 3, 3, "GiB") == 0 ? std::stod(mem.substr(0, mem.size() - 3)) : 80.0;
    y << "  gpu_memory_in_use: {0: " << static_cast<int>(std::min(uniform(0.5, 6), gib / 2)) << "GiB}\n";
  }
  if (rng() % 5 == 0) y << "  page_cache: false\n";
  const int64_t prompt = std::min<int64_t>(max_pos / 2, 1 + static_cast<int64_t>(std::exp(uniform(2.0, 8.5))));
  const int64_t new_tokens = std::min<int64_t>(max_pos - prompt, 1 + static_cast<int64_t>(rng() % 200));
  const char* dtypes[] = {"float16", "bfloat16", "float32"};
  y << "workload: {batch: " << 1 + rng() % 4 << ", prompt: " << prompt << ", new_tokens: " << new_tokens
    << ", dtype: " << dtypes[rng() % 3] << "}\n";
  if (rng() % 2 == 0) {  // caps: some GPUs, sometimes RAM small enough to force disk
    y << "max_memory: {";
    for (int i = 0; i < ngpu; ++i) {
      if (rng() % 2) y << i << ": " << static_cast<int>(uniform(1, 40)) << "GiB, ";
    }
    y << "cpu: " << static_cast<int>(uniform(2, 96)) << "GiB}\n";
  }
  y << "strategies: [auto, balanced, sequential, cpu, disk, optimal]\n";
  return y.str();
}

}  // namespace dmap::sim::testing
