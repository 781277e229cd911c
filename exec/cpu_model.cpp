// The CPU forward pass (see cpu_model.h).
#include "exec/cpu_model.h"

#include <algorithm>
#include <numeric>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include <omp.h>

#include "core/error.h"
#include "exec/layer_program.h"
#include "exec/cpu/two_ended.h"
#include "exec/parallel.h"

namespace dmap::exec {

using cpu::round_to;

namespace {

// Element i of a weight, as float32.
float element(const cpu::Weight& w, int64_t i) { return cpu::load(w.type, w.data, i); }

using Clock = std::chrono::steady_clock;

// On unless the environment has DMAP_DISK_STREAM=whole: decode then reads each disk-offloaded
// tensor whole before its product, as prefill does (for side-by-side measurements).
bool stream_disk_on() {
  static const bool on = [] {
    const char* e = std::getenv("DMAP_DISK_STREAM");
    return !(e && std::string(e) == "whole");
  }();
  return on;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

CpuModel::CpuModel(const ExecConfig& cfg, const ModelWeights& weights, RunOptions opt)
    : cfg_(cfg), w_(weights), opt_(opt), epoch_(std::chrono::steady_clock::now()) {
  DMAP_CHECK(opt_.batch > 0 && opt_.max_seq > 0, "batch and max_seq must be positive");
  opt_.threads = std::max(1, opt_.threads);
  act_type_ = w_.get("model.embed_tokens.weight").w.type;
  inv_freq_ = rope_inv_freq(cfg_);
  if (cfg_.local_rope_theta > 0) inv_freq_local_ = rope_inv_freq(cfg_, true);
  if (!cfg_.longrope_long.empty()) inv_freq_long_ = rope_inv_freq(cfg_, false, true);
  // Norm gains in float32 (gemma: 1 + w), converted once.
  for (const auto& [name, shape] : ModelWeights::expected(cfg_)) {
    if (shape.size() != 1 || name.find("norm.weight") == std::string::npos) continue;
    const cpu::Weight& g = w_.get(name).w;
    std::vector<float> v(static_cast<size_t>(g.cols));
    for (int64_t i = 0; i < g.cols; ++i) v[i] = element(g, i) + (cfg_.gemma ? 1.0f : 0.0f);
    gains_.emplace(name, std::move(v));
  }
  layer_modules_ = layer_modules(cfg_);
  for (int64_t l = 0; l < cfg_.layers; ++l) programs_.push_back(layer_program(cfg_, l));
  // KV caches are allocated by the first forward through their layer: an executor that runs
  // only some layers here (the CUDA backend's in-place semantics) holds only those.
  k_cache_.resize(static_cast<size_t>(cfg_.layers));
  v_cache_.resize(static_cast<size_t>(cfg_.layers));
  times_ = module_slots(cfg_);
}

void CpuModel::begin_phase(bool prefill) {
  prefill_phase_ = prefill;
  if (!prefill) {
    for (auto& t : times_) t.decode_s.push_back(0);
  }
}

void CpuModel::add_time(int slot, Clock::time_point t0) {
  const auto t1 = Clock::now();
  const double s = std::chrono::duration<double>(t1 - t0).count();
  if (opt_.record_events) {
    events_.push_back({slot, prefill_phase_ ? -1 : static_cast<int>(times_[slot].decode_s.size()) - 1,
                       std::chrono::duration<double>(t0 - epoch_).count(), s});
  }
  if (prefill_phase_) {
    times_[slot].prefill_s += s;
  } else if (!times_[slot].decode_s.empty()) {
    times_[slot].decode_s.back() += s;
  }
}

float CpuModel::round16(float v) const { return round_to(act_type_, v); }

void CpuModel::round_act(float* p, int64_t n) const {
  if (act_type_ == DType::kFloat32) return;
  parallel_ranges(n, kElementGrain, opt_.threads,
                  [&](int64_t lo, int64_t hi) { cpu::round_n(p + lo, hi - lo, act_type_); });
}

void CpuModel::add_residual(float* x, const float* h, int64_t n) const {
  parallel_ranges(n, kElementGrain, opt_.threads,
                  [&](int64_t lo, int64_t hi) { cpu::add_rounded(x + lo, h + lo, hi - lo, act_type_); });
}

CpuModel::~CpuModel() = default;

const cpu::Weight& CpuModel::fetch(const std::string& name) {
  const WeightRef& r = w_.get(name);
  if (!r.on_disk) return r.w;
  // A fused projection's slices (phi3's qkv_proj, gate_up_proj) read their tensor once per forward.
  if (name == disk_name_) return disk_weight_;
  // One buffer, grown to the largest tensor read so far and never cleared: pread overwrites
  // what it holds (a std::vector resized from a bias back up to a matrix zero-filled megabytes
  // before every such read). On 2 MiB pages, as resident weights are (weight_buffer): on 4 KiB
  // pages TinyLlama bfloat16 with 6/22 layers on disk decoded 1.14x slower (64.2 against 56.3
  // ms/token) and Qwen3-0.6B float32 with 14/28 1.27x (85.9 against 67.6; the AMD EPYC VM,
  // 2026-12-07, 4 interleaved pairs each).
  const size_t bytes = weight_bytes(r.w);
  if (bytes > disk_buf_bytes_) {
    disk_buf_ = weight_buffer(bytes);
    disk_buf_bytes_ = bytes;
  }
  disk_.read(r, disk_buf_.get(), opt_.drop_page_cache, opt_.threads);
  disk_weight_ = r.w;
  disk_weight_.data = disk_buf_.get();
  disk_name_ = name;
  return disk_weight_;
}

void CpuModel::linear(const std::string& name, const float* x, int64_t M, float* y) {
  cpu::linear(x, M, fetch(name), nullptr, y, opt_.threads);
}

void CpuModel::rmsnorm(const float* x, int64_t M, const std::vector<float>& g, float* y) const {
  const int64_t H = static_cast<int64_t>(g.size());
  parallel_ranges(M, std::max<int64_t>(1, kElementGrain / H), opt_.threads, [&](int64_t lo, int64_t hi) {
    for (int64_t m = lo; m < hi; ++m) {
      const float* xr = x + m * H;
      float* yr = y + m * H;
      const float r = 1.0f / std::sqrt(cpu::sum_squares(xr, H) / static_cast<float>(H) + static_cast<float>(cfg_.eps));
      // gemma (1 + w), olmo2 (w): float32 product with the gain, then cast; llama: cast, then
      // multiply by the (16-bit) gain.
      cpu::rms_scale(xr, r, g.data(), H, cfg_.norm_mul_first, act_type_, yr);
    }
  });
}

const std::vector<float>& CpuModel::gain(const std::string& name) const {
  const auto it = gains_.find(name);
  if (it == gains_.end()) throw InternalError("no norm gain " + name);
  return it->second;
}

void CpuModel::softcap(float* v, int64_t n, double cap) const {
  for (int64_t i = 0; i < n; ++i) v[i] = softcap1(v[i], static_cast<float>(cap));
}

void CpuModel::attention(int64_t layer, float* q, const float* k, const float* v, int64_t T, int64_t start,
                         float* out) {
  const int64_t H = cfg_.heads, KV = cfg_.kv_heads, d = cfg_.head_dim, B = opt_.batch, S = opt_.max_seq;
  const int64_t group = H / KV;
  if (k_cache_[layer].empty()) {
    const size_t cache = static_cast<size_t>(B * KV * S * d);
    k_cache_[layer].assign(cache, 0.0f);
    v_cache_[layer].assign(cache, 0.0f);
  }
  float* kc = k_cache_[layer].data();
  float* vc = v_cache_[layer].data();
  // Per sequence and KV head: the scores of every query head of the group come from one matrix
  // product with the cached keys, and the outputs from one product of the probabilities with the
  // (transposed) cached values — the same kernels as the projections. With at least as many
  // (sequence, KV head) pairs as threads, each thread takes whole pairs (one parallel region per
  // layer instead of three per pair); otherwise the pairs run in turn, each product threaded.
  const float scale =
      cfg_.attn_scale > 0 ? static_cast<float>(cfg_.attn_scale) : 1.0f / std::sqrt(static_cast<float>(d));
  const int64_t window = cfg_.window(layer);
  const float cap = static_cast<float>(cfg_.attn_softcap);
  const int64_t L = start + T;  // keys visible to the last query
  const int64_t rows = T * group;
  const int64_t pairs = B * KV;
  const bool outer = pairs >= opt_.threads && opt_.threads > 1;
  const int team = outer ? opt_.threads : 1;
  const int inner = outer ? 1 : opt_.threads;
  if (att_.size() < static_cast<size_t>(team)) att_.resize(static_cast<size_t>(team));
  auto one_pair = [&](int64_t pair, AttentionScratch& sc) {
    const int64_t b = pair / KV, g = pair % KV;
    float* K = kc + (b * KV + g) * S * d;
    float* V = vc + (b * KV + g) * S * d;
    // Store the new keys and values.
    for (int64_t t = 0; t < T; ++t) {
      const int64_t row = b * T + t;
      std::memcpy(K + (start + t) * d, k + (row * KV + g) * d, sizeof(float) * d);
      std::memcpy(V + (start + t) * d, v + (row * KV + g) * d, sizeof(float) * d);
    }
    sc.q.resize(static_cast<size_t>(rows * d));
    sc.s.resize(static_cast<size_t>(rows * L));
    sc.vt.resize(static_cast<size_t>(d * L));
    sc.o.resize(static_cast<size_t>(rows * d));
    // Query rows (t, head h of the group).
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < group; ++j)
        std::memcpy(sc.q.data() + (t * group + j) * d, q + ((b * T + t) * H + g * group + j) * d, sizeof(float) * d);
    cpu::linear(sc.q.data(), rows, cpu::Weight{K, DType::kFloat32, L, d}, nullptr, sc.s.data(), inner);
    // Causal (and sliding-window) softmax per row, in float32 with 16-bit rounding points.
#pragma omp parallel for schedule(static) num_threads(inner) if (inner > 1 && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t pos = start + r / group;
      const int64_t first = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
      float* p = sc.s.data() + r * L;
      float mx = -INFINITY;
      for (int64_t j = first; j <= pos; ++j) {
        p[j] = round1(round1(p[j]) * scale);
        if (cap > 0) p[j] = softcap1(p[j], cap);  // gemma2's soft-capping
        mx = std::max(mx, p[j]);
      }
      const float sum = cpu::exp_shifted(p + first, pos - first + 1, mx);
      for (int64_t j = 0; j < L; ++j) p[j] = (j < first || j > pos) ? 0.0f : round1(p[j] / sum);
    }
    for (int64_t j = 0; j < L; ++j)
      for (int64_t i = 0; i < d; ++i) sc.vt[i * L + j] = V[j * d + i];
    cpu::linear(sc.s.data(), rows, cpu::Weight{sc.vt.data(), DType::kFloat32, d, L}, nullptr, sc.o.data(), inner);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < group; ++j) {
        float* o = out + ((b * T + t) * H + g * group + j) * d;
        const float* src = sc.o.data() + (t * group + j) * d;
        for (int64_t i = 0; i < d; ++i) o[i] = round1(src[i]);
      }
  };
  if (outer) {
#pragma omp parallel for schedule(static) num_threads(team)
    for (int64_t pair = 0; pair < pairs; ++pair) one_pair(pair, att_[omp_get_thread_num()]);
  } else {
    for (int64_t pair = 0; pair < pairs; ++pair) one_pair(pair, att_[0]);
  }
}

