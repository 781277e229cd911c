// The executor of GPU placements over a DeviceRuntime (see device_model.h).
#include "exec/device/device_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <string>

#include "core/error.h"
#include "exec/layer_program.h"

namespace dmap::exec {

using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kAlign = 256;
size_t aligned(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// One GPU's streams, activation buffers and timing events.
struct GpuCtx {
  GpuCtx(DeviceRuntime& r, int d)
      : rt(r),
        dev(d),
        stream(r.create_stream(d, "compute")),
        copy(r.create_stream(d, "copy")),
        ref(r.create_event(d, true)) {}

  int next_event() {
    if (next == events.size()) events.push_back(rt.create_event(dev, true));
    return events[next++];
  }

  DeviceRuntime& rt;
  int dev;
  int stream;  // compute (and accelerate's blocking copies)
  int copy;    // prefetch copies
  DeviceMemory x, h, q, k, v, a, g, u, last, logits_t, logits_f, ids;
  DeviceMemory rope_cos, rope_sin, rope_cos_local, rope_sin_local;  // this forward's tables (T x rotary/2)
  DeviceMemory moe_logits, moe_pick, moe_weight, moe_work;          // MoE layers' router output and scratch
  int64_t cap_m = 0;                                                // rows the activation buffers hold
  std::vector<int> events;
  size_t next = 0;
  int ref;           // recorded at the start of each forward
  double ref_s = 0;  // host time of `ref`, seconds since the epoch
  size_t held = 0;   // bytes of weights, caches and buffers held here
  int64_t max_context = 0;
};

// A unit streamed under `prefetch`: its offloaded tensors packed into one slot.
struct PrefetchUnit {
  size_t unit = 0;
  std::vector<std::string> names;    // offloaded tensors
  std::vector<size_t> offsets;       // in the slot
  std::vector<size_t> host_offsets;  // cpu-stored: in `host`; disk-stored: in the staging buffer
  size_t bytes = 0;                  // slot bytes
  PinnedMemory host;                 // the cpu-stored tensors, packed
  bool has_disk = false;
};

}  // namespace

struct DeviceModel::Impl {
  Impl(std::shared_ptr<DeviceRuntime> r, const ExecConfig& c, const ModelWeights& w, Placement p, RunOptions o)
      : rtp(std::move(r)), rt(*rtp), cfg(c), weights(w), pl(std::move(p)), opt(o), epoch(Clock::now()) {}
  // Queued copies (the next forward's prefetch) read pinned buffers freed below: drain first.
  ~Impl() {
    for (auto& c : gpus) {
      if (c) rt.device_sync(c->dev);
    }
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  std::shared_ptr<DeviceRuntime> rtp;
  DeviceRuntime& rt;
  ExecConfig cfg;
  const ModelWeights& weights;
  Placement pl;
  RunOptions opt;
  Clock::time_point epoch;
  DType dt = DType::kFloat32;
  size_t elt = 4;
  Fault fault = Fault::kNone;
  std::vector<std::unique_ptr<GpuCtx>> gpus;  // by ordinal (null: unused)
  std::vector<int> exec_dev;                  // per unit: GPU ordinal or -1 (CPU backend)
  std::vector<std::vector<Step>> programs;    // per layer (exec/layer_program.h)
  NormMode norm_mode = NormMode::kLlama;
  std::vector<std::vector<std::string>> unit_tensors;
  std::map<std::pair<std::string, int>, DeviceMemory> resident;  // (tensor, GPU)
  std::map<std::string, const void*> streamed;                   // offloaded tensor -> its device copy now
  std::vector<DeviceMemory> kcache, vcache;                      // per layer (GPU layers)
  std::vector<DeviceMemory> moe_counts;                          // per sparse GPU layer: rows per expert
  ExpertCounts experts;                                          // GPU layers' (the CPU backend counts its own)
  std::unique_ptr<CpuModel> cpu;                                 // in-place units
  DiskReader disk;
  WeightBuffer disk_buf{nullptr, [](uint8_t*) {}};  // on 2 MiB pages, as CpuModel's (cpu_model.cpp)
  size_t disk_buf_bytes = 0;
  uint64_t h2d_bytes = 0;
  ModuleObserver* observer = nullptr;

  // prefetch
  std::vector<PrefetchUnit> pf;
  std::vector<int> pf_of_unit;  // unit -> index in pf, or -1
  DeviceMemory slot[2];
  PinnedMemory staging[2];
  int copy_done[2] = {-1, -1}, compute_done[2] = {-1, -1};
  bool compute_recorded[2] = {false, false};
  int issued[2] = {-1, -1};  // pf index whose copy sits in each slot, not yet consumed

  // activations on the host (CPU-backend units), and their pinned staging
  std::vector<float> hx, hlast;
  PinnedMemory act_pin;
  int x_at = -1, last_at = -1;  // GPU ordinal or -1 (host)

  // timing
  std::vector<ModuleTime> times;
  std::vector<ModuleEvent> events;
  bool prefill = true;
  struct Mark {
    int slot;
    int dev;  // -1: host clocks
    int a = -1, b = -1;
    double host_start = 0, host_dur = 0;
  };
  std::vector<Mark> marks;
  int64_t T = 0, start = 0;

  GpuCtx& gpu(int d) { return *gpus[static_cast<size_t>(d)]; }
  size_t layers() const { return static_cast<size_t>(cfg.layers); }
  int step() const { return prefill ? -1 : static_cast<int>(times[0].decode_s.size()) - 1; }
  void scope(size_t unit) { rt.set_scope(unit_name(unit), step()); }

  // ---- set-up ----------------------------------------------------------------------------------

  void setup() {
    const size_t units = layers() + 3;
    if (pl.units.size() != units)
      throw InternalError("placement has " + std::to_string(pl.units.size()) + " units, the model " +
                          std::to_string(units));
    const int count = rt.device_count();
    if (count == 0) throw RuntimeFailure("the placement needs a GPU but no " + rt.name() + " device is usable here");
    dt = weights.get("model.embed_tokens.weight").w.type;
    elt = elt_size(dt);
    times = module_slots(cfg);
    rt.set_scope("(set-up)", -1);

    // Unit tensors and execution devices.
    unit_tensors.assign(units, {});
    for (const auto& [name, shape] : ModelWeights::expected(cfg)) {
      (void)shape;
      if (name == "model.embed_tokens.weight") {
        unit_tensors[0].push_back(name);
      } else if (name == "model.norm.weight") {
        unit_tensors[layers() + 1].push_back(name);
      } else if (name == "lm_head.weight") {
        unit_tensors[layers() + 2].push_back(name);
      } else {
        const size_t l = std::stoul(name.substr(std::string("model.layers.").size()));
        unit_tensors[1 + l].push_back(name);
      }
    }
    if (cfg.tie) unit_tensors[layers() + 2].push_back("model.embed_tokens.weight");
    exec_dev.assign(units, -1);
    for (size_t u = 0; u < units; ++u) {
      const Device& d = pl.units[u];
      if (d.is_gpu()) {
        exec_dev[u] = d.index;
      } else if (pl.semantics != Semantics::kInPlace) {
        exec_dev[u] = pl.main_gpu;
      }
      if (exec_dev[u] >= count) {
        throw RuntimeFailure("the placement puts " + unit_name(u) + " on cuda:" + std::to_string(exec_dev[u]) +
                             " but this machine has " + std::to_string(count) + " " + rt.name() + " device" +
                             (count == 1 ? "" : "s"));
      }
      if (exec_dev[u] >= 0) {
        if (gpus.size() <= static_cast<size_t>(exec_dev[u])) gpus.resize(static_cast<size_t>(exec_dev[u]) + 1);
        if (!gpus[exec_dev[u]]) gpus[exec_dev[u]] = std::make_unique<GpuCtx>(rt, exec_dev[u]);
      } else if (!cpu) {
        cpu = std::make_unique<CpuModel>(cfg, weights, opt);
        cpu->set_epoch(epoch);
      }
    }
    for (size_t u = 0; u < units; ++u)
      for (const auto& n : unit_tensors[u])
        if (!pl.tensor_home.count(n)) throw InternalError("placement has no device for " + n);

    // Resident weights: tensors stored on a GPU, uploaded where their units compute.
    for (size_t u = 0; u < units; ++u) {
      const int g = exec_dev[u];
      if (g < 0) continue;
      for (const auto& n : unit_tensors[u]) {
        // A GPU-mapped unit's tensor stored off-GPU (a head tied to a cpu embedding) is streamed
        // by accelerate's hooks; prefetch and in-place keep it resident beside the unit.
        const Device home = pl.tensor_home.at(n);
        const bool offloaded_unit = !pl.units[u].is_gpu();
        if (!home.is_gpu() && (offloaded_unit || pl.semantics == Semantics::kAccelerate)) continue;
        if (resident.count({n, g})) continue;
        const WeightRef& r = weights.get(n);
        const size_t bytes = weight_bytes(r.w);
        DeviceMemory buf(rt, g, bytes, n);
        rt.use_device(g);
        rt.copy_h2d(buf.data(), r.w.data, bytes, gpu(g).stream, n);
        rt.stream_sync(gpu(g).stream);
        gpu(g).held += bytes;
        resident.emplace(std::make_pair(n, g), std::move(buf));
      }
    }

    // KV caches on each GPU layer's device; the attention kernel's context limit there.
    kcache.resize(layers());
    vcache.resize(layers());
    const size_t cache = static_cast<size_t>(opt.batch * cfg.kv_heads * opt.max_seq * cfg.head_dim) * elt;
    for (size_t l = 0; l < layers(); ++l) {
      const int g = exec_dev[1 + l];
      if (g < 0) continue;
      GpuCtx& c = gpu(g);
      if (c.max_context == 0) {
        c.max_context = rt.attention_max_context(g, cfg.head_dim);
        if (opt.max_seq > c.max_context) {
          throw RuntimeFailure("a context of " + std::to_string(opt.max_seq) +
                               " tokens exceeds what the attention kernel holds on cuda:" + std::to_string(g) + " (" +
                               std::to_string(c.max_context) + ")");
        }
      }
      const std::string name = "KV cache of model.layers." + std::to_string(l);
      kcache[l] = DeviceMemory(rt, g, cache, name);
      vcache[l] = DeviceMemory(rt, g, cache, name);
      c.held += 2 * cache;
    }

    // Each sparse GPU layer's expert counts (read back after each forward).
    moe_counts.resize(layers());
    for (size_t l = 0; l < layers(); ++l) {
      const int g = exec_dev[1 + l];
      if (g < 0 || !cfg.is_sparse(static_cast<int64_t>(l))) continue;
      moe_counts[l] = DeviceMemory(rt, g, static_cast<size_t>(cfg.experts) * sizeof(int32_t),
                                   "expert counts of model.layers." + std::to_string(l));
      gpu(g).held += moe_counts[l].bytes();
    }

    // RoPE tables on every GPU (filled per forward), and the layer programs.
    const size_t table = static_cast<size_t>(opt.max_seq * (cfg.rotary() / 2)) * sizeof(float);
    for (auto& c : gpus) {
      if (!c) continue;
      c->rope_cos = DeviceMemory(rt, c->dev, table, "RoPE cos table");
      c->rope_sin = DeviceMemory(rt, c->dev, table, "RoPE sin table");
      if (cfg.local_rope_theta > 0) {
        c->rope_cos_local = DeviceMemory(rt, c->dev, table, "local RoPE cos table");
        c->rope_sin_local = DeviceMemory(rt, c->dev, table, "local RoPE sin table");
      }
      c->held += 2 * table * (cfg.local_rope_theta > 0 ? 2 : 1);
    }
    for (int64_t l = 0; l < cfg.layers; ++l) programs.push_back(layer_program(cfg, l));
    norm_mode = cfg.gemma ? NormMode::kGemma : cfg.norm_mul_first ? NormMode::kMulFirst : NormMode::kLlama;

    if (pl.semantics == Semantics::kPrefetch) setup_prefetch();
  }

  void setup_prefetch() {
    pf_of_unit.assign(layers() + 3, -1);
    size_t slot_bytes = 0, staging_bytes = 0;
    for (size_t u = 0; u < layers() + 3; ++u) {
      if (pl.units[u].is_gpu() || exec_dev[u] < 0) continue;
      PrefetchUnit p;
      p.unit = u;
      size_t disk_bytes = 0, host_bytes = 0;
      for (const auto& n : unit_tensors[u]) {
        if (pl.tensor_home.at(n).is_gpu()) continue;
        const WeightRef& r = weights.get(n);
        const size_t b = aligned(weight_bytes(r.w));
        p.names.push_back(n);
        p.offsets.push_back(p.bytes);
        p.bytes += b;
        size_t& side = r.on_disk ? disk_bytes : host_bytes;
        p.host_offsets.push_back(side);
        side += b;
        p.has_disk |= r.on_disk;
      }
      if (p.names.empty()) continue;
      // cpu-stored tensors wait in pinned memory; disk ones are read into pinned staging per use.
      if (host_bytes > 0) p.host = PinnedMemory(rt, host_bytes, "pinned copy of " + unit_name(u));
      for (size_t i = 0; i < p.names.size(); ++i) {
        const WeightRef& r = weights.get(p.names[i]);
        if (r.on_disk) continue;
        uint8_t* dst = static_cast<uint8_t*>(p.host.data()) + p.host_offsets[i];
        rt.host_access(dst, weight_bytes(r.w), true, p.names[i]);
        std::memcpy(dst, r.w.data, weight_bytes(r.w));
      }
      staging_bytes = std::max(staging_bytes, disk_bytes);
      slot_bytes = std::max(slot_bytes, p.bytes);
      pf_of_unit[u] = static_cast<int>(pf.size());
      pf.push_back(std::move(p));
    }
    if (pf.empty()) return;
    const int g = pl.main_gpu;
    for (int s = 0; s < 2; ++s) {
      slot[s] = DeviceMemory(rt, g, slot_bytes, "prefetch buffer " + std::to_string(s));
      gpu(g).held += slot_bytes;
      if (staging_bytes > 0) staging[s] = PinnedMemory(rt, staging_bytes, "disk staging buffer " + std::to_string(s));
      copy_done[s] = rt.create_event(g, false);
      compute_done[s] = rt.create_event(g, false);
    }
  }

  std::string unit_name(size_t u) const {
    if (u == 0) return "model.embed_tokens";
    if (u == layers() + 1) return "model.norm";
    if (u == layers() + 2) return "lm_head";
    return "model.layers." + std::to_string(u - 1);
  }

  // ---- buffers ---------------------------------------------------------------------------------

  void ensure_buffers(GpuCtx& c, int64_t M) {
    if (M <= c.cap_m) return;
    const int64_t H = cfg.hidden, qd = cfg.heads * cfg.head_dim, kvd = cfg.kv_heads * cfg.head_dim;
    auto sz = [&](int64_t n) { return static_cast<size_t>(n) * elt; };
    std::initializer_list<DeviceMemory*> grown = {
        &c.x, &c.h, &c.q, &c.k, &c.v, &c.a, &c.g, &c.u, &c.ids, &c.moe_logits, &c.moe_pick, &c.moe_weight, &c.moe_work};
    for (DeviceMemory* b : grown) {
      c.held -= b->bytes();
      b->reset();  // free before growing
    }
    c.x = DeviceMemory(rt, c.dev, sz(M * H), "activations x");
    c.h = DeviceMemory(rt, c.dev, sz(M * H), "activations h");
    c.q = DeviceMemory(rt, c.dev, sz(M * qd), "query activations");
    c.k = DeviceMemory(rt, c.dev, sz(M * kvd), "key activations");
    c.v = DeviceMemory(rt, c.dev, sz(M * kvd), "value activations");
    c.a = DeviceMemory(rt, c.dev, sz(M * qd), "attention output");
    c.g = DeviceMemory(rt, c.dev, sz(M * cfg.inter), "MLP gate activations");
    c.u = DeviceMemory(rt, c.dev, sz(M * cfg.inter), "MLP up activations");
    c.ids = DeviceMemory(rt, c.dev, static_cast<size_t>(M) * sizeof(int32_t), "token ids");
    if (has_moe(cfg)) {
      const int64_t K = cfg.top_k;
      c.moe_logits = DeviceMemory(rt, c.dev, sz(M * cfg.experts), "router logits");
      c.moe_pick = DeviceMemory(rt, c.dev, static_cast<size_t>(M * K) * sizeof(int32_t), "expert choice");
      c.moe_weight = DeviceMemory(rt, c.dev, static_cast<size_t>(M * K) * sizeof(float), "routing weights");
      c.moe_work = DeviceMemory(rt, c.dev, moe_work_bytes(M, K, H, cfg.moe_inter), "MoE scratch");
    }
    for (DeviceMemory* b : grown) c.held += b->bytes();
    if (!c.last.data()) {
      c.last = DeviceMemory(rt, c.dev, sz(opt.batch * H), "last positions");
      c.logits_t = DeviceMemory(rt, c.dev, sz(opt.batch * cfg.vocab), "logits");
      c.logits_f =
          DeviceMemory(rt, c.dev, static_cast<size_t>(opt.batch * cfg.vocab) * sizeof(float), "float32 logits");
      c.held += c.last.bytes() + c.logits_t.bytes() + c.logits_f.bytes();
    }
    c.cap_m = M;
  }

  void* act_staging(size_t bytes) {
    if (act_pin.bytes() < bytes) act_pin = PinnedMemory(rt, bytes, "activation staging");
    return act_pin.data();
  }

  // ---- activations between devices -------------------------------------------------------------

  // Moves `rows` x hidden activations (x, or the last positions) from where they are to `dst`.
  void move(bool last, int64_t rows, int dst) {
    int& at = last ? last_at : x_at;
    if (at == dst) return;
    const int64_t n = rows * cfg.hidden;
    const size_t bytes = static_cast<size_t>(n) * elt;
    std::vector<float>& host = last ? hlast : hx;
    const char* what = last ? "last positions" : "activations x";
    auto dev_buf = [&](int g) { return last ? gpu(g).last.data() : gpu(g).x.data(); };
    if (at >= 0 && dst >= 0) {
      rt.use_device(at);
      rt.copy_peer(dev_buf(dst), dst, dev_buf(at), at, bytes, gpu(at).stream, what);
      rt.stream_sync(gpu(at).stream);
    } else if (at >= 0) {  // GPU -> host float32
      void* stage = act_staging(bytes);
      rt.use_device(at);
      rt.copy_d2h(stage, dev_buf(at), bytes, gpu(at).stream, what);
      rt.stream_sync(gpu(at).stream);
      rt.host_access(stage, bytes, false, what);
      host.resize(static_cast<size_t>(n));
      to_host_float(stage, host.data(), n);
    } else {  // host float32 -> GPU
      void* stage = act_staging(bytes);
      rt.host_access(stage, bytes, true, what);
      from_host_float(host.data(), stage, n);
      rt.use_device(dst);
      rt.copy_h2d(dev_buf(dst), stage, bytes, gpu(dst).stream, what);
      rt.stream_sync(gpu(dst).stream);
    }
    at = dst;
  }

  void to_host_float(const void* src, float* dst, int64_t n) const {
    if (dt == DType::kFloat32) {
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    }
    const auto* s = static_cast<const uint16_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = dt == DType::kBFloat16 ? cpu::bf16_to_f32(s[i]) : cpu::f16_to_f32(s[i]);
  }
  void from_host_float(const float* src, void* dst, int64_t n) const {
    if (dt == DType::kFloat32) {
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    }
    auto* d = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = dt == DType::kBFloat16 ? cpu::f32_to_bf16(src[i]) : cpu::f32_to_f16(src[i]);
  }

  // ---- weights of offloaded units --------------------------------------------------------------

  const void* W(const std::string& name, int g) const {
    auto r = resident.find({name, g});
    if (r != resident.end()) return r->second.data();
    auto s = streamed.find(name);
    if (s != streamed.end()) return s->second;
    throw InternalError("weight " + name + " is not on cuda:" + std::to_string(g));
  }

  // accelerate: before a leaf's forward, each of its offloaded tensors gets a fresh allocation
  // and one blocking copy from pageable memory; the allocations are released after the leaf.
  std::vector<DeviceMemory> acquire(std::initializer_list<std::string> names, int g) {
    std::vector<DeviceMemory> held;
    if (pl.semantics != Semantics::kAccelerate) return held;
    GpuCtx& c = gpu(g);
    for (const auto& n : names) {
      if (!weights.has(n) || resident.count({n, g}) || pl.tensor_home.at(n).is_gpu()) continue;
      const WeightRef& r = weights.get(n);
      const size_t bytes = weight_bytes(r.w);
      const void* src = r.w.data;
      if (r.on_disk) {
        if (bytes > disk_buf_bytes) {
          disk_buf = weight_buffer(bytes);
          disk_buf_bytes = bytes;
        }
        disk.read(r, disk_buf.get(), opt.drop_page_cache, opt.threads);
        src = disk_buf.get();
      }
      DeviceMemory buf(rt, g, bytes, n);
      rt.copy_h2d(buf.data(), src, bytes, c.stream, n);
      rt.stream_sync(c.stream);
      h2d_bytes += bytes;
      streamed[n] = buf.data();
      held.push_back(std::move(buf));
    }
    return held;
  }
  void release(std::vector<DeviceMemory>& held, int g) {
    if (held.empty()) return;
    rt.stream_sync(gpu(g).stream);
    for (auto it = streamed.begin(); it != streamed.end();) {
      const bool freed =
          std::any_of(held.begin(), held.end(), [&](const DeviceMemory& b) { return b.data() == it->second; });
      it = freed ? streamed.erase(it) : std::next(it);
    }
    held.clear();
  }

  // prefetch: copies pf unit i into slot i % 2 on the copy stream (after the slot's last reader).
  void issue(size_t i) {
    const int s = static_cast<int>(i % 2);
    if (issued[s] == static_cast<int>(i)) return;
    const int g = pl.main_gpu;
    GpuCtx& c = gpu(g);
    rt.use_device(g);
    PrefetchUnit& p = pf[i];
    if (compute_recorded[s] && fault != Fault::kNoSlotWait) rt.wait(c.copy, compute_done[s]);
    if (p.has_disk) rt.event_sync(copy_done[s]);  // staging[s] free again
    for (size_t t = 0; t < p.names.size(); ++t) {
      const WeightRef& r = weights.get(p.names[t]);
      const size_t bytes = weight_bytes(r.w);
      const void* src = static_cast<const uint8_t*>(p.host.data()) + p.host_offsets[t];
      if (r.on_disk) {
        void* stage = static_cast<uint8_t*>(staging[s].data()) + p.host_offsets[t];
        rt.host_access(stage, bytes, true, p.names[t]);
        disk.read(r, stage, opt.drop_page_cache, opt.threads);
        src = stage;
      }
      rt.copy_h2d(static_cast<uint8_t*>(slot[s].data()) + p.offsets[t], src, bytes, c.copy, p.names[t]);
      h2d_bytes += bytes;
    }
    rt.record(copy_done[s], c.copy);
    issued[s] = static_cast<int>(i);
  }

  // Before a prefetched unit computes (inside its first module's timing, so a copy stall counts):
  // its copy issued if it is not yet, the compute stream waiting for its slot, its tensors pointed
  // at the slot.
  void begin_prefetched(size_t u) {
    const int i = pf_of_unit.empty() ? -1 : pf_of_unit[u];
    if (i < 0) return;
    issue(static_cast<size_t>(i));
    const int s = i % 2;
    GpuCtx& c = gpu(pl.main_gpu);
    if (fault != Fault::kNoCopyWait) rt.wait(c.stream, copy_done[s]);
    const PrefetchUnit& p = pf[static_cast<size_t>(i)];
    for (size_t t = 0; t < p.names.size(); ++t)
      streamed[p.names[t]] = static_cast<uint8_t*>(slot[s].data()) + p.offsets[t];
  }
  void end_prefetched(size_t u) {
    const int i = pf_of_unit.empty() ? -1 : pf_of_unit[u];
    if (i < 0) return;
    const int s = i % 2;
    rt.record(compute_done[s], gpu(pl.main_gpu).stream);
    compute_recorded[s] = true;
    issued[s] = -1;
    for (const auto& n : pf[static_cast<size_t>(i)].names) streamed.erase(n);
    // The next unit's copy (and disk read) goes out now that this unit's kernels are queued, so
    // it overlaps them; the copy stream waits for the slot's previous reader.
    if (static_cast<size_t>(i) + 1 < pf.size()) issue(static_cast<size_t>(i) + 1);
  }

  // ---- timing ----------------------------------------------------------------------------------

  void mark_begin(int slot, int dev) {
    if (observer) observer->begin(times[static_cast<size_t>(slot)].module, step());
    Mark m{slot, dev};
    if (dev >= 0) {
      m.a = gpu(dev).next_event();
      m.b = gpu(dev).next_event();
      rt.record(m.a, gpu(dev).stream);
    } else {
      m.host_start = std::chrono::duration<double>(Clock::now() - epoch).count();
    }
    marks.push_back(m);
  }
  void mark_end() {
    Mark& m = marks.back();
    if (m.dev >= 0) {
      rt.record(m.b, gpu(m.dev).stream);
    } else {
      const auto now = Clock::now();
      m.host_dur = std::chrono::duration<double>(now - epoch).count() - m.host_start;
      if (observer) {
        const auto t0 =
            epoch + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(m.host_start));
        observer->host_range(times[static_cast<size_t>(m.slot)].module, step(), t0, now);
      }
    }
    if (observer) observer->end();
  }

