// The CUDA device runtime (see cuda_runtime.h).
#include "exec/cuda/cuda_runtime.h"

#include "exec/cuda/kernels.h"

namespace dmap::exec {

CudaRuntime::CudaRuntime() : count_(cuda::device_count()) {}

CudaRuntime::~CudaRuntime() {
  for (const auto& s : streams_) {
    cuda::use_device(s.device);
    (void)cudaStreamSynchronize(s.s->get());
  }
}

void CudaRuntime::use_device(int device) { cuda::use_device(device); }

void* CudaRuntime::alloc_device(int device, size_t bytes, const std::string& what) {
  cuda::DeviceBuffer b(device, bytes, what);
  void* p = b.data();
  device_.emplace(p, std::move(b));
  return p;
}

void CudaRuntime::free_device(void* p) { device_.erase(p); }

void* CudaRuntime::alloc_pinned(size_t bytes, const std::string& what) {
  (void)what;
  cuda::PinnedBuffer b(bytes);
  void* p = b.data();
  pinned_.emplace(p, std::move(b));
  return p;
}

void CudaRuntime::free_pinned(void* p) { pinned_.erase(p); }

int CudaRuntime::create_stream(int device, const std::string& name) {
  (void)name;
  streams_.push_back({device, std::make_unique<cuda::Stream>(device)});
  return static_cast<int>(streams_.size()) - 1;
}

int CudaRuntime::create_event(int device, bool timing) {
  events_.push_back({device, std::make_unique<cuda::Event>(device, timing)});
  return static_cast<int>(events_.size()) - 1;
}

cudaStream_t CudaRuntime::on(int stream) {
  const StreamRec& s = streams_.at(static_cast<size_t>(stream));
  cuda::use_device(s.device);
  return s.s->get();
}

cuda::BlasHandle& CudaRuntime::blas(int stream) {
  const cudaStream_t s = on(stream);
  const int device = streams_[static_cast<size_t>(stream)].device;
  auto& h = blas_[device];
  if (!h) {
    h = std::make_unique<cuda::BlasHandle>(device, s);
    DMAP_CUBLAS(cublasSetMathMode(h->get(), CUBLAS_DEFAULT_MATH));  // float32 stays float32 (no TF32)
  }
  DMAP_CUBLAS(cublasSetStream(h->get(), s));
  return *h;
}

void CudaRuntime::record(int event, int stream) { events_.at(static_cast<size_t>(event)).e->record(on(stream)); }
void CudaRuntime::wait(int stream, int event) {
  DMAP_CUDA(cudaStreamWaitEvent(on(stream), events_.at(static_cast<size_t>(event)).e->get(), 0));
}
void CudaRuntime::stream_sync(int stream) { DMAP_CUDA(cudaStreamSynchronize(on(stream))); }
void CudaRuntime::event_sync(int event) {
  DMAP_CUDA(cudaEventSynchronize(events_.at(static_cast<size_t>(event)).e->get()));
}
bool CudaRuntime::query(int event) {
  const cudaError_t err = cudaEventQuery(events_.at(static_cast<size_t>(event)).e->get());
  if (err == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  DMAP_CUDA(err);
  return true;
}
double CudaRuntime::elapsed_ms(int from, int to) {
  return events_.at(static_cast<size_t>(to)).e->since(*events_.at(static_cast<size_t>(from)).e);
}
void CudaRuntime::device_sync(int device) {
  cuda::use_device(device);
  DMAP_CUDA(cudaDeviceSynchronize());
}

void CudaRuntime::copy_h2d(void* dst, const void* src, size_t bytes, int stream, const std::string&) {
  DMAP_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, on(stream)));
}
void CudaRuntime::copy_d2h(void* dst, const void* src, size_t bytes, int stream, const std::string&) {
  DMAP_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, on(stream)));
}
void CudaRuntime::copy_d2d(void* dst, const void* src, size_t bytes, int stream, const std::string&) {
  DMAP_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, on(stream)));
}
void CudaRuntime::copy_peer(void* dst, int dst_device, const void* src, int src_device, size_t bytes, int stream,
                            const std::string&) {
  DMAP_CUDA(cudaMemcpyPeerAsync(dst, dst_device, src, src_device, bytes, on(stream)));
}

