// The shared run loop (see run.h).
#include "exec/run.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "core/stats.h"
#include "exec/cpu_model.h"
#include "exec/device/device_model.h"

namespace dmap::exec {

namespace {
// The emulated device's times: the sum of the modules' model-clock times per forward (the host's
// wall time says nothing of a GPU).
void use_model_clock(const Executor& model, GenerateResult& r) {
  r.prefill_s = 0;
  std::fill(r.decode_s.begin(), r.decode_s.end(), 0.0);
  for (const auto& m : model.module_times()) {
    r.prefill_s += m.prefill_s;
    for (size_t i = 0; i < r.decode_s.size() && i < m.decode_s.size(); ++i) r.decode_s[i] += m.decode_s[i];
  }
}
}  // namespace

RunOutcome run_placement(const ExecConfig& cfg, const ModelWeights& weights, const Placement& placement,
                         Backend backend, const RunOptions& opt, const RunPlan& plan) {
  using Clock = std::chrono::steady_clock;
  DMAP_CHECK(plan.prompt_len > 0 && plan.new_tokens >= 1, "a run needs a prompt and at least one new token");
  DMAP_CHECK(static_cast<int64_t>(plan.ids.size()) == opt.batch * plan.prompt_len, "ids must be batch x prompt_len");
  std::vector<double> prefills;
  if (plan.prefill_reps > 1 || plan.warm_up) {
    RunOptions wopt = opt;
    wopt.record_events = false;
    wopt.drop_page_cache = plan.cold_prefill || opt.drop_page_cache;
    std::unique_ptr<Executor> scratch = make_executor(cfg, weights, placement, backend, wopt);
    std::vector<float> logits(static_cast<size_t>(opt.batch * cfg.vocab));
    for (int rep = 0; rep < std::max(1, plan.prefill_reps); ++rep) {
      const auto t0 = Clock::now();
      scratch->forward(plan.ids.data(), plan.prompt_len, 0, logits.data());
      if (rep > 0) prefills.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
  }
  if (plan.before_run) plan.before_run();
  RunOutcome out;
  out.executor = make_executor(cfg, weights, placement, backend, opt);
  Executor& model = *out.executor;
  if (plan.observer) {
    if (auto* d = dynamic_cast<DeviceModel*>(&model)) d->set_observer(plan.observer);
  }
  if (plan.cold_prefill) model.set_drop_page_cache(true);
  model.reserve(plan.prompt_len);  // the prefill is timed without first-touch page faults
  auto* steps = plan.time_steps ? dynamic_cast<CpuModel*>(&model) : nullptr;
  if (steps) steps->set_time_steps(true);
  double read_s0 = 0;
  auto progress = [&](int64_t done, int64_t total) {
    if (done == 1) {  // after the prefill
      if (steps) steps->reset_step_times();
      if (plan.cold_prefill) model.set_drop_page_cache(opt.drop_page_cache);
      read_s0 = model.disk_read_seconds();
      if (plan.after_prefill) plan.after_prefill();
    }
    if (plan.progress) plan.progress(done, total);
  };
  out.result = generate(model, plan.ids, plan.prompt_len, plan.new_tokens, progress);
  if (plan.observer) {
    if (auto* d = dynamic_cast<DeviceModel*>(&model)) d->set_observer(nullptr);
  }
  if (backend == Backend::kEmulated) {
    use_model_clock(model, out.result);
  } else if (!prefills.empty()) {
    prefills.push_back(out.result.prefill_s);
    out.result.prefill_s = median(prefills);
  }
  if (!out.result.decode_s.empty()) {
    const double n = static_cast<double>(out.result.decode_s.size());
    out.decode_disk_read_s = (model.disk_read_seconds() - read_s0) / n;
    if (steps) {
      for (const CpuModel::StepTime& st : steps->step_times()) {
        if (!st.step->weight.empty()) out.decode_weight_s[st.step->weight] += st.seconds / n;
      }
      steps->set_time_steps(false);
    }
  }
  return out;
}

}  // namespace dmap::exec