void CpuModel::attention_only(int64_t l) {
  DMAP_CHECK(l >= 0 && l < cfg_.layers && T_ > 0, "attention_only needs prepare() and a layer of the model");
  attention(l, buf_q_.data(), buf_k_.data(), buf_v_.data(), T_, start_, buf_a_.data());
}

void CpuModel::size_buffers(int64_t M) {
  const int64_t qd = cfg_.heads * cfg_.head_dim, kvd = cfg_.kv_heads * cfg_.head_dim;
  buf_x_.resize(M * cfg_.hidden);
  buf_h_.resize(M * cfg_.hidden);
  buf_q_.resize(M * qd);
  buf_k_.resize(M * kvd);
  buf_v_.resize(M * kvd);
  buf_a_.resize(M * qd);
  buf_g_.resize(M * cfg_.inter);
  buf_u_.resize(M * cfg_.inter);
}

void CpuModel::reserve(int64_t T) {
  DMAP_CHECK(T > 0 && T <= opt_.max_seq, "reserve needs 1..max_seq tokens");
  const int64_t M = opt_.batch * T, d = cfg_.head_dim;
  if (static_cast<int64_t>(buf_x_.size()) < M * cfg_.hidden) size_buffers(M);
  // Attention: each thread's scratch for one (sequence, KV head) pair of a T-token forward from
  // position 0 (attention()).
  const int64_t rows = T * (cfg_.heads / cfg_.kv_heads);
  if (att_.size() < static_cast<size_t>(opt_.threads)) att_.resize(static_cast<size_t>(opt_.threads));
  for (AttentionScratch& sc : att_) {
    for (auto [v, n] : {std::pair{&sc.q, rows * d}, {&sc.s, rows * T}, {&sc.vt, d * T}, {&sc.o, rows * d}})
      if (v->size() < static_cast<size_t>(n)) v->resize(static_cast<size_t>(n));
  }
  if (cfg_.experts > 0) {
    const int64_t E = cfg_.experts, K = cfg_.top_k;
    if (moe_logits_.size() < static_cast<size_t>(M * E)) moe_logits_.resize(static_cast<size_t>(M * E));
    if (moe_pick_.size() < static_cast<size_t>(M * K)) moe_pick_.resize(static_cast<size_t>(M * K));
    if (moe_weight_.size() < static_cast<size_t>(M * K)) moe_weight_.resize(static_cast<size_t>(M * K));
    moe_.reserve(M * K, E, cfg_.hidden, cfg_.moe_inter);
  }
  size_t disk = 0;
  for (const auto& [name, shape] : ModelWeights::expected(cfg_)) {
    if (!w_.has(name)) continue;
    const WeightRef& r = w_.get(name);
    if (r.on_disk) disk = std::max(disk, weight_bytes(r.w));
  }
  // The streamed products' chunks (linear_streamed), for a decode step of this batch.
  size_t slot = 0;
  int64_t chunk_rows = 0;
  for (const auto& [name, shape] : ModelWeights::expected(cfg_)) {
    if (!w_.has(name) || shape.size() != 2) continue;
    const WeightRef& r = w_.get(name);
    if (!r.on_disk) continue;
    const int64_t rb = static_cast<int64_t>(row_bytes(r.w));
    const int64_t c = stream_chunk(r.w.rows, rb);
    slot = std::max(slot, static_cast<size_t>(c * rb));
    chunk_rows = std::max(chunk_rows, c);
  }
  if (slot > 0) size_stream_buffers(slot, chunk_rows, std::min<int64_t>(opt_.batch, kStreamRows - 1));
  if (disk > disk_buf_bytes_) {
    disk_buf_ = weight_buffer(disk);
    disk_buf_bytes_ = disk;
    std::memset(disk_buf_.get(), 0, disk);
  }
}

