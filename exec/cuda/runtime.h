// The CUDA runtime, checked: every call goes through DMAP_CUDA / DMAP_CUBLAS, which turn a
// failure into a RuntimeFailure naming the call, the error and where; a failed allocation is an
// OutOfDeviceMemory that names the bytes asked for and what the device had free. RAII owners for
// device memory, pinned host memory, streams and events.
//
// Example:
//   if (cuda::device_count() == 0) return;            // no driver or no GPU: never throws
//   cuda::DeviceBuffer w(0, bytes, "model.layers.3.mlp.up_proj.weight");
//   DMAP_CUDA(cudaMemcpy(w.data(), host, bytes, cudaMemcpyHostToDevice));
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "core/error.h"
#include "exec/device/runtime.h"

namespace dmap::exec::cuda {

[[noreturn]] void fail(const std::string& what, const std::string& error, const char* file, int line);
inline void check(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess)
    fail(what, std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ")", file, line);
}
void check(cublasStatus_t st, const char* what, const char* file, int line);

#define DMAP_CUDA(call) ::dmap::exec::cuda::check((call), #call, __FILE__, __LINE__)
#define DMAP_CUBLAS(call) ::dmap::exec::cuda::check((call), #call, __FILE__, __LINE__)
// After a kernel launch: a bad configuration shows up here, not at the next call.
#define DMAP_CUDA_LAUNCHED(name) ::dmap::exec::cuda::check(cudaGetLastError(), name, __FILE__, __LINE__)

using exec::OutOfDeviceMemory;  // exec/device/runtime.h

// Usable CUDA devices; 0 when there is no driver, no device, or the driver is too old.
int device_count();

struct DeviceInfo {
  int index = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  int multiprocessors = 0;
  size_t total_bytes = 0, free_bytes = 0;
  int driver_version = 0, runtime_version = 0;  // e.g. 13000
  size_t max_shared_per_block = 0;              // opt-in maximum (bytes)
};
DeviceInfo device_info(int device);

// cudaMalloc'd memory on one device.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // `what` names the allocation in the out-of-memory message.
  DeviceBuffer(int device, size_t bytes, const std::string& what);
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void reset();
  void* data() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

// Page-locked host memory (cudaHostAlloc, portable across devices).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes);
  ~PinnedBuffer() { reset(); }
  PinnedBuffer(PinnedBuffer&& o) noexcept { *this = std::move(o); }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void reset();
  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A non-blocking stream on one device.
class Stream {
 public:
  Stream() = default;
  explicit Stream(int device);
  ~Stream();
  Stream(Stream&& o) noexcept : s_(o.s_), device_(o.device_) { o.s_ = nullptr; }
  Stream& operator=(Stream&&) = delete;
  Stream(const Stream&) = delete;
  cudaStream_t get() const { return s_; }
  int device() const { return device_; }
  void sync() const;

 private:
  cudaStream_t s_ = nullptr;
  int device_ = 0;
};

// A timing event on one device.
class Event {
 public:
  Event() = default;
  explicit Event(int device, bool timing = true);
  ~Event();
  Event(Event&& o) noexcept : e_(o.e_) { o.e_ = nullptr; }
  Event& operator=(Event&&) = delete;
  Event(const Event&) = delete;
  cudaEvent_t get() const { return e_; }
  void record(cudaStream_t s) const;
  // Milliseconds from `start` to this event (both recorded and complete).
  float since(const Event& start) const;

 private:
  cudaEvent_t e_ = nullptr;
};

// A cuBLAS handle on one device, its work issued on `stream`.
class BlasHandle {
 public:
  BlasHandle(int device, cudaStream_t stream);
  ~BlasHandle();
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

// Sets the calling thread's current device (cheap when it is already current).
void use_device(int device);

}  // namespace dmap::exec::cuda
