// CUPTI tracer on a real device (skipped, exit 77, without one): pageable and pinned HtoD copies,
// a memset and a kernel inside pushed modules, a CPU-backend host range; checks the records'
// copy and memory kinds, bytes, the module attribution through external correlation, the host
// clock mapping, no dropped records, the raw round trip and the Chrome export.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <cuda_runtime_api.h>

#include "core/error.h"
#include "core/json_parse.h"
#include "trace/cupti_tracer.h"
#include "trace/gpu_trace.h"

namespace dmap_test {
cudaError_t launch_fill(float* out, int n, float v);  // cupti_test_kernel.cu
}

using namespace dmap;
using namespace dmap::trace;

namespace {

void cuda_ok(cudaError_t e) {
  INFO(cudaGetErrorString(e));
  REQUIRE(e == cudaSuccess);
}

const GpuActivity* find(const GpuTrace& t, ActivityKind kind, const std::string& module) {
  for (const auto& a : t.activities) {
    const ExternalRange* e = t.module_of(a);
    if (a.kind == kind && e != nullptr && e->module == module) return &a;
  }
  return nullptr;
}

const GpuActivity* runtime_call(const GpuTrace& t, uint32_t correlation) {
  for (const auto& a : t.activities) {
    if (a.kind == ActivityKind::kRuntime && a.correlation == correlation) return &a;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("CUPTI records copies, a memset and a kernel, attributed to their modules", "[gpu][trace]") {
  REQUIRE(cupti_compiled());
  constexpr size_t kBytes = size_t{8} << 20;
  constexpr int kFloats = static_cast<int>(kBytes / sizeof(float));
  std::vector<char> pageable(kBytes, 1);
  void* pinned = nullptr;
  void* device = nullptr;
  cuda_ok(cudaMallocHost(&pinned, kBytes));
  cuda_ok(cudaMalloc(&device, kBytes));
  std::memset(pinned, 2, kBytes);
  cuda_ok(cudaDeviceSynchronize());

  CuptiTracer tracer;
  tracer.start();
  CHECK(tracer.running());
  CHECK_THROWS_AS(tracer.start(), RuntimeFailure);  // twice
  {
    CuptiTracer other;  // CUPTI is process-global: one running tracer
    CHECK_THROWS_AS(other.start(), RuntimeFailure);
  }

  tracer.push_module("copy.pageable", -1);
  cuda_ok(cudaMemcpy(device, pageable.data(), kBytes, cudaMemcpyHostToDevice));
  tracer.pop_module();
  tracer.push_module("copy.pinned", -1);
  cuda_ok(cudaMemcpy(device, pinned, kBytes, cudaMemcpyHostToDevice));
  tracer.pop_module();
  tracer.push_module("clear", 0);
  cuda_ok(cudaMemset(device, 0, kBytes));
  tracer.pop_module();
  tracer.push_module("model.layers.0", 0);
  cuda_ok(dmap_test::launch_fill(static_cast<float*>(device), kFloats, 1.0f));
  tracer.pop_module();
  cuda_ok(cudaDeviceSynchronize());
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const auto t1 = std::chrono::steady_clock::now();
  tracer.add_host_range("lm_head", 0, t0, t1);
  CHECK_THROWS_AS(tracer.pop_module(), RuntimeFailure);  // nothing pushed

  const GpuTrace t = tracer.stop();
  CHECK_FALSE(tracer.running());
  cuda_ok(cudaFree(device));
  cuda_ok(cudaFreeHost(pinned));

  CHECK(t.dropped_records == 0);
  CHECK(t.provenance.source == "cupti");
  CHECK_FALSE(t.provenance.devices.empty());

  const GpuActivity* pg = find(t, ActivityKind::kMemcpy, "copy.pageable");
  REQUIRE(pg != nullptr);
  CHECK(pg->copy_kind == "HtoD");
  CHECK(pg->src_kind == "pageable");
  CHECK(pg->dst_kind == "device");
  CHECK(pg->bytes == static_cast<Bytes>(kBytes));
  CHECK(t.module_of(*pg)->step == -1);
  const GpuActivity* pn = find(t, ActivityKind::kMemcpy, "copy.pinned");
  REQUIRE(pn != nullptr);
  CHECK(pn->src_kind == "pinned");
  CHECK(pn->bytes == static_cast<Bytes>(kBytes));
  const GpuActivity* ms = find(t, ActivityKind::kMemset, "clear");
  REQUIRE(ms != nullptr);
  CHECK(ms->bytes == static_cast<Bytes>(kBytes));
  CHECK(t.module_of(*ms)->step == 0);

  const GpuActivity* k = find(t, ActivityKind::kKernel, "model.layers.0");
  REQUIRE(k != nullptr);
  CHECK(k->name.find("fill_kernel") != std::string::npos);
  CHECK(k->grid[0] == (kFloats + 255) / 256);
  CHECK(k->block[0] == 256);
  CHECK(k->end_ns > k->start_ns);
  const GpuActivity* launch = runtime_call(t, k->correlation);
  REQUIRE(launch != nullptr);
  CHECK(launch->name.rfind("cudaLaunch", 0) == 0);
  CHECK(t.module_of(*launch) == t.module_of(*k));
  const GpuActivity* copy_call = runtime_call(t, pg->correlation);
  REQUIRE(copy_call != nullptr);
  CHECK(copy_call->name.rfind("cudaMemcpy", 0) == 0);

  // The host range sits on CUPTI's clock after the kernel and on the runtime calls' thread.
  REQUIRE(t.host_ranges.size() == 1);
  const HostRange& h = t.host_ranges[0];
  CHECK(h.thread_id == launch->thread_id);
  CHECK(h.start_ns >= k->end_ns - 100000);  // within 0.1 ms of clock-pair error
  CHECK(h.end_ns - h.start_ns >= 1900000);
  CHECK(h.end_ns - h.start_ns < 200000000);

  const auto rows = module_aggregates(t);
  bool found = false;
  for (const auto& r : rows) {
    if (r.module == "copy.pageable") {
      found = true;
      CHECK(r.bytes_pageable == static_cast<Bytes>(kBytes));
      CHECK(r.copies == 1);
    }
  }
  CHECK(found);

  CHECK(parse_gpu_trace(gpu_trace_json(t), "recorded") == t);
  const JsonValue chrome = parse_json(chrome_trace(t).json(), "chrome");
  int flows = 0;
  for (const auto& e : chrome.find("traceEvents")->items) flows += e.find("ph")->s == "s";
  CHECK(flows >= 4);

  // When DMAP_RECORD_TRACE names a file, keep the recording (to replace the synthetic fixture).
  if (const char* out = std::getenv("DMAP_RECORD_TRACE")) write_text_file(out, gpu_trace_json(t));

  // A second session after stop() works.
  tracer.start();
  tracer.stop();
}