  void begin_forward() {
    marks.clear();
    for (auto& c : gpus) {
      if (!c) continue;
      c->next = 0;
      rt.use_device(c->dev);
      rt.record(c->ref, c->stream);
      rt.event_sync(c->ref);
      c->ref_s = std::chrono::duration<double>(Clock::now() - epoch).count();
    }
  }

  void end_forward() {
    for (auto& c : gpus) {
      if (c) rt.stream_sync(c->stream);
    }
    count_experts();
    for (const Mark& m : marks) {
      double start_s = m.host_start, dur = m.host_dur;
      if (m.dev >= 0) {
        const GpuCtx& c = gpu(m.dev);
        start_s = c.ref_s + rt.elapsed_ms(c.ref, m.a) / 1e3;
        dur = rt.elapsed_ms(m.a, m.b) / 1e3;
      }
      ModuleTime& t = times[static_cast<size_t>(m.slot)];
      if (prefill) {
        t.prefill_s += dur;
      } else if (!t.decode_s.empty()) {
        t.decode_s.back() += dur;
      }
      if (opt.record_events) events.push_back({m.slot, step(), start_s, dur});
    }
  }

  // The sparse GPU layers' expert counts of this forward, read back (after the timed work).
  void count_experts() {
    std::vector<int32_t> n(static_cast<size_t>(cfg.experts));
    for (size_t l = 0; l < layers(); ++l) {
      if (!moe_counts[l].data()) continue;
      GpuCtx& c = gpu(moe_counts[l].device());
      rt.use_device(c.dev);
      rt.copy_d2h(n.data(), moe_counts[l].data(), n.size() * sizeof(int32_t), c.stream, "expert counts");
      rt.stream_sync(c.stream);
      const int64_t touched = std::count_if(n.begin(), n.end(), [](int32_t v) { return v > 0; });
      (prefill ? experts.prefill_forwards : experts.decode_forwards) += 1;
      (prefill ? experts.prefill_touched : experts.decode_touched) += touched;
      (prefill ? experts.prefill_rows : experts.decode_rows) += opt.batch * T;
    }
  }

