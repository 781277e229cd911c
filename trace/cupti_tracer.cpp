// CUPTI Activity API tracer (see trace/cupti_tracer.h): buffer callbacks, record parsing for
// CUDA 13's record structs, external correlation per module push, and the host clock mapping.
#include "trace/cupti_tracer.h"

#include <cxxabi.h>
#include <pthread.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <cupti.h>

#include "core/error.h"

#ifndef DMAP_VERSION
#define DMAP_VERSION "unknown"
#endif

namespace dmap::trace {

namespace {

std::string cupti_error_text(CUptiResult r) {
  const char* s = nullptr;
  if (cuptiGetResultString(r, &s) != CUPTI_SUCCESS || s == nullptr)
    return std::string("CUPTI error ") + std::to_string(static_cast<int>(r));
  return s;
}

// Every CUPTI call goes through this check: failure -> RuntimeFailure naming the call.
#define DMAP_CUPTI_CHECK(call)                                                                                      \
  do {                                                                                                              \
    const CUptiResult dmap_cupti_r_ = (call);                                                                       \
    if (dmap_cupti_r_ != CUPTI_SUCCESS) {                                                                           \
      throw ::dmap::RuntimeFailure(std::string("CUPTI: ") + #call + " failed: " + cupti_error_text(dmap_cupti_r_)); \
    }                                                                                                               \
  } while (0)

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw RuntimeFailure(std::string("CUDA: ") + what + " failed: " + cudaGetErrorString(e));
}

// The activity kinds the tracer enables, in order (disabled in reverse).
constexpr CUpti_ActivityKind kKinds[] = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
                                         CUPTI_ACTIVITY_KIND_MEMSET, CUPTI_ACTIVITY_KIND_RUNTIME,
                                         CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION};
constexpr CUpti_ExternalCorrelationKind kExternalKind = CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0;

const char* copy_kind_name(uint8_t k) {
  switch (k) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "HtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "DtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOA: return "HtoA";
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOH: return "AtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOA: return "AtoA";
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOD: return "AtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOA: return "DtoA";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "DtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOH: return "HtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP: return "PtoP";
    default: return "unknown";
  }
}

const char* memory_kind_name(unsigned k) {
  switch (k) {
    case CUPTI_ACTIVITY_MEMORY_KIND_PAGEABLE: return "pageable";
    case CUPTI_ACTIVITY_MEMORY_KIND_PINNED: return "pinned";
    case CUPTI_ACTIVITY_MEMORY_KIND_DEVICE: return "device";
    case CUPTI_ACTIVITY_MEMORY_KIND_ARRAY: return "array";
    case CUPTI_ACTIVITY_MEMORY_KIND_MANAGED: return "managed";
    case CUPTI_ACTIVITY_MEMORY_KIND_DEVICE_STATIC: return "device_static";
    case CUPTI_ACTIVITY_MEMORY_KIND_MANAGED_STATIC: return "managed_static";
    default: return "unknown";
  }
}

std::string demangle(const char* name) {
  if (name == nullptr) return "(unnamed kernel)";
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (status != 0 || d == nullptr) return name;
  std::string out(d);
  std::free(d);
  return out;
}

// "cudaLaunchKernel_v7000" -> "cudaLaunchKernel" (CUPTI's callback names carry the API version).
std::string runtime_api_name(CUpti_CallbackId cbid) {
  const char* name = nullptr;
  if (cuptiGetCallbackName(CUPTI_CB_DOMAIN_RUNTIME_API, cbid, &name) != CUPTI_SUCCESS || name == nullptr) {
    return std::string("runtime api ") + std::to_string(cbid);
  }
  std::string s(name);
  const size_t v = s.rfind("_v");
  if (v != std::string::npos && v + 2 < s.size() && s.find_first_not_of("0123456789", v + 2) == std::string::npos)
    s.resize(v);
  return s;
}

