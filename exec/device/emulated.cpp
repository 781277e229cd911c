// The emulated device (see emulated.h): host memory, host operators, strict stream ordering and
// a model clock.
#include "exec/device/emulated.h"

#include <algorithm>
#include <cstring>

#include "exec/device/host_ops.h"

namespace dmap::exec {

namespace {
std::string device_text(int device) { return device < 0 ? "pinned host memory" : "cuda:" + std::to_string(device); }
std::string step_text(int step) { return step < 0 ? "prefill" : "decode step " + std::to_string(step); }
}  // namespace

EmulatedDevice::EmulatedDevice(EmulatedConfig cfg) : cfg_(cfg) {
  DMAP_CHECK(cfg_.devices >= 0 && cfg_.devices <= 64, "the emulated device count is 0..64");
  used_.assign(static_cast<size_t>(cfg_.devices), 0);
  peak_ = used_;
  host_.vc.assign(1, 0);
}

EmulatedDevice::~EmulatedDevice() = default;

void EmulatedDevice::use_device(int device) {
  if (device < 0 || device >= cfg_.devices) throw RuntimeFailure("emulated device: no " + device_text(device));
}

// ---- memory --------------------------------------------------------------------------------------

void* EmulatedDevice::alloc_device(int device, size_t bytes, const std::string& what) {
  use_device(device);
  size_t& used = used_[static_cast<size_t>(device)];
  if (bytes > cfg_.memory_bytes - used)
    throw OutOfDeviceMemory(device, bytes, cfg_.memory_bytes - used, cfg_.memory_bytes, what);
  Alloc a;
  a.storage.reset(new uint8_t[std::max<size_t>(bytes, 1)]);
  a.base = a.storage.get();
  a.bytes = bytes;
  a.device = device;
  a.what = what;
  uint8_t* p = a.base;
  allocs_.emplace(reinterpret_cast<uintptr_t>(p), std::move(a));
  used += bytes;
  peak_[static_cast<size_t>(device)] = std::max(peak_[static_cast<size_t>(device)], used);
  return p;
}

void* EmulatedDevice::alloc_pinned(size_t bytes, const std::string& what) {
  Alloc a;
  a.storage.reset(new uint8_t[std::max<size_t>(bytes, 1)]);
  a.base = a.storage.get();
  a.bytes = bytes;
  a.device = -1;
  a.what = what;
  uint8_t* p = a.base;
  allocs_.emplace(reinterpret_cast<uintptr_t>(p), std::move(a));
  return p;
}

void EmulatedDevice::free_device(void* p) {
  auto it = allocs_.find(reinterpret_cast<uintptr_t>(p));
  if (it == allocs_.end() || it->second.device < 0) {
    throw StreamOrderError("emulated device: free_device of memory it did not allocate, at " + scope_text());
  }
  Alloc& a = it->second;
  ++host_.vc[0];
  access(a, 0, a.bytes, true, 0, host_.vc, "free of '" + a.what + "' by the host at " + scope_text());
  used_[static_cast<size_t>(a.device)] -= a.bytes;
  allocs_.erase(it);
}

void EmulatedDevice::free_pinned(void* p) {
  auto it = allocs_.find(reinterpret_cast<uintptr_t>(p));
  if (it == allocs_.end() || it->second.device >= 0) {
    throw StreamOrderError("emulated device: free_pinned of memory it did not pin, at " + scope_text());
  }
  Alloc& a = it->second;
  ++host_.vc[0];
  access(a, 0, a.bytes, true, 0, host_.vc, "free of pinned '" + a.what + "' by the host at " + scope_text());
  allocs_.erase(it);
}

void EmulatedDevice::host_access(const void* p, size_t bytes, bool write, const std::string& what) {
  Alloc* a = find(p, bytes);
  if (!a) return;  // pageable memory: the host's own business
  ++host_.vc[0];
  const size_t lo = static_cast<size_t>(static_cast<const uint8_t*>(p) - a->base);
  access(*a, lo, lo + bytes, write, 0, host_.vc,
         std::string("host ") + (write ? "write" : "read") + " of '" + what + "' at " + scope_text());
}

size_t EmulatedDevice::device_bytes(int device) const { return used_.at(static_cast<size_t>(device)); }
size_t EmulatedDevice::peak_device_bytes(int device) const { return peak_.at(static_cast<size_t>(device)); }

EmulatedDevice::Alloc* EmulatedDevice::find(const void* p, size_t bytes) {
  const auto u = reinterpret_cast<uintptr_t>(p);
  auto it = allocs_.upper_bound(u);
  if (it == allocs_.begin()) return nullptr;
  --it;
  Alloc& a = it->second;
  if (u < it->first || u + bytes > it->first + std::max<size_t>(a.bytes, 1)) return nullptr;
  return &a;
}

void EmulatedDevice::merge(std::vector<uint64_t>& into, const std::vector<uint64_t>& from) {
  if (into.size() < from.size()) into.resize(from.size(), 0);
  for (size_t i = 0; i < from.size(); ++i) into[i] = std::max(into[i], from[i]);
}

void EmulatedDevice::access(Alloc& a, size_t lo, size_t hi, bool write, int agent, const std::vector<uint64_t>& vc,
                            const std::string& desc) {
  auto ordered = [&](const Access& r) {
    return r.agent == agent || (static_cast<size_t>(r.agent) < vc.size() && r.tick <= vc[static_cast<size_t>(r.agent)]);
  };
  for (const Access& r : a.log) {
    if (r.hi <= lo || hi <= r.lo) continue;
    if (!(write || r.write) || ordered(r)) continue;
    throw StreamOrderError("emulated device: stream order violated: " + desc + " " + (write ? "writes" : "reads") +
                           " bytes " + std::to_string(std::max(lo, r.lo)) + ".." + std::to_string(std::min(hi, r.hi)) +
                           " of '" + a.what + "' (" + device_text(a.device) + "), which " + r.desc + " " +
                           (r.write ? "writes" : "reads") + " with no event wait or synchronisation ordering the two");
  }
  // Keep the log short: an access covers the same agent's earlier reads of its range, and a write
  // covers every earlier access of its range (all are ordered before it, or it threw).
  a.log.erase(std::remove_if(a.log.begin(), a.log.end(),
                             [&](const Access& r) {
                               return r.lo >= lo && r.hi <= hi && (write || (!r.write && r.agent == agent));
                             }),
              a.log.end());
  a.log.push_back(
      {agent, agent < static_cast<int>(vc.size()) ? vc[static_cast<size_t>(agent)] : 0, write, lo, hi, desc});
}

// ---- streams and events --------------------------------------------------------------------------

EmulatedDevice::StreamState& EmulatedDevice::stream(int s) {
  if (s < 0 || static_cast<size_t>(s) >= streams_.size())
    throw InternalError("emulated device: no stream " + std::to_string(s));
  return streams_[static_cast<size_t>(s)];
}

EmulatedDevice::EventState& EmulatedDevice::event(int e) {
  if (e < 0 || static_cast<size_t>(e) >= events_.size())
    throw InternalError("emulated device: no event " + std::to_string(e));
  return events_[static_cast<size_t>(e)];
}

int EmulatedDevice::create_stream(int device, const std::string& name) {
  use_device(device);
  StreamState s;
  s.device = device;
  s.name = "cuda:" + std::to_string(device) + " " + name;
  s.a.time = host_.time;
  streams_.push_back(std::move(s));
  return static_cast<int>(streams_.size()) - 1;
}

int EmulatedDevice::create_event(int device, bool timing) {
  use_device(device);
  EventState e;
  e.device = device;
  e.timing = timing;
  events_.push_back(std::move(e));
  return static_cast<int>(events_.size()) - 1;
}

void EmulatedDevice::record(int e, int s) {
  StreamState& st = stream(s);
  EventState& ev = event(e);
  host_.time += cfg_.launch_s;
  merge(st.a.vc, host_.vc);
  st.a.time = std::max(st.a.time, host_.time);
  ev.vc = st.a.vc;
  ev.time = st.a.time;
  ev.recorded = true;
}

void EmulatedDevice::wait(int s, int e) {
  StreamState& st = stream(s);
  const EventState& ev = event(e);
  host_.time += cfg_.launch_s;
  if (!ev.recorded) return;  // CUDA: waiting on a never-recorded event waits for nothing
  merge(st.a.vc, ev.vc);
  st.a.time = std::max(st.a.time, ev.time);
}

void EmulatedDevice::stream_sync(int s) {
  StreamState& st = stream(s);
  merge(host_.vc, st.a.vc);
  host_.time = std::max(host_.time, st.a.time);
}

void EmulatedDevice::event_sync(int e) {
  const EventState& ev = event(e);
  if (!ev.recorded) return;
  merge(host_.vc, ev.vc);
  host_.time = std::max(host_.time, ev.time);
}

bool EmulatedDevice::query(int e) {
  const EventState& ev = event(e);
  if (ev.recorded && ev.time > host_.time) return false;
  event_sync(e);
  return true;
}

double EmulatedDevice::elapsed_ms(int from, int to) {
  const EventState& a = event(from);
  const EventState& b = event(to);
  if (!a.timing || !b.timing || !a.recorded || !b.recorded) {
    throw InternalError("emulated device: elapsed time between events that are not both recorded timing events");
  }
  if (a.time > host_.time || b.time > host_.time)
    throw StreamOrderError("emulated device: elapsed time of events not yet complete, at " + scope_text());
  return (b.time - a.time) * 1e3;
}

void EmulatedDevice::device_sync(int device) {
  for (size_t s = 0; s < streams_.size(); ++s)
    if (streams_[s].device == device) stream_sync(static_cast<int>(s));
}

void EmulatedDevice::set_scope(const std::string& module, int step) {
  module_ = module;
  step_ = step;
}

std::string EmulatedDevice::scope_text() const { return module_ + " (" + step_text(step_) + ")"; }

// ---- queued work ---------------------------------------------------------------------------------

TimelineRecord& EmulatedDevice::enqueue(int s, const std::string& op, const std::string& what,
                                        const std::vector<Operand>& ops, double duration, const std::string& engine,
                                        TimelineRecord::Kind kind) {
  StreamState& st = stream(s);
  const int agent = 1 + s;
  host_.time += cfg_.launch_s;
  merge(st.a.vc, host_.vc);
  if (st.a.vc.size() <= static_cast<size_t>(agent)) st.a.vc.resize(static_cast<size_t>(agent) + 1, 0);
  ++st.a.vc[static_cast<size_t>(agent)];
  const std::string desc =
      op + (what.empty() ? "" : " of '" + what + "'") + " on stream '" + st.name + "' at " + scope_text();
  for (const Operand& o : ops) {
    if (o.bytes == 0) continue;
    Alloc* a = find(o.p, o.bytes);
    if (!a) {
      if (o.host_side) continue;  // pageable host memory
      throw StreamOrderError("emulated device: " + desc + ": its " + o.role + " (" + std::to_string(o.bytes) +
                             " bytes) is not memory allocated on " + device_text(st.device) +
                             " (freed, or never allocated)");
    }
    if (!o.host_side && a->device != st.device && op != "copy_peer") {
      throw StreamOrderError("emulated device: " + desc + ": its " + o.role + " '" + a->what + "' lives on " +
                             device_text(a->device) + ", not on the stream's device");
    }
    const size_t lo = static_cast<size_t>(static_cast<const uint8_t*>(o.p) - a->base);
    access(*a, lo, lo + o.bytes, o.write, agent, st.a.vc, desc);
  }
  double start = std::max(st.a.time, host_.time);
  if (!engine.empty()) start = std::max(start, engines_[engine]);
  const double end = start + duration;
  st.a.time = end;
  if (!engine.empty()) engines_[engine] = end;
  TimelineRecord r;
  r.kind = kind;
  r.stream = s;
  r.stream_name = st.name;
  r.device = st.device;
  r.op = op;
  r.what = what;
  r.module = module_;
  r.step = step_;
  r.start_s = start;
  r.end_s = end;
  timeline_.push_back(std::move(r));
  return timeline_.back();
}

void EmulatedDevice::copy(TimelineRecord::Kind kind, void* dst, int dst_device, const void* src, int src_device,
                          size_t bytes, int s, const std::string& what) {
  using K = TimelineRecord::Kind;
  const bool dst_host = kind == K::kD2H, src_host = kind == K::kH2D;
  const Alloc* host_alloc = kind == K::kH2D ? find(src, bytes) : kind == K::kD2H ? find(dst, bytes) : nullptr;
  const bool pinned = host_alloc && host_alloc->device < 0;
  double GBps = cfg_.memory_GBps;
  std::string engine;
  const int dev = stream(s).device;
  switch (kind) {
    case K::kH2D:
      GBps = pinned ? cfg_.h2d_pinned_GBps : cfg_.h2d_pageable_GBps;
      engine = "h2d:" + std::to_string(dev);
      break;
    case K::kD2H:
      GBps = cfg_.d2h_GBps;
      engine = "d2h:" + std::to_string(dev);
      break;
    case K::kPeer:
      GBps = cfg_.peer_GBps;
      engine = "d2h:" + std::to_string(src_device);
      break;
    case K::kD2D:
    case K::kKernel: break;
  }
  const double duration = cfg_.copy_latency_s + static_cast<double>(bytes) / (GBps * 1e9);
  const std::string op = kind == K::kH2D    ? "copy_h2d"
                         : kind == K::kD2H  ? "copy_d2h"
                         : kind == K::kPeer ? "copy_peer"
                                            : "copy_d2d";
  std::vector<Operand> ops = {{src, bytes, false, "source", src_host}, {dst, bytes, true, "destination", dst_host}};
  if (kind == K::kPeer) {
    // Each end on its own device.
    const Alloc* d = find(dst, bytes);
    const Alloc* sa = find(src, bytes);
    if (!d || d->device != dst_device || !sa || sa->device != src_device) {
      throw StreamOrderError("emulated device: copy_peer of '" + what + "' at " + scope_text() +
                             ": an end is not memory allocated on the device named");
    }
  }
  TimelineRecord& r = enqueue(s, op, what, ops, duration, engine, kind);
  r.bytes = bytes;
  r.pinned = pinned;
  std::memmove(dst, src, bytes);
}

void EmulatedDevice::copy_h2d(void* dst, const void* src, size_t bytes, int s, const std::string& what) {
  copy(TimelineRecord::Kind::kH2D, dst, stream(s).device, src, -1, bytes, s, what);
}
void EmulatedDevice::copy_d2h(void* dst, const void* src, size_t bytes, int s, const std::string& what) {
  copy(TimelineRecord::Kind::kD2H, dst, -1, src, stream(s).device, bytes, s, what);
}
void EmulatedDevice::copy_d2d(void* dst, const void* src, size_t bytes, int s, const std::string& what) {
  copy(TimelineRecord::Kind::kD2D, dst, stream(s).device, src, stream(s).device, bytes, s, what);
}
void EmulatedDevice::copy_peer(void* dst, int dst_device, const void* src, int src_device, size_t bytes, int s,
                               const std::string& what) {
  copy(TimelineRecord::Kind::kPeer, dst, dst_device, src, src_device, bytes, s, what);
}

double EmulatedDevice::kernel_time(double flops, double bytes) const {
  return cfg_.kernel_latency_s + std::max(flops / cfg_.flops, bytes / (cfg_.memory_GBps * 1e9));
}

// ---- operators -----------------------------------------------------------------------------------

namespace {
size_t nbytes(DType t, int64_t n) { return static_cast<size_t>(n) * elt_size(t); }
}  // namespace

void EmulatedDevice::gemm(int s, DType t, const void* x, int64_t M, int64_t K, const void* W, int64_t N, void* y,
                          bool accumulate) {
  const size_t bx = nbytes(t, M * K), bw = nbytes(t, N * K), by = nbytes(t, M * N);
  std::vector<Operand> ops = {{x, bx, false, "input"}, {W, bw, false, "weight"}};
  if (accumulate) ops.push_back({y, by, false, "output"});
  ops.push_back({y, by, true, "output"});
  enqueue(s, "gemm", "", ops, kernel_time(2.0 * static_cast<double>(M * N * K), static_cast<double>(bx + bw + by)), "",
          TimelineRecord::Kind::kKernel);
  host_ops::gemm(t, x, M, K, W, N, y, accumulate, cfg_.threads);
}

void EmulatedDevice::embed(int s, DType t, const void* table, int64_t vocab, const int32_t* ids, int64_t M, int64_t H,
                           float scale, void* out) {
  enqueue(s, "embed", "",
          {{ids, static_cast<size_t>(M) * sizeof(int32_t), false, "token ids"},
           {table, nbytes(t, vocab * H), false, "table"},
           {out, nbytes(t, M * H), true, "output"}},
          kernel_time(0, 2.0 * static_cast<double>(nbytes(t, M * H))), "", TimelineRecord::Kind::kKernel);
  for (int64_t r = 0; r < M; ++r) {
    if (ids[r] < 0 || ids[r] >= vocab)
      throw InternalError("emulated device: embed of token id " + std::to_string(ids[r]) + " outside the table");
  }
  host_ops::embed(t, table, ids, M, H, scale, out);
}

void EmulatedDevice::rmsnorm(int s, DType t, const void* x, const void* w, int64_t M, int64_t H, float eps,
                             NormMode mode, void* y) {
  enqueue(s, "rmsnorm", "",
          {{x, nbytes(t, M * H), false, "input"},
           {w, nbytes(t, H), false, "weight"},
           {y, nbytes(t, M * H), true, "output"}},
          kernel_time(4.0 * static_cast<double>(M * H), 2.0 * static_cast<double>(nbytes(t, M * H))), "",
          TimelineRecord::Kind::kKernel);
  host_ops::rmsnorm(t, x, w, M, H, eps, mode, y);
}

void EmulatedDevice::broadcast_rows(int s, DType t, const void* b, int64_t M, int64_t N, void* y) {
  enqueue(s, "broadcast_rows", "", {{b, nbytes(t, N), false, "bias"}, {y, nbytes(t, M * N), true, "output"}},
          kernel_time(0, static_cast<double>(nbytes(t, M * N))), "", TimelineRecord::Kind::kKernel);
  host_ops::broadcast_rows(t, b, M, N, y);
}

void EmulatedDevice::rope(int s, DType t, void* q, void* k, int64_t M, int64_t T, int64_t heads, int64_t kv_heads,
                          int64_t d, int64_t rotary, const float* cos, const float* sin, bool fp32) {
  const size_t bq = nbytes(t, M * heads * d), bk = nbytes(t, M * kv_heads * d);
  const size_t table = static_cast<size_t>(T * (rotary / 2)) * sizeof(float);
  enqueue(s, "rope", "",
          {{cos, table, false, "cos table"},
           {sin, table, false, "sin table"},
           {q, bq, false, "query"},
           {k, bk, false, "key"},
           {q, bq, true, "query"},
           {k, bk, true, "key"}},
          kernel_time(6.0 * static_cast<double>(M * (heads + kv_heads) * rotary), 2.0 * static_cast<double>(bq + bk)),
          "", TimelineRecord::Kind::kKernel);
  host_ops::rope(t, q, k, M, T, heads, kv_heads, d, rotary, cos, sin, fp32);
}

void EmulatedDevice::gated_act(int s, DType t, void* g, const void* u, int64_t n, bool gelu) {
  enqueue(s, "gated_act", "",
          {{g, nbytes(t, n), false, "gate"}, {u, nbytes(t, n), false, "up"}, {g, nbytes(t, n), true, "gate"}},
          kernel_time(8.0 * static_cast<double>(n), 3.0 * static_cast<double>(nbytes(t, n))), "",
          TimelineRecord::Kind::kKernel);
  host_ops::gated_act(t, g, u, n, gelu);
}

void EmulatedDevice::add_residual(int s, DType t, void* x, const void* h, int64_t n) {
  enqueue(
      s, "add_residual", "",
      {{x, nbytes(t, n), false, "residual"}, {h, nbytes(t, n), false, "input"}, {x, nbytes(t, n), true, "residual"}},
      kernel_time(static_cast<double>(n), 3.0 * static_cast<double>(nbytes(t, n))), "", TimelineRecord::Kind::kKernel);
  host_ops::add_residual(t, x, h, n);
}

void EmulatedDevice::kv_store(int s, DType t, const void* k, const void* v, void* kc, void* vc, int64_t B, int64_t T,
                              int64_t KV, int64_t d, int64_t S, int64_t start) {
  const size_t in = nbytes(t, B * T * KV * d), cache = nbytes(t, B * KV * S * d);
  enqueue(s, "kv_store", "",
          {{k, in, false, "keys"},
           {v, in, false, "values"},
           {kc, cache, true, "key cache"},
           {vc, cache, true, "value cache"}},
          kernel_time(0, 4.0 * static_cast<double>(in)), "", TimelineRecord::Kind::kKernel);
  host_ops::kv_store(t, k, v, kc, vc, B, T, KV, d, S, start);
}

void EmulatedDevice::attention(int s, DType t, const void* q, const void* kc, const void* vc, void* out, int64_t B,
                               int64_t T, int64_t H, int64_t KV, int64_t d, int64_t S, int64_t start, int64_t window,
                               float scale, float softcap) {
  const size_t bq = nbytes(t, B * T * H * d), cache = nbytes(t, B * KV * S * d);
  const double ctx = static_cast<double>(start + T);
  enqueue(s, "attention", "",
          {{q, bq, false, "query"},
           {kc, cache, false, "key cache"},
           {vc, cache, false, "value cache"},
           {out, bq, true, "output"}},
          kernel_time(4.0 * static_cast<double>(B * T * H * d) * ctx,
                      2.0 * static_cast<double>(nbytes(t, B * KV * d)) * ctx + 2.0 * static_cast<double>(bq)),
          "", TimelineRecord::Kind::kKernel);
  host_ops::attention(t, q, kc, vc, out, B, T, H, KV, d, S, start, window, scale, softcap);
}

void EmulatedDevice::softcap(int s, DType t, void* x, int64_t n, float cap) {
  enqueue(s, "softcap", "", {{x, nbytes(t, n), false, "input"}, {x, nbytes(t, n), true, "output"}},
          kernel_time(4.0 * static_cast<double>(n), 2.0 * static_cast<double>(nbytes(t, n))), "",
          TimelineRecord::Kind::kKernel);
  host_ops::softcap(t, x, n, cap);
}

void EmulatedDevice::moe_route(int s, DType t, const void* logits, int64_t M, int64_t E, int64_t K, bool norm_topk,
                               bool fp32_weights, int32_t* pick, float* weight, int32_t* counts) {
  const size_t rk = static_cast<size_t>(M * K);
  enqueue(s, "moe_route", "",
          {{logits, nbytes(t, M * E), false, "router logits"},
           {pick, rk * sizeof(int32_t), true, "expert choice"},
           {weight, rk * sizeof(float), true, "routing weights"},
           {counts, static_cast<size_t>(E) * sizeof(int32_t), true, "expert counts"}},
          kernel_time(4.0 * static_cast<double>(M * E * K), static_cast<double>(nbytes(t, M * E))), "",
          TimelineRecord::Kind::kKernel);
  host_ops::moe_route(t, logits, M, E, K, norm_topk, fp32_weights, pick, weight, counts);
}

void EmulatedDevice::moe_experts(int s, DType t, const void* x, int64_t M, int64_t H, int64_t I, int64_t E, int64_t K,
                                 const int32_t* pick, const float* weight, bool fp32_weights, const void* gate_up,
                                 const void* down, void* work, void* out) {
  const size_t rk = static_cast<size_t>(M * K);
  // The clock charges the weights of min(E, M * K) experts: the most a step can touch.
  const double touched = static_cast<double>(std::min(E, M * K));
  enqueue(s, "moe_experts", "",
          {{x, nbytes(t, M * H), false, "input"},
           {pick, rk * sizeof(int32_t), false, "expert choice"},
           {weight, rk * sizeof(float), false, "routing weights"},
           {gate_up, nbytes(t, E * 2 * I * H), false, "experts gate_up_proj"},
           {down, nbytes(t, E * H * I), false, "experts down_proj"},
           {work, moe_work_bytes(M, K, H, I), true, "MoE scratch"},
           {out, nbytes(t, M * H), true, "output"}},
          kernel_time(6.0 * static_cast<double>(M * K * H * I), touched * static_cast<double>(nbytes(t, 3 * H * I)) +
                                                                    2.0 * static_cast<double>(nbytes(t, M * H))),
          "", TimelineRecord::Kind::kKernel);
  host_ops::moe_experts(t, x, M, H, I, E, K, pick, weight, fp32_weights, gate_up, down, out, cfg_.threads);
}

int64_t EmulatedDevice::attention_max_context(int device, int64_t d) {
  use_device(device);
  // The CUDA kernel's limit on a 227 KiB-per-block GPU (H100/H200), so that contexts the real
  // kernel refuses are refused here too.
  return (227 * 1024) / static_cast<int64_t>(sizeof(float)) - d - 32;
}

void EmulatedDevice::to_float(int s, DType t, const void* x, float* y, int64_t n) {
  enqueue(s, "to_float", "", {{x, nbytes(t, n), false, "input"}, {y, static_cast<size_t>(n) * 4, true, "output"}},
          kernel_time(0, static_cast<double>(nbytes(t, n) + static_cast<size_t>(n) * 4)), "",
          TimelineRecord::Kind::kKernel);
  host_ops::to_float(t, x, y, n);
}

}  // namespace dmap::exec