  // ---- the forward -----------------------------------------------------------------------------

  // This forward's RoPE tables (exec/layer_program.h: rope_tables) onto every GPU.
  void upload_rope_tables() {
    std::vector<float> cs, sn, cs_local, sn_local;
    rope_tables(cfg, rope_frequencies(cfg, start + T, false), dt, T, start, cs, sn);
    if (cfg.local_rope_theta > 0)
      rope_tables(cfg, rope_frequencies(cfg, start + T, true), dt, T, start, cs_local, sn_local);
    const size_t bytes = cs.size() * sizeof(float);
    for (auto& c : gpus) {
      if (!c) continue;
      rt.use_device(c->dev);
      rt.copy_h2d(c->rope_cos.data(), cs.data(), bytes, c->stream, "RoPE cos table");
      rt.copy_h2d(c->rope_sin.data(), sn.data(), bytes, c->stream, "RoPE sin table");
      if (cfg.local_rope_theta > 0) {
        rt.copy_h2d(c->rope_cos_local.data(), cs_local.data(), bytes, c->stream, "local RoPE cos table");
        rt.copy_h2d(c->rope_sin_local.data(), sn_local.data(), bytes, c->stream, "local RoPE sin table");
      }
      rt.stream_sync(c->stream);  // the host tables go out of scope
    }
  }