// CUPTI's thread id convention: the low 32 bits of pthread_self() (as PyTorch's Kineto matches it).
uint32_t cupti_thread_id() { return static_cast<uint32_t>(static_cast<uint64_t>(pthread_self())); }

int64_t steady_ns(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// A simultaneous reading of steady_clock and CUPTI's clock (steady read on both sides, averaged).
struct ClockPair {
  int64_t steady = 0;
  int64_t cupti = 0;
};

ClockPair read_clock_pair() {
  const auto a = std::chrono::steady_clock::now();
  uint64_t c = 0;
  DMAP_CUPTI_CHECK(cuptiGetTimestamp(&c));
  const auto b = std::chrono::steady_clock::now();
  return {steady_ns(a) + (steady_ns(b) - steady_ns(a)) / 2, static_cast<int64_t>(c)};
}

std::string version_text(int v) {  // 13000 -> "13.0"
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// What one tracer collects (CuptiTracer::Impl is this; the C callbacks reach it via g_active).
struct TracerState {
  CuptiTracerOptions options;
  bool running = false;

  // Guarded by mu: what the buffer callbacks and push_module/add_host_range collect.
  std::mutex mu;
  std::vector<GpuActivity> activities;
  std::map<uint32_t, uint64_t> correlation_to_external;
  std::map<uint64_t, ExternalRange> externals;
  struct PendingHostRange {
    std::string module;
    int step;
    int64_t start_steady, end_steady;
    uint32_t thread_id;
  };
  std::vector<PendingHostRange> host_ranges;
  uint64_t dropped = 0;
  uint64_t next_external = 0;
  std::string parse_error;  // a record the callback could not read (reported by stop())
  ClockPair clock_start;

  // Called from CUPTI's buffer-completed callback (any thread); must not throw.
  void consume(uint8_t* buffer, size_t valid) noexcept;
  void shutdown() noexcept;
};

// CUPTI is process-global: one running tracer at a time, reachable from the C callbacks.
std::mutex g_mutex;
TracerState* g_active = nullptr;      // guarded by g_mutex
bool g_callbacks_registered = false;  // guarded by g_mutex
// Read by buffer_requested without g_mutex, so that a buffer request never waits on a thread
// that is inside buffer_completed.
std::atomic<size_t> g_buffer_bytes{size_t{8} << 20};

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  const size_t bytes = (g_buffer_bytes.load() + 7) / 8 * 8;       // aligned_alloc wants a multiple of the alignment
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, bytes));  // CUPTI wants 8-byte alignment
  *size = *buffer != nullptr ? bytes : 0;                         // no buffer: CUPTI drops records and counts them
  *max_records = 0;                                               // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext context, uint32_t stream, uint8_t* buffer, size_t /*size*/, size_t valid) {
  std::lock_guard<std::mutex> lock(g_mutex);
  size_t dropped = 0;
  const bool got_dropped = cuptiActivityGetNumDroppedRecords(context, stream, &dropped) == CUPTI_SUCCESS;
  if (g_active != nullptr) {
    if (buffer != nullptr && valid > 0) g_active->consume(buffer, valid);
    if (got_dropped && dropped > 0) {
      std::lock_guard<std::mutex> l(g_active->mu);
      g_active->dropped += dropped;
    }
  }
  std::free(buffer);
}

