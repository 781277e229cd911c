// The module slots of a model and the greedy run loop (see executor.h).
#include "exec/executor.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace dmap::exec {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

std::vector<ModuleTime> module_slots(const ExecConfig& cfg) {
  std::vector<ModuleTime> out;
  out.push_back({"model.embed_tokens", 0, {}});
  const std::vector<std::string> modules = layer_modules(cfg);
  for (int64_t l = 0; l < cfg.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const auto& m : modules) out.push_back({p + m, 0, {}});
  }
  out.push_back({"model.norm", 0, {}});
  out.push_back({"lm_head", 0, {}});
  return out;
}

GenerateResult generate(Executor& model, const std::vector<int32_t>& prompt, int64_t P, int64_t new_tokens,
                        const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t B = model.options().batch, V = model.config().vocab;
  DMAP_CHECK(static_cast<int64_t>(prompt.size()) == B * P, "prompt must hold batch x prompt_len ids");
  GenerateResult r;
  r.tokens.assign(B, {});
  std::vector<float> logits(static_cast<size_t>(B * V));
  auto argmax = [&](int64_t b) {
    const float* row = logits.data() + b * V;
    return static_cast<int32_t>(std::max_element(row, row + V) - row);
  };
  model.begin_phase(true);
  auto t0 = Clock::now();
  model.forward(prompt.data(), P, 0, logits.data());
  r.prefill_s = seconds_since(t0);
  r.first_logits = logits;
  std::vector<int32_t> next(B);
  for (int64_t b = 0; b < B; ++b) {
    next[b] = argmax(b);
    r.tokens[b].push_back(next[b]);
  }
  if (progress) progress(1, new_tokens);
  for (int64_t step = 1; step < new_tokens; ++step) {
    model.begin_phase(false);
    t0 = Clock::now();
    model.forward(next.data(), 1, P + step - 1, logits.data());
    r.decode_s.push_back(seconds_since(t0));
    for (int64_t b = 0; b < B; ++b) {
      next[b] = argmax(b);
      r.tokens[b].push_back(next[b]);
    }
    if (progress) progress(step + 1, new_tokens);
  }
  return r;
}

}  // namespace dmap::exec