void CudaRuntime::gemm(int stream, DType t, const void* x, int64_t M, int64_t K, const void* W, int64_t N, void* y,
                       bool accumulate) {
  cuda::gemm(blas(stream).get(), t, x, M, K, W, N, y, accumulate);
}
void CudaRuntime::embed(int stream, DType t, const void* table, int64_t, const int32_t* ids, int64_t M, int64_t H,
                        float scale, void* out) {
  cuda::embed(t, table, ids, M, H, scale, out, on(stream));
}
void CudaRuntime::rmsnorm(int stream, DType t, const void* x, const void* w, int64_t M, int64_t H, float eps,
                          NormMode mode, void* y) {
  const cuda::Norm m = mode == NormMode::kGemma      ? cuda::Norm::kGemma
                       : mode == NormMode::kMulFirst ? cuda::Norm::kMulFirst
                                                     : cuda::Norm::kLlama;
  cuda::rmsnorm(t, x, w, M, H, eps, m, y, on(stream));
}
void CudaRuntime::broadcast_rows(int stream, DType t, const void* b, int64_t M, int64_t N, void* y) {
  cuda::broadcast_rows(t, b, M, N, y, on(stream));
}
void CudaRuntime::rope(int stream, DType t, void* q, void* k, int64_t M, int64_t T, int64_t heads, int64_t kv_heads,
                       int64_t d, int64_t rotary, const float* cos, const float* sin, bool fp32) {
  cuda::rope(t, q, k, M, T, heads, kv_heads, d, rotary, cos, sin, fp32, on(stream));
}
void CudaRuntime::softcap(int stream, DType t, void* x, int64_t n, float cap) {
  cuda::softcap(t, x, n, cap, on(stream));
}
void CudaRuntime::gated_act(int stream, DType t, void* g, const void* u, int64_t n, bool gelu) {
  cuda::gated_act(t, g, u, n, gelu, on(stream));
}
void CudaRuntime::add_residual(int stream, DType t, void* x, const void* h, int64_t n) {
  cuda::add_residual(t, x, h, n, on(stream));
}
void CudaRuntime::kv_store(int stream, DType t, const void* k, const void* v, void* kc, void* vc, int64_t B, int64_t T,
                           int64_t KV, int64_t d, int64_t S, int64_t start) {
  cuda::kv_store(t, k, v, kc, vc, B, T, KV, d, S, start, on(stream));
}
void CudaRuntime::attention(int stream, DType t, const void* q, const void* kc, const void* vc, void* out, int64_t B,
                            int64_t T, int64_t H, int64_t KV, int64_t d, int64_t S, int64_t start, int64_t window,
                            float scale, float softcap) {
  cuda::attention(t, q, kc, vc, out, B, T, H, KV, d, S, start, window, scale, softcap, on(stream));
}
int64_t CudaRuntime::attention_max_context(int device, int64_t d) { return cuda::attention_max_context(device, d); }
void CudaRuntime::moe_route(int stream, DType t, const void* logits, int64_t M, int64_t E, int64_t K, bool norm_topk,
                            bool fp32_weights, int32_t* pick, float* weight, int32_t* counts) {
  cuda::moe_route(t, logits, M, E, K, norm_topk, fp32_weights, pick, weight, counts, on(stream));
}
void CudaRuntime::moe_experts(int stream, DType t, const void* x, int64_t M, int64_t H, int64_t I, int64_t E, int64_t K,
                              const int32_t* pick, const float* weight, bool fp32_weights, const void* gate_up,
                              const void* down, void* work, void* out) {
  (void)E;
  cuda::moe_experts(t, x, M, H, I, K, pick, weight, fp32_weights, gate_up, down, work, out, on(stream));
}
void CudaRuntime::to_float(int stream, DType t, const void* x, float* y, int64_t n) {
  cuda::to_float(t, x, y, n, on(stream));
}

}  // namespace dmap::exec