  void embed_unit(const int32_t* ids, int64_t M) {
    const int g = exec_dev[0];
    x_at = g;
    scope(0);
    if (g < 0) {
      hx.resize(static_cast<size_t>(M * cfg.hidden));
      cpu->embed(ids, hx.data());
      return;
    }
    mark_begin(0, g);
    begin_prefetched(0);
    {
      GpuCtx& c = gpu(g);
      rt.use_device(g);
      auto held = acquire({"model.embed_tokens.weight"}, g);
      rt.copy_h2d(c.ids.data(), ids, static_cast<size_t>(M) * sizeof(int32_t), c.stream, "token ids");
      const float scale = cfg.gemma ? gemma_scale() : 1.0f;
      rt.embed(c.stream, dt, W("model.embed_tokens.weight", g), cfg.vocab, c.ids.as<int32_t>(), M, cfg.hidden, scale,
               c.x.data());
      release(held, g);
    }
    mark_end();
    end_prefetched(0);
  }

  float gemma_scale() const {
    const float s = std::sqrt(static_cast<float>(cfg.hidden));
    if (dt == DType::kBFloat16) return cpu::round_bf16(s);
    if (dt == DType::kFloat16) return cpu::f16_to_f32(cpu::f32_to_f16(s));
    return s;
  }

