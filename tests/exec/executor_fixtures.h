// Test helpers shared by the executor tests of GPU placements (the emulated device in
// tests/exec/device_test.cpp, CUDA in tests/gpu/cuda_exec_test.cpp): the tests/data fixtures, a
// placement of whole units, greedy runs, and the comparison against the CPU executor.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/model_spec.h"
#include "exec/model.h"
#include "exec/placement.h"

namespace dmap::exec::testing {

namespace fs = std::filesystem;

inline double rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

struct Loaded {
  ExecConfig cfg;
  std::shared_ptr<const Checkpoint> ck;
  std::unique_ptr<ModelWeights> w;
};

inline Loaded load(const std::string& name) {
  // DMAP_SOURCE_DIR in the environment: a build carried to a GPU machine finds the fixtures there.
  const char* env = std::getenv("DMAP_SOURCE_DIR");
  const fs::path dir = fs::path(env ? env : DMAP_SOURCE_DIR) / "tests" / "data" / name;
  Loaded l;
  l.cfg = exec_config(load_model_spec((dir / "config.json").string()));
  l.ck = std::make_shared<const Checkpoint>(Checkpoint::open(dir.string()));
  l.w = std::make_unique<ModelWeights>(ModelWeights::from_checkpoint(l.cfg, l.ck));
  return l;
}

// units: [embed, layers..., norm, head]; each tensor stored where its unit is mapped.
inline Placement placement(const ExecConfig& cfg, const ModelWeights& w, const std::vector<Device>& units,
                           Semantics s) {
  Placement p;
  p.semantics = s;
  p.units = units;
  for (const auto& d : units) {
    if (d.is_gpu()) {
      p.main_gpu = d.index;
      break;
    }
  }
  for (const auto& n : w.names()) {
    size_t u = 0;
    if (n == "model.norm.weight") {
      u = static_cast<size_t>(cfg.layers) + 1;
    } else if (n == "lm_head.weight") {
      u = static_cast<size_t>(cfg.layers) + 2;
    } else if (n.rfind("model.layers.", 0) == 0) {
      u = 1 + std::stoul(n.substr(13));
    }
    p.tensor_home[n] = units[u];
  }
  return p;
}

struct Run {
  std::vector<std::vector<float>> logits;  // per forward
  std::vector<int32_t> tokens;
};

// Greedy decode of the batch's prompts (batch x P ids); logits and tokens of sequence 0 are
// compared, and of the others through `all_logits`.
inline Run run(Executor& m, const std::vector<int32_t>& prompts, int steps) {
  Run r;
  const int64_t V = m.config().vocab, B = m.options().batch;
  const int64_t P = static_cast<int64_t>(prompts.size()) / B;
  std::vector<float> logits(static_cast<size_t>(B * V));
  m.begin_phase(true);
  m.forward(prompts.data(), P, 0, logits.data());
  int64_t pos = P;
  std::vector<int32_t> next(static_cast<size_t>(B));
  for (int s = 0; s <= steps; ++s) {
    r.logits.push_back(logits);
    for (int64_t b = 0; b < B; ++b) {
      next[b] = static_cast<int32_t>(std::max_element(logits.begin() + b * V, logits.begin() + (b + 1) * V) -
                                     (logits.begin() + b * V));
      r.tokens.push_back(next[b]);
    }
    if (s == steps) break;
    m.begin_phase(false);
    m.forward(next.data(), 1, pos++, logits.data());
  }
  return r;
}

// Logits within the dtype's tolerance at every step; tokens equal wherever the CPU's choice is
// not a near tie (a near tie may legitimately flip in 16-bit arithmetic).
inline void compare(const Run& gpu, const Run& cpu, double tol) {
  REQUIRE(gpu.logits.size() == cpu.logits.size());
  const size_t B = cpu.tokens.size() / cpu.logits.size();
  const size_t V = cpu.logits[0].size() / B;
  for (size_t s = 0; s < cpu.logits.size(); ++s) {
    INFO("forward " << s);
    CHECK(rel_err(gpu.logits[s], cpu.logits[s]) < tol);
    bool diverged = false;
    for (size_t b = 0; b < B; ++b) {
      INFO("sequence " << b);
      std::vector<float> sorted(cpu.logits[s].begin() + static_cast<long>(b * V),
                                cpu.logits[s].begin() + static_cast<long>((b + 1) * V));
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
      const size_t k = s * B + b;
      if (sorted[0] - sorted[1] > 1e-2f * std::max(1.0f, std::fabs(sorted[0]))) CHECK(gpu.tokens[k] == cpu.tokens[k]);
      diverged |= gpu.tokens[k] != cpu.tokens[k];
    }
    if (diverged) break;  // later steps saw different inputs
  }
}

inline const std::vector<int32_t> kPrompt = {1, 15, 27, 3, 99, 42, 7};
inline const std::vector<int32_t> kTwoPrompts = {1, 15, 27, 3, 99, 42, 7, 5, 88, 2, 61, 13, 40, 9};  // batch 2 x 7

}  // namespace dmap::exec::testing