void CpuModel::prepare(int64_t T, int64_t start) {
  if (start + T > opt_.max_seq)
    throw RuntimeFailure("context " + std::to_string(start + T) + " exceeds max_seq " + std::to_string(opt_.max_seq));
  T_ = T;
  start_ = start;
  disk_name_.clear();  // every forward reads its disk tensors again, as accelerate does
  size_buffers(opt_.batch * T);
  // RoPE tables of this forward's positions (exec/layer_program.h: rope_tables); longrope's long
  // factors once the context passes its original one.
  const bool long_rope = !inv_freq_long_.empty() && static_cast<double>(start + T) > cfg_.rope_orig_max;
  rope_tables(cfg_, long_rope ? inv_freq_long_ : inv_freq_, act_type_, T, start, rope_cos_, rope_sin_);
  if (!inv_freq_local_.empty())
    rope_tables(cfg_, inv_freq_local_, act_type_, T, start, rope_cos_local_, rope_sin_local_);
}

void CpuModel::embed(const int32_t* ids, float* x) {
  const int64_t M = opt_.batch * T_, Hd = cfg_.hidden;
  const auto t0 = Clock::now();
  const cpu::Weight& E = fetch("model.embed_tokens.weight");
  const float scale = cfg_.gemma ? round_to(E.type, std::sqrt(static_cast<float>(Hd))) : 1.0f;
  for (int64_t r = 0; r < M; ++r) {
    const int32_t id = ids[r];
    if (id < 0 || id >= cfg_.vocab)
      throw InputError("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                       std::to_string(cfg_.vocab - 1) + ")");
    for (int64_t i = 0; i < Hd; ++i) x[r * Hd + i] = round1(element(E, static_cast<int64_t>(id) * Hd + i) * scale);
  }
  add_time(0, t0);
}