  // y = x W^T (+ bias) for the leaf `proj` of layer prefix p.
  void linear(GpuCtx& c, const std::string& w, const std::string& bias, const void* x, int64_t M, int64_t K, int64_t N,
              void* y) {
    auto held = acquire({w, bias}, c.dev);
    const bool has_bias = !bias.empty() && weights.has(bias);
    if (has_bias) rt.broadcast_rows(c.stream, dt, W(bias, c.dev), M, N, y);
    rt.gemm(c.stream, dt, x, M, K, W(w, c.dev), N, y, has_bias);
    release(held, c.dev);
  }

  // Runs layer l's program (exec/layer_program.h) on its GPU.
  void layer_unit(size_t l, int64_t M) {
    const size_t u = 1 + l;
    const int g = exec_dev[u];
    scope(u);
    move(false, M, g);
    if (g < 0) {  // the CPU backend times its modules itself (merge_cpu_times)
      cpu->layer(static_cast<int64_t>(l), hx.data());
      return;
    }
    GpuCtx& c = gpu(g);
    rt.use_device(g);
    const int st = c.stream;
    const int64_t d = cfg.head_dim;
    const float eps = static_cast<float>(cfg.eps);
    auto buf = [&](Act a) -> void* {
      switch (a) {
        case Act::kX: return c.x.data();
        case Act::kH: return c.h.data();
        case Act::kQ: return c.q.data();
        case Act::kK: return c.k.data();
        case Act::kV: return c.v.data();
        case Act::kA: return c.a.data();
        case Act::kG: return c.g.data();
        case Act::kU: return c.u.data();
      }
      return nullptr;
    };
    // accelerate's hooks copy a leaf's tensors once per leaf forward: a fused projection's slices
    // share one copy (held until a step reads another weight).
    std::vector<DeviceMemory> held;
    std::string held_weight;
    auto hold = [&](const std::string& w, const std::string& bias) {
      if (w == held_weight) return;
      release(held, g);
      held = acquire({w, bias}, g);
      held_weight = w;
    };
    bool open = false, first = true;
    for (const Step& s : programs[l]) {
      switch (s.op) {
        case Step::Op::kModule:
          release(held, g);
          held_weight.clear();
          if (open) mark_end();
          mark_begin(s.slot, g);
          if (first) begin_prefetched(u);  // inside the first module's timing: a copy stall counts
          open = true;
          first = false;
          break;
        case Step::Op::kNorm:
          hold(s.weight, "");
          rt.rmsnorm(st, dt, buf(s.src), W(s.weight, g), M * s.groups, s.width, eps, norm_mode, buf(s.dst));
          break;
        case Step::Op::kLinear: {
          hold(s.weight, s.bias);
          const bool has_bias = !s.bias.empty() && weights.has(s.bias);
          const size_t offset = static_cast<size_t>(s.row0 * s.k) * elt;
          if (has_bias) {
            rt.broadcast_rows(st, dt, static_cast<const uint8_t*>(W(s.bias, g)) + static_cast<size_t>(s.row0) * elt, M,
                              s.n, buf(s.dst));
          }
          rt.gemm(st, dt, buf(s.src), M, s.k, static_cast<const uint8_t*>(W(s.weight, g)) + offset, s.n, buf(s.dst),
                  has_bias);
          break;
        }
        case Step::Op::kRope: {
          const bool local = cfg.local_rope_theta > 0 && cfg.window(static_cast<int64_t>(l)) > 0;
          rt.rope(st, dt, c.q.data(), c.k.data(), M, T, cfg.heads, cfg.kv_heads, d, cfg.rotary(),
                  (local ? c.rope_cos_local : c.rope_cos).as<float>(),
                  (local ? c.rope_sin_local : c.rope_sin).as<float>(), cfg.rope_fp32);
          break;
        }
        case Step::Op::kAttention: {
          const float scale =
              cfg.attn_scale > 0 ? static_cast<float>(cfg.attn_scale) : 1.0f / std::sqrt(static_cast<float>(d));
          rt.kv_store(st, dt, c.k.data(), c.v.data(), kcache[l].data(), vcache[l].data(), opt.batch, T, cfg.kv_heads, d,
                      opt.max_seq, start);
          rt.attention(st, dt, c.q.data(), kcache[l].data(), vcache[l].data(), c.a.data(), opt.batch, T, cfg.heads,
                       cfg.kv_heads, d, opt.max_seq, start, cfg.window(static_cast<int64_t>(l)), scale,
                       static_cast<float>(cfg.attn_softcap));
          break;
        }
        case Step::Op::kGatedAct: rt.gated_act(st, dt, c.g.data(), c.u.data(), M * cfg.inter, cfg.gemma); break;
        case Step::Op::kResidual: rt.add_residual(st, dt, c.x.data(), c.h.data(), M * cfg.hidden); break;
        case Step::Op::kMoe: {
          // The router is a leaf (its weight copied alone under accelerate); the experts module
          // holds both 3-D tensors, copied together, whole, on every forward.
          const std::string gate = s.prefix + "mlp.gate.weight", gu = s.prefix + "mlp.experts.gate_up_proj",
                            down = s.prefix + "mlp.experts.down_proj";
          const int64_t E = cfg.experts, K = cfg.top_k;
          hold(gate, "");
          rt.gemm(st, dt, buf(s.src), M, cfg.hidden, W(gate, g), E, c.moe_logits.data(), false);
          rt.moe_route(st, dt, c.moe_logits.data(), M, E, K, cfg.norm_topk, cfg.router_fp32_weights,
                       c.moe_pick.as<int32_t>(), c.moe_weight.as<float>(), moe_counts[l].as<int32_t>());
          hold(gu, down);
          rt.moe_experts(st, dt, buf(s.src), M, cfg.hidden, cfg.moe_inter, E, K, c.moe_pick.as<int32_t>(),
                         c.moe_weight.as<float>(), cfg.router_fp32_weights, W(gu, g), W(down, g), c.moe_work.data(),
                         buf(s.dst));
          break;
        }
      }
    }
    release(held, g);
    if (open) mark_end();
    end_prefetched(u);
  }

