// An emulated GPU on the host: the DeviceRuntime (exec/device/runtime.h) that CI runs the GPU
// orchestration on. Device and pinned memory are host memory, operators are the host
// implementations of the CUDA kernels (host_ops.h), copies are memcpy. Work runs when it is
// queued, in issue order (always a legal schedule); what the emulator adds is CUDA's stream
// semantics, checked strictly, and a model clock.
//
// Ordering (a vector clock per stream and one for the host, as a race detector keeps them):
// queued work is ordered after everything the host did before queuing it; `record` captures
// a stream's clock in an event, `wait` merges an event's clock into a stream, `stream_sync`,
// `event_sync`, `device_sync` and a successful `query` merge into the host's. Every byte range a
// copy, an operator, a host access or a free touches is checked against the earlier accesses
// to it: a read of bytes written by work not ordered before it (an operator reading a prefetch
// slot whose copy it did not wait for), a write of bytes that unordered work reads or writes (a
// copy into a slot still being read; the host refilling staging that a queued copy still
// reads), or a free while queued work still uses the buffer throws StreamOrderError naming
// both accesses — the tensor, the streams, the module and step. Touching memory that is not
// allocated (freed, or on another device) throws too.
//
// Model clock: each queued call costs the host `launch_s`; a stream runs its work in order,
// after the events it waits on; a copy takes latency + bytes / bandwidth of its kind (pinned or
// pageable host-to-device, device-to-host, peer, on-device) on its device's copy engine for that
// direction (one per direction, shared by all streams, as on GPUs with two copy engines); an
// operator takes latency + max(flops / rate, bytes / memory bandwidth). Syncs move the host's
// clock to the work's end. Events carry these times, so a run's module times and the timeline
// (every copy and operator with its stream, start and end) follow the model, not the host.
//
// Example:
//   auto rt = std::make_shared<EmulatedDevice>(EmulatedConfig{.devices = 2});
//   DeviceModel m(rt, cfg, weights, placement, opt);   // exec/device/device_model.h
//   generate(m, prompt, P, 8);
//   for (const auto& r : rt->timeline()) ...
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "exec/device/runtime.h"

namespace dmap::exec {

// A stream-ordering bug in the orchestration (a missing wait, a buffer reused too early).
class StreamOrderError : public InternalError {
 public:
  explicit StreamOrderError(const std::string& m) : InternalError(m) {}
};

struct EmulatedConfig {
  int devices = 1;
  size_t memory_bytes = size_t{16} << 30;  // per device
  double h2d_pinned_GBps = 25, h2d_pageable_GBps = 12, d2h_GBps = 25, peer_GBps = 40;
  double memory_GBps = 1000;  // on-device copies and operators' bytes
  double flops = 50e12;       // operators' float rate
  double launch_s = 5e-6;     // host time per queued call
  double copy_latency_s = 2e-6, kernel_latency_s = 3e-6;
  int threads = 1;  // host threads for the products
};

// One copy or operator as the model clock ran it.
struct TimelineRecord {
  enum class Kind { kH2D, kD2H, kD2D, kPeer, kKernel };
  Kind kind = Kind::kKernel;
  int stream = 0;
  std::string stream_name;  // "cuda:0 compute"
  int device = 0;
  std::string op;      // "gemm", "copy_h2d", ...
  std::string what;    // a copy's tensor or buffer
  std::string module;  // the scope it was issued in
  int step = -1;       // -1 prefill, else the decode step
  double start_s = 0, end_s = 0;
  size_t bytes = 0;     // copies
  bool pinned = false;  // host side of a copy is pinned memory
};

class EmulatedDevice : public DeviceRuntime {
 public:
  explicit EmulatedDevice(EmulatedConfig cfg = {});
  ~EmulatedDevice() override;

  std::string name() const override { return "emulated"; }
  int device_count() const override { return cfg_.devices; }
  void use_device(int device) override;

  void* alloc_device(int device, size_t bytes, const std::string& what) override;
  void free_device(void* p) override;
  void* alloc_pinned(size_t bytes, const std::string& what) override;
  void free_pinned(void* p) override;
  void host_access(const void* p, size_t bytes, bool write, const std::string& what) override;

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

  void set_scope(const std::string& module, int step) override;

  // Every copy and operator so far, in issue order.
  const std::vector<TimelineRecord>& timeline() const { return timeline_; }
  void clear_timeline() { timeline_.clear(); }
  // Bytes allocated on a device now, and the most at any time.
  size_t device_bytes(int device) const;
  size_t peak_device_bytes(int device) const;
  // The host's model clock (seconds).
  double host_time() const { return host_.time; }

 private:
  struct Access {
    int agent = 0;      // 0 host, 1 + stream
    uint64_t tick = 0;  // the agent's clock at the access
    bool write = false;
    size_t lo = 0, hi = 0;  // byte offsets in the allocation
    std::string desc;       // "copy_h2d of 'x' on stream 'cuda:0 copy' at model.layers.0 (prefill)"
  };
  struct Alloc {
    uint8_t* base = nullptr;
    size_t bytes = 0;
    int device = -1;  // -1: pinned host memory
    std::string what;
    std::unique_ptr<uint8_t[]> storage;
    std::vector<Access> log;
  };
  struct Agent {
    std::vector<uint64_t> vc;  // by agent index
    double time = 0;
  };
  struct StreamState {
    int device = 0;
    std::string name;
    Agent a;
  };
  struct EventState {
    int device = 0;
    bool timing = true, recorded = false;
    std::vector<uint64_t> vc;
    double time = 0;
  };
  // An operand of a queued call: a device pointer and the bytes it touches.
  struct Operand {
    const void* p;
    size_t bytes;
    bool write;
    const char* role;        // "x", "weight", "y", ...
    bool host_side = false;  // a copy's host end: checked only when it is pinned memory
  };

  StreamState& stream(int s);
  EventState& event(int e);
  static void merge(std::vector<uint64_t>& into, const std::vector<uint64_t>& from);
  std::string scope_text() const;
  // The allocation holding [p, p + bytes), or null.
  Alloc* find(const void* p, size_t bytes);
  // Checks and logs one access by `agent` (clock `vc`); `desc` names the access.
  void access(Alloc& a, size_t lo, size_t hi, bool write, int agent, const std::vector<uint64_t>& vc,
              const std::string& desc);
  // Queues a call on `s`: advances the host clock, orders it after the host, checks its operands,
  // times it (copy engine `engine` if not empty), records it; returns the record to fill.
  TimelineRecord& enqueue(int s, const std::string& op, const std::string& what, const std::vector<Operand>& ops,
                          double duration, const std::string& engine, TimelineRecord::Kind kind);
  void copy(TimelineRecord::Kind kind, void* dst, int dst_device, const void* src, int src_device, size_t bytes, int s,
            const std::string& what);
  double kernel_time(double flops, double bytes) const;

  EmulatedConfig cfg_;
  std::map<uintptr_t, Alloc> allocs_;  // by base address
  std::vector<size_t> used_, peak_;
  std::vector<StreamState> streams_;
  std::vector<EventState> events_;
  Agent host_;
  std::map<std::string, double> engines_;  // copy engine -> free at
  std::vector<TimelineRecord> timeline_;
  std::string module_ = "(set-up)";
  int step_ = -1;
};

}  // namespace dmap::exec
