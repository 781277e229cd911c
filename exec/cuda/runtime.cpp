// The checked CUDA runtime wrappers (see runtime.h): errors turned into RuntimeFailure with the
// call and place, OutOfDeviceMemory with the bytes asked and free, RAII owners of device memory,
// pinned memory, streams, events and cuBLAS handles.
#include "exec/cuda/runtime.h"

#include <utility>

#include "core/units.h"

namespace dmap::exec::cuda {

void fail(const std::string& what, const std::string& error, const char* file, int line) {
  throw RuntimeFailure("CUDA: " + what + " failed: " + error + " (" + file + ":" + std::to_string(line) + ")");
}

void check(cublasStatus_t st, const char* what, const char* file, int line) {
  if (st != CUBLAS_STATUS_SUCCESS)
    fail(what, std::string(cublasGetStatusName(st)) + " (" + cublasGetStatusString(st) + ")", file, line);
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

void use_device(int device) {
  int cur = -1;
  DMAP_CUDA(cudaGetDevice(&cur));
  if (cur != device) DMAP_CUDA(cudaSetDevice(device));
}

BlasHandle::BlasHandle(int device, cudaStream_t stream) {
  use_device(device);
  DMAP_CUBLAS(cublasCreate(&h_));
  DMAP_CUBLAS(cublasSetStream(h_, stream));
}

BlasHandle::~BlasHandle() { cublasDestroy(h_); }

DeviceInfo device_info(int device) {
  cudaDeviceProp p{};
  DMAP_CUDA(cudaGetDeviceProperties(&p, device));
  DeviceInfo d;
  d.index = device;
  d.name = p.name;
  d.sm_major = p.major;
  d.sm_minor = p.minor;
  d.multiprocessors = p.multiProcessorCount;
  d.max_shared_per_block = p.sharedMemPerBlockOptin;
  use_device(device);
  DMAP_CUDA(cudaMemGetInfo(&d.free_bytes, &d.total_bytes));
  DMAP_CUDA(cudaDriverGetVersion(&d.driver_version));
  DMAP_CUDA(cudaRuntimeGetVersion(&d.runtime_version));
  return d;
}

DeviceBuffer::DeviceBuffer(int device, size_t bytes, const std::string& what) : bytes_(bytes), device_(device) {
  if (bytes == 0) return;
  use_device(device);
  const cudaError_t err = cudaMalloc(&ptr_, bytes);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    size_t free = 0, total = 0;
    (void)cudaMemGetInfo(&free, &total);
    ptr_ = nullptr;
    throw OutOfDeviceMemory(device, bytes, free, total, what);
  }
  check(err, "cudaMalloc", __FILE__, __LINE__);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    device_ = o.device_;
  }
  return *this;
}

void DeviceBuffer::reset() {
  if (ptr_) {
    int cur = -1;
    (void)cudaGetDevice(&cur);
    if (cur != device_) (void)cudaSetDevice(device_);
    (void)cudaFree(ptr_);
    if (cur != device_ && cur >= 0) (void)cudaSetDevice(cur);
  }
  ptr_ = nullptr;
  bytes_ = 0;
}

PinnedBuffer::PinnedBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  const cudaError_t err = cudaHostAlloc(&ptr_, bytes, cudaHostAllocPortable);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    ptr_ = nullptr;
    throw RuntimeFailure("cannot pin " + format_bytes_human(static_cast<double>(bytes)) +
                         " of host memory: " + cudaGetErrorString(err));
  }
}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

void PinnedBuffer::reset() {
  if (ptr_) (void)cudaFreeHost(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

Stream::Stream(int device) : device_(device) {
  use_device(device);
  DMAP_CUDA(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
}

Stream::~Stream() {
  if (s_) (void)cudaStreamDestroy(s_);
}

void Stream::sync() const { DMAP_CUDA(cudaStreamSynchronize(s_)); }

Event::Event(int device, bool timing) {
  use_device(device);
  DMAP_CUDA(cudaEventCreateWithFlags(&e_, timing ? cudaEventDefault : cudaEventDisableTiming));
}

Event::~Event() {
  if (e_) (void)cudaEventDestroy(e_);
}

void Event::record(cudaStream_t s) const { DMAP_CUDA(cudaEventRecord(e_, s)); }

float Event::since(const Event& start) const {
  float ms = 0;
  DMAP_CUDA(cudaEventElapsedTime(&ms, start.e_, e_));
  return ms;
}

}  // namespace dmap::exec::cuda