  // The last position of each sequence, gathered where x is.
  void gather_last() {
    const int64_t B = opt.batch, H = cfg.hidden;
    if (x_at < 0) {
      hlast.resize(static_cast<size_t>(B * H));
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(hlast.data() + b * H, hx.data() + (b * T + T - 1) * H, sizeof(float) * H);
    } else {
      GpuCtx& c = gpu(x_at);
      rt.use_device(x_at);
      const size_t row = static_cast<size_t>(H) * elt;
      for (int64_t b = 0; b < B; ++b) {
        rt.copy_d2d(static_cast<uint8_t*>(c.last.data()) + b * row,
                    static_cast<uint8_t*>(c.x.data()) + (b * T + T - 1) * row, row, c.stream, "last positions");
      }
    }
    last_at = x_at;
  }

  void norm_unit() {
    const size_t u = layers() + 1;
    const int g = exec_dev[u];
    const int slot = static_cast<int>(times.size()) - 2;
    scope(u);
    move(true, opt.batch, g);
    if (g < 0) {
      cpu->final_norm(hlast.data());
      return;
    }
    GpuCtx& c = gpu(g);
    rt.use_device(g);
    mark_begin(slot, g);
    begin_prefetched(u);
    auto held = acquire({"model.norm.weight"}, g);
    rt.rmsnorm(c.stream, dt, c.last.data(), W("model.norm.weight", g), opt.batch, cfg.hidden,
               static_cast<float>(cfg.eps), norm_mode, c.last.data());
    release(held, g);
    mark_end();
    end_prefetched(u);
  }