void TracerState::consume(uint8_t* buffer, size_t valid) noexcept {
  try {
    std::vector<GpuActivity> got;
    std::vector<std::pair<uint32_t, uint64_t>> corr;
    // A record that ends before it starts would be rejected by the raw file's reader: clamp it
    // to zero length rather than lose it.
    auto keep = [&](GpuActivity&& a) {
      if (a.end_ns < a.start_ns) a.end_ns = a.start_ns;
      got.push_back(std::move(a));
    };
    CUpti_Activity* rec = nullptr;
    for (;;) {
      const CUptiResult r = cuptiActivityGetNextRecord(buffer, valid, &rec);
      if (r == CUPTI_ERROR_MAX_LIMIT_REACHED) break;
      if (r != CUPTI_SUCCESS) {
        std::lock_guard<std::mutex> l(mu);
        if (parse_error.empty()) parse_error = std::string("cuptiActivityGetNextRecord failed: ") + cupti_error_text(r);
        break;
      }
      GpuActivity a;
      // The fields every kernel, copy and memset record has.
      auto on_stream = [](GpuActivity& out, const auto& r) {
        out.start_ns = static_cast<int64_t>(r.start);
        out.end_ns = static_cast<int64_t>(r.end);
        out.correlation = r.correlationId;
        out.device = r.deviceId;
        out.context = r.contextId;
        out.stream = r.streamId;
      };
      switch (rec->kind) {
        case CUPTI_ACTIVITY_KIND_KERNEL:
        case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
          const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
          a.kind = ActivityKind::kKernel;
          a.name = demangle(k->name);
          on_stream(a, *k);
          a.grid = {k->gridX, k->gridY, k->gridZ};
          a.block = {k->blockX, k->blockY, k->blockZ};
          a.shared_bytes = static_cast<int64_t>(k->staticSharedMemory) + k->dynamicSharedMemory;
          keep(std::move(a));
          break;
        }
        case CUPTI_ACTIVITY_KIND_MEMCPY: {
          const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(rec);
          a.kind = ActivityKind::kMemcpy;
          on_stream(a, *m);
          a.bytes = static_cast<Bytes>(m->bytes);
          a.copy_kind = copy_kind_name(m->copyKind);
          a.src_kind = memory_kind_name(m->srcKind);
          a.dst_kind = memory_kind_name(m->dstKind);
          keep(std::move(a));
          break;
        }
        case CUPTI_ACTIVITY_KIND_MEMSET: {
          const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(rec);
          a.kind = ActivityKind::kMemset;
          on_stream(a, *m);
          a.bytes = static_cast<Bytes>(m->bytes);
          a.dst_kind = memory_kind_name(m->memoryKind);
          keep(std::move(a));
          break;
        }
        case CUPTI_ACTIVITY_KIND_RUNTIME: {
          const auto* api = reinterpret_cast<const CUpti_ActivityAPI*>(rec);
          a.kind = ActivityKind::kRuntime;
          a.name = runtime_api_name(api->cbid);
          a.start_ns = static_cast<int64_t>(api->start);
          a.end_ns = static_cast<int64_t>(api->end);
          a.correlation = api->correlationId;
          a.process_id = api->processId;
          a.thread_id = api->threadId;
          keep(std::move(a));
          break;
        }
        case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
          const auto* e = reinterpret_cast<const CUpti_ActivityExternalCorrelation*>(rec);
          if (e->externalKind == kExternalKind) corr.emplace_back(e->correlationId, e->externalId);
          break;
        }
        default: break;
      }
    }
    std::lock_guard<std::mutex> l(mu);
    for (auto& a : got) activities.push_back(std::move(a));
    for (const auto& [c, e] : corr) correlation_to_external[c] = e;
  } catch (const std::exception& e) {  // bad_alloc and the like: never into CUPTI's thread
    std::lock_guard<std::mutex> l(mu);
    if (parse_error.empty()) parse_error = std::string("reading CUPTI records failed: ") + e.what();
  }
}

}  // namespace

struct CuptiTracer::Impl : TracerState {};

// Disables the kinds and flushes without throwing (destructor path).
void TracerState::shutdown() noexcept {
  for (auto it = std::rbegin(kKinds); it != std::rend(kKinds); ++it) cuptiActivityDisable(*it);
  cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_active == this) g_active = nullptr;
  running = false;
}

CuptiTracer::CuptiTracer(CuptiTracerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
}

CuptiTracer::~CuptiTracer() {
  if (impl_ && impl_->running) impl_->shutdown();
}

bool CuptiTracer::running() const { return impl_->running; }

