// The device runtime under the GPU orchestration (exec/device/device_model.h): what an executor
// of GPU placements asks of a device — memory on the device and pinned on the host, copies in
// each direction (synchronous by a stream sync, or queued on a stream), streams, events (record,
// wait, synchronize, query, elapsed time) and the launches of a Llama-family layer's operators.
// Two implementations:
//   CUDA      exec/cuda/cuda_runtime.h: cudart, cuBLAS and dmap's kernels (built with nvcc);
//   emulated  exec/device/emulated.h: host memory, the CPU kernels, memcpy — and CUDA's stream
//             semantics checked strictly, with a model clock that turns a run into a timeline.
// The orchestration runs unchanged on both, so every CI run executes it.
//
// Handles are small integers the runtime hands out (streams, events) or pointers into memory it
// allocated. Every queued call names what it touches (`what`: a tensor or buffer name) so that
// the emulator's errors can say which tensor, on which stream, at which step.
//
// Operators (all queued on `stream`; layouts and rounding points as exec/cuda/kernels.h says):
// activations and weights share the model's dtype `t` (float32, float16 or bfloat16), arithmetic
// is float32, results are rounded where PyTorch's eager forward materialises a 16-bit tensor.
//
// Example:
//   DeviceMemory w(rt, 0, bytes, "model.layers.0.mlp.up_proj.weight");
//   int s = rt.create_stream(0, "compute");
//   rt.copy_h2d(w.data(), host, bytes, s, "model.layers.0.mlp.up_proj.weight");
//   rt.gemm(s, DType::kBFloat16, x, M, K, w.data(), N, y, false);
//   rt.stream_sync(s);
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "core/error.h"
#include "exec/cpu/kernels.h"

namespace dmap::exec {

// Device scratch of moe_experts: float32 [gate | up] and output rows for M * K routed rows.
inline size_t moe_work_bytes(int64_t M, int64_t K, int64_t H, int64_t I) {
  return static_cast<size_t>(M * K * (2 * I + H)) * sizeof(float);
}
using cpu::NormMode;

// A device allocation that did not fit: names the device, what asked, the bytes asked and free.
class OutOfDeviceMemory : public RuntimeFailure {
 public:
  OutOfDeviceMemory(int device, size_t asked, size_t free, size_t total, const std::string& what);
  size_t asked() const { return asked_; }

 private:
  size_t asked_;
};

class DeviceRuntime {
 public:
  virtual ~DeviceRuntime() = default;
  // "CUDA" or "emulated": for messages.
  virtual std::string name() const = 0;
  virtual int device_count() const = 0;
  // Makes `device` current for the calls that follow (CUDA's cudaSetDevice).
  virtual void use_device(int device) = 0;

  // ---- memory ----
  // Device memory; OutOfDeviceMemory when it does not fit. free_device is a host action: the
  // emulator refuses it while queued work still uses the buffer.
  virtual void* alloc_device(int device, size_t bytes, const std::string& what) = 0;
  virtual void free_device(void* p) = 0;
  // Page-locked host memory (usable from every device).
  virtual void* alloc_pinned(size_t bytes, const std::string& what) = 0;
  virtual void free_pinned(void* p) = 0;
  // The host reads or writes pinned memory directly (a disk read into staging, a conversion):
  // the emulator checks no queued copy still uses those bytes. A no-op on CUDA.
  virtual void host_access(const void* p, size_t bytes, bool write, const std::string& what) = 0;

  // ---- streams and events ----
  virtual int create_stream(int device, const std::string& name) = 0;
  virtual int create_event(int device, bool timing) = 0;
  virtual void record(int event, int stream) = 0;
  // Work queued on `stream` after this waits until `event`'s recorded work is done.
  virtual void wait(int stream, int event) = 0;
  virtual void stream_sync(int stream) = 0;
  virtual void event_sync(int event) = 0;
  virtual bool query(int event) = 0;  // recorded work done?
  // Milliseconds between two recorded, completed timing events.
  virtual double elapsed_ms(int from, int to) = 0;
  // Waits for all work on every stream of `device`.
  virtual void device_sync(int device) = 0;

  // ---- copies, queued on `stream` ----
  virtual void copy_h2d(void* dst, const void* src, size_t bytes, int stream, const std::string& what) = 0;
  virtual void copy_d2h(void* dst, const void* src, size_t bytes, int stream, const std::string& what) = 0;
  virtual void copy_d2d(void* dst, const void* src, size_t bytes, int stream, const std::string& what) = 0;
  virtual void copy_peer(void* dst, int dst_device, const void* src, int src_device, size_t bytes, int stream,
                         const std::string& what) = 0;

