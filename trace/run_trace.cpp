// The trace of one `dmap run` (see run_trace.h).
#include "trace/run_trace.h"

#include <filesystem>

#include "core/error.h"
#include "exec/device/device_model.h"
#include "exec/device/emulated.h"
#include "trace/executor_trace.h"
#include "trace/gpu_trace.h"
#include "trace/trace.h"
#ifdef DMAP_HAVE_CUPTI
#include "trace/cupti_tracer.h"
#endif

namespace dmap::trace {

struct RunTracer::Impl {
  std::string path;
  exec::Backend backend;
#ifdef DMAP_HAVE_CUPTI
  std::unique_ptr<CuptiTracer> cupti;
  std::unique_ptr<CuptiModuleObserver> observer;
#endif
};

RunTracer::RunTracer(std::string path, exec::Backend backend) : impl_(std::make_unique<Impl>()) {
  impl_->path = std::move(path);
  impl_->backend = backend;
  if (backend == exec::Backend::kCuda) {
#ifdef DMAP_HAVE_CUPTI
    impl_->cupti = std::make_unique<CuptiTracer>();
    impl_->observer = std::make_unique<CuptiModuleObserver>(*impl_->cupti);
#else
    throw RuntimeFailure("--trace of a CUDA run needs CUPTI, and this dmap was built without it");
#endif
  }
}

RunTracer::~RunTracer() = default;

void RunTracer::attach(exec::RunPlan& plan) {
#ifdef DMAP_HAVE_CUPTI
  if (impl_->cupti) {
    plan.observer = impl_->observer.get();
    CuptiTracer* t = impl_->cupti.get();
    plan.before_run = [t] { t->start(); };  // the scratch prefills stay out of the trace
  }
#else
  (void)plan;
#endif
}

std::vector<std::string> RunTracer::write(const exec::Executor& model) {
  namespace fs = std::filesystem;
  const fs::path p(impl_->path);
  const std::string raw = (p.parent_path() / (p.stem().string() + ".gpu.json")).string();
  std::vector<std::string> written;
  GpuTrace trace;
  switch (impl_->backend) {
    case exec::Backend::kCuda:
#ifdef DMAP_HAVE_CUPTI
      trace = impl_->cupti->stop();
#endif
      break;
    case exec::Backend::kEmulated: {
      const auto& d = dynamic_cast<const exec::DeviceModel&>(model);
      trace = emulated_trace(dynamic_cast<const exec::EmulatedDevice&>(d.runtime()).timeline());
      break;
    }
    case exec::Backend::kCpu:
      trace = host_trace(model.events(), model.module_times(), "dmap run (CPU executor)");
      break;
  }
  if (impl_->backend != exec::Backend::kCpu) {
    write_text_file(raw, gpu_trace_json(trace));
    written.push_back(raw);
  }
  write_text_file(impl_->path, chrome_trace(trace).json());
  written.push_back(impl_->path);
  return written;
}

}  // namespace dmap::trace