void CpuModel::moe(const std::string& p, const float* h, int64_t M, float* out) {
  const int64_t E = cfg_.experts, K = cfg_.top_k, H = cfg_.hidden, I = cfg_.moe_inter;
  // The router's logits in the activation dtype; routing, grouping, the experts and their
  // combination as exec/cpu/moe.h runs them (each expert tensor fetched when its products run:
  // a disk-offloaded layer reads one at a time into the disk buffer).
  moe_logits_.resize(static_cast<size_t>(M * E));
  linear(p + "mlp.gate.weight", h, M, moe_logits_.data());
  round_act(moe_logits_.data(), M * E);
  moe_pick_.resize(static_cast<size_t>(M * K));
  moe_weight_.resize(static_cast<size_t>(M * K));
  cpu::moe_route(moe_logits_.data(), M, E, K, cfg_.norm_topk, cfg_.router_fp32_weights, act_type_, moe_pick_.data(),
                 moe_weight_.data());
  const int64_t touched = cpu::moe_dispatch(h, M, H, E, K, moe_pick_.data(), moe_);
  (prefill_phase_ ? experts_.prefill_forwards : experts_.decode_forwards) += 1;
  (prefill_phase_ ? experts_.prefill_touched : experts_.decode_touched) += touched;
  (prefill_phase_ ? experts_.prefill_rows : experts_.decode_rows) += M;
  cpu::moe_gate_up(fetch(p + "mlp.experts.gate_up_proj"), E, I, act_type_, opt_.threads, moe_);
  cpu::moe_down(fetch(p + "mlp.experts.down_proj"), E, H, act_type_, opt_.threads, moe_);
  cpu::moe_combine(moe_weight_.data(), M, H, K, cfg_.router_fp32_weights, act_type_, moe_, out, opt_.threads);
}