void CuptiTracer::start() {
  Impl& im = *impl_;
  if (im.running) throw RuntimeFailure("CUPTI tracer: start() called twice without stop()");
  if (im.options.buffer_bytes < 4096) throw RuntimeFailure("CUPTI tracer: buffer_bytes must be at least 4096");
  // 1. Claim CUPTI for this tracer (process-global: one running tracer at a time).
  bool register_callbacks = false;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_active != nullptr)
      throw RuntimeFailure("CUPTI tracer: another CuptiTracer is running (CUPTI is process-global; stop it first)");
    g_active = &im;
    g_buffer_bytes.store(im.options.buffer_bytes);
    register_callbacks = !g_callbacks_registered;
  }
  try {
    // 2. Fresh state, and the first clock pair for host ranges.
    {
      std::lock_guard<std::mutex> l(im.mu);
      im.activities.clear();
      im.correlation_to_external.clear();
      im.externals.clear();
      im.host_ranges.clear();
      im.dropped = 0;
      im.parse_error.clear();
    }
    // 3. Buffer callbacks (once per process), then the activity kinds.
    if (register_callbacks) {
      DMAP_CUPTI_CHECK(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed));
      std::lock_guard<std::mutex> lock(g_mutex);
      g_callbacks_registered = true;
    }
    im.clock_start = read_clock_pair();
    size_t enabled = 0;
    try {
      for (CUpti_ActivityKind k : kKinds) {
        DMAP_CUPTI_CHECK(cuptiActivityEnable(k));
        ++enabled;
      }
    } catch (...) {
      while (enabled > 0) cuptiActivityDisable(kKinds[--enabled]);
      throw;
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_active = nullptr;
    throw;
  }
  im.running = true;
}

void CuptiTracer::push_module(const std::string& module, int step) {
  Impl& im = *impl_;
  if (!im.running) throw RuntimeFailure(std::string("CUPTI tracer: push_module(\"") + module + "\") before start()");
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> l(im.mu);
    id = ++im.next_external;
    im.externals.emplace(id, ExternalRange{id, module, step < 0 ? -1 : step});
  }
  DMAP_CUPTI_CHECK(cuptiActivityPushExternalCorrelationId(kExternalKind, id));
}

void CuptiTracer::pop_module() {
  if (!impl_->running) throw RuntimeFailure("CUPTI tracer: pop_module() before start()");
  uint64_t last = 0;
  const CUptiResult r = cuptiActivityPopExternalCorrelationId(kExternalKind, &last);
  if (r == CUPTI_ERROR_QUEUE_EMPTY)
    throw RuntimeFailure("CUPTI tracer: pop_module() without a matching push_module() on this thread");
  DMAP_CUPTI_CHECK(r);
}

void CuptiTracer::add_host_range(const std::string& module, int step, std::chrono::steady_clock::time_point start,
                                 std::chrono::steady_clock::time_point end) {
  Impl& im = *impl_;
  if (!im.running) throw RuntimeFailure(std::string("CUPTI tracer: add_host_range(\"") + module + "\") before start()");
  DMAP_CHECK(end >= start, std::string("host range of ") + module + " ends before it starts");
  std::lock_guard<std::mutex> l(im.mu);
  im.host_ranges.push_back({module, step < 0 ? -1 : step, steady_ns(start), steady_ns(end), cupti_thread_id()});
}

