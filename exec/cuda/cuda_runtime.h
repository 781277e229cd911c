// The CUDA implementation of the device runtime (exec/device/runtime.h): cudart for memory,
// streams, events and copies, cuBLAS (one handle per device, set to the launching stream) for
// the products, dmap's kernels (exec/cuda/kernels.h) for the rest. Streams and events live as
// long as the runtime; every call is checked (exec/cuda/runtime.h).
//
// Example:
//   auto rt = std::make_shared<CudaRuntime>();
//   DeviceModel m(rt, cfg, weights, placement, opt);
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "exec/cuda/runtime.h"
#include "exec/device/runtime.h"

namespace dmap::exec {

class CudaRuntime : public DeviceRuntime {
 public:
  CudaRuntime();
  ~CudaRuntime() override;

  std::string name() const override { return "CUDA"; }
  int device_count() const override { return count_; }
  void use_device(int device) override;

  void* alloc_device(int device, size_t bytes, const std::string& what) override;
  void free_device(void* p) override;
  void* alloc_pinned(size_t bytes, const std::string& what) override;
  void free_pinned(void* p) override;
  void host_access(const void*, size_t, bool, const std::string&) override {}

  int create_stream(int device, const std::string& name) override;
  int create_event(int device, bool timing) override;
  void record(int event, int stream) override;
  void wait(int stream, int event) override;
  void stream_sync(int stream) override;
  void event_sync(int event) override;
  bool query(int event) override;
  double elapsed_ms(int from, int to) override;
  void device_sync(int device) override;

  void copy_h2d(void* dst, const void* src, size_t bytes, int stream, const std::string& what) override;
  void copy_d2h(void* dst, const void* src, size_t bytes, int stream, const std::string& what) override;
  void copy_d2d(void* dst, const void* src, size_t bytes, int stream, const std::string& what) override;
  void copy_peer(void* dst, int dst_device, const void* src, int src_device, size_t bytes, int stream,
                 const std::string& what) override;

  void gemm(int stream, DType t, const void* x, int64_t M, int64_t K, const void* W, int64_t N, void* y,
            bool accumulate) override;
  void embed(int stream, DType t, const void* table, int64_t vocab, const int32_t* ids, int64_t M, int64_t H,
             float scale, void* out) override;
  void rmsnorm(int stream, DType t, const void* x, const void* w, int64_t M, int64_t H, float eps, NormMode mode,
               void* y) override;
  void broadcast_rows(int stream, DType t, const void* b, int64_t M, int64_t N, void* y) override;
  void rope(int stream, DType t, void* q, void* k, int64_t M, int64_t T, int64_t heads, int64_t kv_heads, int64_t d,
            int64_t rotary, const float* cos, const float* sin, bool fp32) override;
  void gated_act(int stream, DType t, void* g, const void* u, int64_t n, bool gelu) override;
  void add_residual(int stream, DType t, void* x, const void* h, int64_t n) override;
  void kv_store(int stream, DType t, const void* k, const void* v, void* kc, void* vc, int64_t B, int64_t T, int64_t KV,
                int64_t d, int64_t S, int64_t start) override;
  void attention(int stream, DType t, const void* q, const void* kc, const void* vc, void* out, int64_t B, int64_t T,
                 int64_t H, int64_t KV, int64_t d, int64_t S, int64_t start, int64_t window, float scale,
                 float softcap) override;
  void softcap(int stream, DType t, void* x, int64_t n, float cap) override;
  void moe_route(int stream, DType t, const void* logits, int64_t M, int64_t E, int64_t K, bool norm_topk,
                 bool fp32_weights, int32_t* pick, float* weight, int32_t* counts) override;
  void moe_experts(int stream, DType t, const void* x, int64_t M, int64_t H, int64_t I, int64_t E, int64_t K,
                   const int32_t* pick, const float* weight, bool fp32_weights, const void* gate_up, const void* down,
                   void* work, void* out) override;
  int64_t attention_max_context(int device, int64_t d) override;
  void to_float(int stream, DType t, const void* x, float* y, int64_t n) override;

 private:
  struct StreamRec {
    int device;
    std::unique_ptr<cuda::Stream> s;
  };
  struct EventRec {
    int device;
    std::unique_ptr<cuda::Event> e;
  };
  cudaStream_t on(int stream);  // makes the stream's device current
  cuda::BlasHandle& blas(int stream);

  int count_ = 0;
  std::vector<StreamRec> streams_;
  std::vector<EventRec> events_;
  std::map<void*, cuda::DeviceBuffer> device_;
  std::map<void*, cuda::PinnedBuffer> pinned_;
  std::map<int, std::unique_ptr<cuda::BlasHandle>> blas_;  // by device
};

}  // namespace dmap::exec