  // ---- operators, queued on `stream` ----
  // y (M x N) = x (M x K) W^T (W: N x K), plus the old y when `accumulate` (one rounding).
  virtual void gemm(int stream, DType t, const void* x, int64_t M, int64_t K, const void* W, int64_t N, void* y,
                    bool accumulate) = 0;
  // out[r] = table[ids[r]] * scale (scale 1: a plain copy); ids on the device.
  virtual void embed(int stream, DType t, const void* table, int64_t vocab, const int32_t* ids, int64_t M, int64_t H,
                     float scale, void* out) = 0;
  // RMSNorm per row (r = 1 / rms): kLlama round(w * round(x * r)); kMulFirst round(x * r * w)
  // (olmo2); kGemma round(x * r * (1 + w)).
  virtual void rmsnorm(int stream, DType t, const void* x, const void* w, int64_t M, int64_t H, float eps,
                       NormMode mode, void* y) = 0;
  virtual void broadcast_rows(int stream, DType t, const void* b, int64_t M, int64_t N, void* y) = 0;
  // Rotary embedding (rotate_half pairs (i, i + rotary/2) of each head's first `rotary` channels)
  // of q (M x heads*d) and k (M x kv*d) in place; row r at table row r % T; cos, sin: T x
  // rotary/2 float32 on the device. Each term rounded (a = r(r(a c) + r(-b s))), or with `fp32`
  // (olmo2) the sum rounded once.
  virtual void rope(int stream, DType t, void* q, void* k, int64_t M, int64_t T, int64_t heads, int64_t kv_heads,
                    int64_t d, int64_t rotary, const float* cos, const float* sin, bool fp32) = 0;
  // g = round(round(act(g)) * u), act = SiLU, or GELU (tanh) for gemma.
  virtual void gated_act(int stream, DType t, void* g, const void* u, int64_t n, bool gelu) = 0;
  // x = round(x + h).
  virtual void add_residual(int stream, DType t, void* x, const void* h, int64_t n) = 0;
  // This forward's keys and values (M x kv*d) into the cache (B x KV x S x d) at start..start+T-1.
  virtual void kv_store(int stream, DType t, const void* k, const void* v, void* kc, void* vc, int64_t B, int64_t T,
                        int64_t KV, int64_t d, int64_t S, int64_t start) = 0;
  // Causal (optionally sliding-window) attention of q (M x H*d) over the cache -> out: scores
  // round(round(q.k) * scale), soft-capped when softcap > 0 (gemma2), float32 softmax,
  // probabilities rounded, float32 sums.
  virtual void attention(int stream, DType t, const void* q, const void* kc, const void* vc, void* out, int64_t B,
                         int64_t T, int64_t H, int64_t KV, int64_t d, int64_t S, int64_t start, int64_t window,
                         float scale, float softcap) = 0;
  // x = round(round(tanh(round(x / cap))) * cap): gemma2's logit soft-capping.
  virtual void softcap(int stream, DType t, void* x, int64_t n, float cap) = 0;
  // A sparse MoE block (exec/cpu/moe.h): the router's choice per row of logits (M x E) -> pick
  // (M x K int32), weight (M x K float32) and counts (E int32: the rows routed to each expert,
  // set); then the routed experts (gate_up E x 2I x H, down E x H x I) -> out (M x H), with
  // moe_work_bytes(M, K, H, I) of device scratch in `work`.
  virtual void moe_route(int stream, DType t, const void* logits, int64_t M, int64_t E, int64_t K, bool norm_topk,
                         bool fp32_weights, int32_t* pick, float* weight, int32_t* counts) = 0;
  virtual void moe_experts(int stream, DType t, const void* x, int64_t M, int64_t H, int64_t I, int64_t E, int64_t K,
                           const int32_t* pick, const float* weight, bool fp32_weights, const void* gate_up,
                           const void* down, void* work, void* out) = 0;
  virtual int64_t attention_max_context(int device, int64_t d) = 0;
  virtual void to_float(int stream, DType t, const void* x, float* y, int64_t n) = 0;

  // What the next calls belong to (a module and a step), for the emulator's messages and
  // timeline; CUDA ignores it.
  virtual void set_scope(const std::string& module, int step) {
    (void)module;
    (void)step;
  }
};

// Owners of device and pinned allocations (freed through their runtime).
class DeviceMemory {
 public:
  DeviceMemory() = default;
  DeviceMemory(DeviceRuntime& rt, int device, size_t bytes, const std::string& what)
      : rt_(&rt), p_(bytes ? rt.alloc_device(device, bytes, what) : nullptr), bytes_(bytes), device_(device) {}
  ~DeviceMemory() { reset(); }
  DeviceMemory(DeviceMemory&& o) noexcept { *this = std::move(o); }
  DeviceMemory& operator=(DeviceMemory&& o) noexcept {
    if (this != &o) {
      reset();
      rt_ = o.rt_;
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
      device_ = o.device_;
    }
    return *this;
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  void reset() {
    if (p_) rt_->free_device(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  void* data() const { return p_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }

 private:
  DeviceRuntime* rt_ = nullptr;
  void* p_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

class PinnedMemory {
 public:
  PinnedMemory() = default;
  PinnedMemory(DeviceRuntime& rt, size_t bytes, const std::string& what)
      : rt_(&rt), p_(bytes ? rt.alloc_pinned(bytes, what) : nullptr), bytes_(bytes) {}
  ~PinnedMemory() { reset(); }
  PinnedMemory(PinnedMemory&& o) noexcept { *this = std::move(o); }
  PinnedMemory& operator=(PinnedMemory&& o) noexcept {
    if (this != &o) {
      reset();
      rt_ = o.rt_;
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  PinnedMemory(const PinnedMemory&) = delete;
  PinnedMemory& operator=(const PinnedMemory&) = delete;
  void reset() {
    if (p_) rt_->free_pinned(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  void* data() const { return p_; }
  size_t bytes() const { return bytes_; }

 private:
  DeviceRuntime* rt_ = nullptr;
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace dmap::exec