  void head_unit(float* logits) {
    const size_t u = layers() + 2;
    const int g = exec_dev[u];
    const int slot = static_cast<int>(times.size()) - 1;
    scope(u);
    move(true, opt.batch, g);
    if (g < 0) {
      cpu->head(hlast.data(), logits);
      return;
    }
    GpuCtx& c = gpu(g);
    rt.use_device(g);
    mark_begin(slot, g);
    begin_prefetched(u);
    const std::string w = cfg.tie ? "model.embed_tokens.weight" : "lm_head.weight";
    linear(c, w, "", c.last.data(), opt.batch, cfg.hidden, cfg.vocab, c.logits_t.data());
    if (cfg.final_softcap > 0)
      rt.softcap(c.stream, dt, c.logits_t.data(), opt.batch * cfg.vocab, static_cast<float>(cfg.final_softcap));
    rt.to_float(c.stream, dt, c.logits_t.data(), c.logits_f.as<float>(), opt.batch * cfg.vocab);
    mark_end();
    end_prefetched(u);
    rt.copy_d2h(logits, c.logits_f.data(), static_cast<size_t>(opt.batch * cfg.vocab) * sizeof(float), c.stream,
                "logits");
  }

  void forward(const int32_t* ids, int64_t T_, int64_t start_, float* logits) {
    if (start_ + T_ > opt.max_seq)
      throw RuntimeFailure("context " + std::to_string(start_ + T_) + " exceeds max_seq " +
                           std::to_string(opt.max_seq));
    const int64_t M = opt.batch * T_;
    for (int64_t r = 0; r < M; ++r) {
      if (ids[r] < 0 || ids[r] >= cfg.vocab)
        throw InputError("token id " + std::to_string(ids[r]) + " is outside the vocabulary (0.." +
                         std::to_string(cfg.vocab - 1) + ")");
    }
    T = T_;
    start = start_;
    rt.set_scope("(buffers)", step());
    for (auto& c : gpus) {
      if (c) ensure_buffers(*c, M);
    }
    if (cpu) cpu->prepare(T, start);
    upload_rope_tables();
    const size_t host_events = cpu ? cpu->events().size() : 0;
    begin_forward();
    embed_unit(ids, M);
    for (size_t l = 0; l < layers(); ++l) layer_unit(l, M);
    gather_last();
    norm_unit();
    head_unit(logits);
    // The first streamed unit of the next forward is copied behind this one (not when it is read
    // from disk: that read would land inside this forward).
    if (!pf.empty() && !pf[0].has_disk) {
      scope(pf[0].unit);
      issue(0);
    }
    end_forward();
    if (cpu) merge_cpu_times(host_events);
  }