GpuTrace CuptiTracer::stop() {
  Impl& im = *impl_;
  if (!im.running) throw RuntimeFailure("CUPTI tracer: stop() without start()");
  // 1. Let queued work finish so that its records exist, then stop recording and force every
  // buffer (complete or not) through buffer_completed.
  const cudaError_t sync = cudaDeviceSynchronize();
  CUptiResult first_error = CUPTI_SUCCESS;
  const char* failed_call = "";
  for (auto it = std::rbegin(kKinds); it != std::rend(kKinds); ++it) {
    const CUptiResult r = cuptiActivityDisable(*it);
    if (r != CUPTI_SUCCESS && first_error == CUPTI_SUCCESS) {
      first_error = r;
      failed_call = "cuptiActivityDisable";
    }
  }
  const CUptiResult flush = cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  if (flush != CUPTI_SUCCESS && first_error == CUPTI_SUCCESS) {
    first_error = flush;
    failed_call = "cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED)";
  }
  ClockPair clock_end = im.clock_start;
  uint64_t ts = 0;
  const auto a = std::chrono::steady_clock::now();
  if (cuptiGetTimestamp(&ts) == CUPTI_SUCCESS) {
    const auto b = std::chrono::steady_clock::now();
    clock_end = {steady_ns(a) + (steady_ns(b) - steady_ns(a)) / 2, static_cast<int64_t>(ts)};
  }
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_active = nullptr;
  }
  im.running = false;
  cuda_check(sync, "cudaDeviceSynchronize before collecting the trace");
  if (first_error != CUPTI_SUCCESS)
    throw RuntimeFailure(std::string("CUPTI: ") + failed_call + " failed: " + cupti_error_text(first_error));

  // 2. Move the records out.
  GpuTrace t;
  std::vector<TracerState::PendingHostRange> host;
  {
    std::lock_guard<std::mutex> l(im.mu);
    if (!im.parse_error.empty()) throw RuntimeFailure(std::string("CUPTI tracer: ") + im.parse_error);
    t.activities = std::move(im.activities);
    t.externals = std::move(im.externals);
    t.dropped_records = im.dropped;
    host = std::move(im.host_ranges);
    for (const auto& [c, e] : im.correlation_to_external) {
      if (t.externals.count(e)) t.correlation_to_external.emplace(c, e);
    }
    im.activities.clear();
    im.externals.clear();
    im.correlation_to_external.clear();
    im.host_ranges.clear();
  }

  // 3. Host ranges onto CUPTI's clock: the line through the clock pairs of start() and stop().
  const double span_steady = static_cast<double>(clock_end.steady - im.clock_start.steady);
  const double slope =
      span_steady > 0 ? static_cast<double>(clock_end.cupti - im.clock_start.cupti) / span_steady : 1.0;
  auto to_cupti = [&](int64_t steady) {
    return im.clock_start.cupti + static_cast<int64_t>(static_cast<double>(steady - im.clock_start.steady) * slope);
  };
  for (const auto& h : host) {
    HostRange r{h.module, h.step, to_cupti(h.start_steady), to_cupti(h.end_steady), h.thread_id};
    r.start_ns = std::max<int64_t>(r.start_ns, 0);
    r.end_ns = std::max(r.end_ns, r.start_ns);
    t.host_ranges.push_back(std::move(r));
  }

  // 4. Provenance: devices seen, driver/runtime/CUPTI versions.
  TraceProvenance& p = t.provenance;
  p.source = "cupti";
  p.dmap_version = DMAP_VERSION;
  p.note = im.options.note;
  int v = 0;
  if (cudaDriverGetVersion(&v) == cudaSuccess) p.driver_version = version_text(v);
  if (cudaRuntimeGetVersion(&v) == cudaSuccess) p.runtime_version = version_text(v);
  uint32_t cv = 0;
  if (cuptiGetVersion(&cv) == CUPTI_SUCCESS) p.cupti_version = std::to_string(cv);
  for (const GpuActivity& act : t.activities) {
    if (act.kind == ActivityKind::kRuntime || p.devices.count(act.device)) continue;
    cudaDeviceProp prop{};
    p.devices[act.device] = cudaGetDeviceProperties(&prop, static_cast<int>(act.device)) == cudaSuccess
                                ? prop.name
                                : std::string("device ") + std::to_string(act.device);
  }
  if (t.dropped_records > 0) {
    std::fprintf(stderr,
                 "warning: CUPTI dropped %llu activity records (buffers full); the trace is incomplete -- "
                 "raise CuptiTracerOptions::buffer_bytes\n",
                 static_cast<unsigned long long>(t.dropped_records));
  }
  return t;
}

}  // namespace dmap::trace