void CpuModel::rope(int64_t l, int64_t M) {
  const int64_t T = T_, d = cfg_.head_dim;
  const int64_t qd = cfg_.heads * d, kvd = cfg_.kv_heads * d;
  float* q = buf_q_.data();
  float* k = buf_k_.data();
  // RoPE (rotate_half convention: pairs (i, i + rotary/2) of the first `rotary` channels of each
  // head); cos/sin tables of this forward's positions, computed once before the layers (gemma3's
  // sliding layers: their own).
  const int64_t half = cfg_.rotary() / 2;
  const bool local = !rope_cos_local_.empty() && cfg_.window(l) > 0;
  const std::vector<float>& cos_t = local ? rope_cos_local_ : rope_cos_;
  const std::vector<float>& sin_t = local ? rope_sin_local_ : rope_sin_;
  parallel_ranges(M, 8, opt_.threads, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* cs = cos_t.data() + (r % T) * half;
      const float* sn = sin_t.data() + (r % T) * half;
      auto rotate = [&](float* a) {
        if (cfg_.rope_fp32) {  // olmo2: float32 cos/sin, the rotated value rounded once
          for (int64_t i = 0; i < half; ++i) {
            const float x1 = a[i], x2 = a[i + half];
            const float p1 = x1 * cs[i], p2 = -x2 * sn[i], p3 = x2 * cs[i], p4 = x1 * sn[i];
            a[i] = round1(p1 + p2);
            a[i + half] = round1(p3 + p4);
          }
          return;
        }
        cpu::rope_rotate(a, cs, sn, half, act_type_);
      };
      for (int64_t hh = 0; hh < cfg_.heads; ++hh) rotate(q + r * qd + hh * d);
      for (int64_t hh = 0; hh < cfg_.kv_heads; ++hh) rotate(k + r * kvd + hh * d);
    }
  });
}

// y = x W[row0 : row0 + n]^T (+ bias): a step's product over a slice of the weight's rows (a fused
// projection's part), with the bias added in float32 and the output rounded where the step says.
void CpuModel::linear_step(const Step& st, const float* x, int64_t M, float* y) {
  const WeightRef& r = w_.get(st.weight);
  if (r.on_disk && M < kStreamRows && !opt_.drop_page_cache && stream_disk_on()) {
    linear_streamed(r, st.row0, st.n, x, M, y);
  } else {
    cpu::Weight w = fetch(st.weight);
    w.data = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(st.row0) * row_bytes(w);
    w.rows = st.n;
    cpu::linear(x, M, w, nullptr, y, opt_.threads);
  }
  if (!st.bias.empty()) {
    const cpu::Weight& b = fetch(st.bias);
    for (int64_t r = 0; r < M; ++r)
      for (int64_t i = 0; i < st.n; ++i) y[r * st.n + i] += element(b, st.row0 + i);
  }
  if (st.round) round_act(y, M * st.n);
}