  // CPU-backend modules were timed by the CPU backend: take its figures for them.
  void merge_cpu_times(size_t first_event) {
    const auto& ct = cpu->module_times();
    for (size_t u = 0; u < layers() + 3; ++u) {
      if (exec_dev[u] >= 0) continue;
      std::vector<size_t> slots;
      if (u == 0) {
        slots = {0};
      } else if (u == layers() + 1) {
        slots = {times.size() - 2};
      } else if (u == layers() + 2) {
        slots = {times.size() - 1};
      } else {
        const size_t per = layer_modules(cfg).size();
        for (size_t s = 1 + (u - 1) * per; s < 1 + u * per; ++s) slots.push_back(s);
      }
      for (size_t s : slots) {
        if (prefill) {
          times[s].prefill_s = ct[s].prefill_s;
        } else if (!times[s].decode_s.empty() && !ct[s].decode_s.empty()) {
          times[s].decode_s.back() = ct[s].decode_s.back();
        }
      }
    }
    const auto& ce = cpu->events();
    for (size_t i = first_event; i < ce.size(); ++i) {
      if (opt.record_events) events.push_back(ce[i]);
      if (observer) {
        const ModuleEvent& e = ce[i];
        const auto t0 = epoch + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(e.start_s));
        const auto t1 = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(e.dur_s));
        observer->host_range(times[static_cast<size_t>(e.module)].module, e.step, t0, t1);
      }
    }
  }
};

DeviceModel::DeviceModel(std::shared_ptr<DeviceRuntime> rt, const ExecConfig& cfg, const ModelWeights& weights,
                         Placement placement, RunOptions opt) {
  DMAP_CHECK(rt != nullptr, "a device model needs a runtime");
  DMAP_CHECK(opt.batch > 0 && opt.max_seq > 0, "batch and max_seq must be positive");
  impl_ = std::make_unique<Impl>(std::move(rt), cfg, weights, std::move(placement), opt);
  impl_->opt.threads = std::max(1, impl_->opt.threads);
  impl_->setup();
}

DeviceModel::~DeviceModel() = default;

void DeviceModel::forward(const int32_t* ids, int64_t T, int64_t start, float* logits) {
  impl_->forward(ids, T, start, logits);
}

void DeviceModel::begin_phase(bool prefill) {
  impl_->prefill = prefill;
  if (!prefill) {
    for (auto& t : impl_->times) t.decode_s.push_back(0);
  }
  if (impl_->cpu) impl_->cpu->begin_phase(prefill);
}

const std::vector<ModuleTime>& DeviceModel::module_times() const { return impl_->times; }
const std::vector<ModuleEvent>& DeviceModel::events() const { return impl_->events; }
const ExecConfig& DeviceModel::config() const { return impl_->cfg; }
const RunOptions& DeviceModel::options() const { return impl_->opt; }
uint64_t DeviceModel::disk_bytes_read() const {
  return impl_->disk.bytes_read() + (impl_->cpu ? impl_->cpu->disk_bytes_read() : 0);
}
double DeviceModel::disk_read_seconds() const {
  return impl_->disk.seconds_reading() + (impl_->cpu ? impl_->cpu->disk_read_seconds() : 0);
}
void DeviceModel::set_observer(ModuleObserver* observer) {
  impl_->observer = observer;
  // CPU-backend modules reach the observer through the CPU model's events.
  if (impl_->cpu) impl_->cpu->set_record_events(observer != nullptr || impl_->opt.record_events);
}
void DeviceModel::set_drop_page_cache(bool drop) {
  impl_->opt.drop_page_cache = drop;
  if (impl_->cpu) impl_->cpu->set_drop_page_cache(drop);
}
uint64_t DeviceModel::h2d_weight_bytes() const { return impl_->h2d_bytes; }
ExpertCounts DeviceModel::expert_counts() const {
  ExpertCounts e = impl_->experts;
  if (impl_->cpu) {
    const ExpertCounts h = impl_->cpu->expert_counts();
    e.prefill_forwards += h.prefill_forwards;
    e.decode_forwards += h.decode_forwards;
    e.prefill_touched += h.prefill_touched;
    e.decode_touched += h.decode_touched;
    e.prefill_rows += h.prefill_rows;
    e.decode_rows += h.decode_rows;
  }
  return e;
}
int DeviceModel::execution_device(size_t unit) const { return impl_->exec_dev.at(unit); }
DeviceRuntime& DeviceModel::runtime() const { return impl_->rt; }
void DeviceModel::set_fault(Fault f) { impl_->fault = f; }

std::vector<std::pair<int, size_t>> DeviceModel::device_bytes() const {
  std::vector<std::pair<int, size_t>> out;
  for (const auto& c : impl_->gpus) {
    if (c) out.emplace_back(c->dev, c->held);
  }
  return out;
}

}  // namespace dmap::exec