int64_t CpuModel::stream_chunk(int64_t n, int64_t rb) {
  const int64_t c = cpu::chunk_units(n, rb);
  return c >= 4 ? c / 4 * 4 : c;  // whole 4-row blocks of the row kernels
}

void CpuModel::size_stream_buffers(size_t slot_bytes, int64_t rows, int64_t M) {
  const size_t threads = static_cast<size_t>(std::max(1, opt_.threads));
  slot_bytes = (slot_bytes + 4095) / 4096 * 4096;
  if (slot_bytes > stream_slot_) {
    stream_buf_ = weight_buffer(slot_bytes * threads);
    std::memset(stream_buf_.get(), 0, slot_bytes * threads);
    stream_slot_ = slot_bytes;
  }
  if (M > 1) {
    const size_t n = static_cast<size_t>(rows * M);
    stream_out_.resize(threads);
    for (auto& o : stream_out_)
      if (o.size() < n) o.resize(n);
  }
}

// A disk-offloaded weight in decode, read while it is used: the rows are cut into chunks of about
// 512 KiB (cpu::chunk_units), the threads take them two-ended (exec/cpu/two_ended.h), and each
// thread preads its chunk into its own buffer and multiplies it at once, while the chunk is still
// in that core's cache. Read whole into one buffer first (fetch), a tensor larger than the cache
// reached the product from DRAM again, and one smaller than it did not: what a disk layer added per
// byte then depended on its tensors' sizes and on the tensor before (twentieth session,
// docs/PERFORMANCE.md: 30-110 GB/s by tensor), which a calibration on one model cannot see. Each
// row's dot product is the one the whole-tensor product computes. Read time: the mean over the
// threads of their chunks' reads.
void CpuModel::linear_streamed(const WeightRef& r, int64_t row0, int64_t n, const float* x, int64_t M, float* y) {
  const int64_t K = r.w.cols, rb = static_cast<int64_t>(row_bytes(r.w));
  const int64_t chunk = stream_chunk(n, rb);
  size_stream_buffers(static_cast<size_t>(chunk * rb), chunk, M);
  disk_.open(r);
  const int threads = std::max(1, opt_.threads);
  std::vector<std::string> why(static_cast<size_t>(threads));
  std::vector<double> seconds(static_cast<size_t>(threads), 0.0);
  // (two_ended hands one thread, or a weight of one chunk, the whole range at once)
  cpu::two_ended(n, chunk, threads, [&](int64_t lo, int64_t hi) {
    const size_t t = static_cast<size_t>(omp_get_thread_num());
    uint8_t* buf = stream_buf_.get() + t * stream_slot_;
    for (int64_t a = lo; a < hi && why[t].empty(); a += chunk) {
      const int64_t b = std::min(hi, a + chunk);
      const auto t0 = Clock::now();
      why[t] = disk_.read_part(r, static_cast<size_t>((row0 + a) * rb), static_cast<size_t>((b - a) * rb), buf);
      seconds[t] += std::chrono::duration<double>(Clock::now() - t0).count();
      if (!why[t].empty()) return;
      const cpu::Weight w{buf, r.w.type, b - a, K};
      if (M == 1) {
        cpu::linear(x, 1, w, nullptr, y + a, 1);
        continue;
      }
      float* out = stream_out_[t].data();
      cpu::linear(x, M, w, nullptr, out, 1);
      for (int64_t m = 0; m < M; ++m) std::memcpy(y + m * n + a, out + m * (b - a), sizeof(float) * (b - a));
    }
  });
  int readers = 0;
  double total = 0;
  for (size_t t = 0; t < why.size(); ++t) {
    if (!why[t].empty()) throw RuntimeFailure("cannot read " + r.name + " from " + r.file + ": " + why[t]);
    if (seconds[t] > 0) ++readers;
    total += seconds[t];
  }
  disk_.count(static_cast<uint64_t>(n * rb), readers > 0 ? total / readers : 0.0);
}

void CpuModel::gated_act(int64_t n) {
  float* g = buf_g_.data();
  const float* u = buf_u_.data();
  parallel_ranges(n, kElementGrain, opt_.threads, [&](int64_t lo, int64_t hi) {
    if (cfg_.gemma) {
      cpu::gelu_tanh_mul(g + lo, u + lo, hi - lo, act_type_);
    } else {
      cpu::silu_mul(g + lo, u + lo, hi - lo, act_type_);
    }
  });
}

// Runs layer l's program (exec/layer_program.h) on the CPU.
void CpuModel::layer(int64_t l, float* x) {
  const int64_t M = opt_.batch * T_;
  auto buf = [&](Act a) -> float* {
    switch (a) {
      case Act::kX: return x;
      case Act::kH: return buf_h_.data();
      case Act::kQ: return buf_q_.data();
      case Act::kK: return buf_k_.data();
      case Act::kV: return buf_v_.data();
      case Act::kA: return buf_a_.data();
      case Act::kG: return buf_g_.data();
      case Act::kU: return buf_u_.data();
    }
    return nullptr;
  };
  int open = -1;
  auto t0 = Clock::now();
  const std::vector<Step>& program = programs_[static_cast<size_t>(l)];
  for (size_t i = 0; i < program.size(); ++i) {
    const Step& st = program[i];
    const auto s0 = time_steps_ ? Clock::now() : Clock::time_point{};
    switch (st.op) {
      case Step::Op::kModule:
        if (open >= 0) add_time(open, t0);
        open = st.slot;
        t0 = Clock::now();
        break;
      case Step::Op::kNorm: rmsnorm(buf(st.src), M * st.groups, gain(st.weight), buf(st.dst)); break;
      case Step::Op::kLinear: linear_step(st, buf(st.src), M, buf(st.dst)); break;
      case Step::Op::kRope: rope(l, M); break;
      case Step::Op::kAttention:
        attention(l, buf_q_.data(), buf_k_.data(), buf_v_.data(), T_, start_, buf_a_.data());
        break;
      case Step::Op::kGatedAct: gated_act(M * cfg_.inter); break;
      case Step::Op::kResidual: add_residual(x, buf_h_.data(), M * cfg_.hidden); break;
      case Step::Op::kMoe: moe(st.prefix, buf(st.src), M, buf(st.dst)); break;
    }
    if (time_steps_ && st.op != Step::Op::kModule)
      step_s_[static_cast<size_t>(l)][i] += std::chrono::duration<double>(Clock::now() - s0).count();
  }
  if (open >= 0) add_time(open, t0);
}

void CpuModel::set_time_steps(bool on) {
  time_steps_ = on;
  reset_step_times();
}

void CpuModel::reset_step_times() {
  step_s_.assign(programs_.size(), {});
  for (size_t l = 0; l < programs_.size(); ++l) step_s_[l].assign(programs_[l].size(), 0.0);
}

std::vector<CpuModel::StepTime> CpuModel::step_times() const {
  std::vector<StepTime> out;
  for (size_t l = 0; l < step_s_.size(); ++l)
    for (size_t i = 0; i < step_s_[l].size(); ++i)
      out.push_back({static_cast<int64_t>(l), &programs_[l][i], step_s_[l][i]});
  return out;
}

void CpuModel::final_norm(float* last) {
  const auto t0 = Clock::now();
  rmsnorm(last, opt_.batch, gain("model.norm.weight"), last);
  add_time(static_cast<int>(times_.size()) - 2, t0);
}

void CpuModel::head(const float* last, float* logits) {
  const auto t0 = Clock::now();
  const cpu::Weight& head = fetch(cfg_.tie ? "model.embed_tokens.weight" : "lm_head.weight");
  cpu::linear(last, opt_.batch, head, nullptr, logits, opt_.threads);
  round_act(logits, opt_.batch * cfg_.vocab);
  if (cfg_.final_softcap > 0) softcap(logits, opt_.batch * cfg_.vocab, cfg_.final_softcap);  // gemma2
  add_time(static_cast<int>(times_.size()) - 1, t0);
}

void CpuModel::forward(const int32_t* ids, int64_t T, int64_t start, float* logits) {
  const int64_t B = opt_.batch, Hd = cfg_.hidden;
  prepare(T, start);
  float* x = buf_x_.data();
  embed(ids, x);
  for (int64_t l = 0; l < cfg_.layers; ++l) layer(l, x);
  // Final norm and head on the last position of each sequence.
  last_.resize(static_cast<size_t>(B * Hd));
  for (int64_t b = 0; b < B; ++b) std::memcpy(last_.data() + b * Hd, x + (b * T + T - 1) * Hd, sizeof(float) * Hd);
  final_norm(last_.data());
  head(last_.data(), logits);
}

}  // namespace dmap::exec
