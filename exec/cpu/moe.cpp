// The sparse MoE block on the CPU (see moe.h): routing, grouping by expert, the per-expert
// products through cpu::linear, the weighted combination.
#include "exec/cpu/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "exec/exec_dtype.h"
#include "exec/parallel.h"

namespace dmap::exec::cpu {

namespace {

// Elementwise work below this many elements stays on one thread (exec/parallel.h).
constexpr int64_t kGrain = int64_t{1} << 14;

// rows x width floats rounded to `act`, the rows split over the threads.
void round_rows(DType act, float* p, int64_t rows, int64_t width, int threads) {
  parallel_ranges(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, width)), threads,
                  [&](int64_t lo, int64_t hi) { round_n(p + lo * width, (hi - lo) * width, act); });
}

// Expert e's [rows x cols] matrix of a stacked E x rows x cols tensor.
Weight expert_slice(const Weight& w, int64_t e, int64_t rows, int64_t cols) {
  return Weight{static_cast<const uint8_t*>(w.data) + static_cast<size_t>(e * rows * cols) * elt_size(w.type), w.type,
                rows, cols};
}

}  // namespace

void moe_route(const float* logits, int64_t M, int64_t E, int64_t K, bool norm_topk, bool fp32_weights, DType act,
               int32_t* pick, float* weight, int64_t* counts) {
  std::vector<float> prob(static_cast<size_t>(E));
  std::vector<int64_t> order(static_cast<size_t>(E));
  for (int64_t m = 0; m < M; ++m) {
    const float* lg = logits + m * E;
    const float mx = *std::max_element(lg, lg + E);
    float sum = 0;
    for (int64_t e = 0; e < E; ++e) sum += (prob[e] = std::exp(lg[e] - mx));
    for (int64_t e = 0; e < E; ++e) prob[e] /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + K, order.end(),
                      [&](int64_t a, int64_t b) { return prob[a] > prob[b] || (prob[a] == prob[b] && a < b); });
    float top = 0;
    for (int64_t k = 0; k < K; ++k) top += prob[order[k]];
    for (int64_t k = 0; k < K; ++k) {
      float w = prob[order[k]];
      if (norm_topk) w /= top;
      pick[m * K + k] = static_cast<int32_t>(order[k]);
      weight[m * K + k] = fp32_weights ? w : round_to(act, w);
      if (counts) ++counts[order[k]];
    }
  }
}

void MoeScratch::reserve(int64_t R, int64_t E, int64_t H, int64_t I) {
  auto grow = [](auto& v, int64_t n) {
    if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  };
  grow(start, E + 1);
  grow(rows, R);
  grow(slot, R);
  grow(x, R * H);
  grow(gu, R * 2 * I);
  grow(act, R * I);
  grow(up, R * I);
  grow(y, R * H);
}

int64_t moe_dispatch(const float* x, int64_t M, int64_t H, int64_t E, int64_t K, const int32_t* pick, MoeScratch& s) {
  const int64_t R = M * K;
  s.start.assign(static_cast<size_t>(E + 1), 0);
  for (int64_t r = 0; r < R; ++r) ++s.start[pick[r] + 1];
  int64_t touched = 0;
  for (int64_t e = 0; e < E; ++e) touched += s.start[e + 1] > 0 ? 1 : 0;
  for (int64_t e = 0; e < E; ++e) s.start[e + 1] += s.start[e];
  s.rows.assign(static_cast<size_t>(R), 0);
  std::vector<int64_t> fill(s.start.begin(), s.start.end() - 1);
  for (int64_t r = 0; r < R; ++r) s.rows[fill[pick[r]]++] = r;
  s.x.resize(static_cast<size_t>(R * H));
  for (int64_t i = 0; i < R; ++i) std::memcpy(s.x.data() + i * H, x + (s.rows[i] / K) * H, sizeof(float) * H);
  return touched;
}

void moe_gate_up(const Weight& gate_up, int64_t E, int64_t I, DType act, int threads, MoeScratch& s) {
  const int64_t R = static_cast<int64_t>(s.rows.size()), H = gate_up.cols;
  s.gu.resize(static_cast<size_t>(R * 2 * I));
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = s.start[e + 1] - s.start[e];
    if (n == 0) continue;
    linear(s.x.data() + s.start[e] * H, n, expert_slice(gate_up, e, 2 * I, H), nullptr,
           s.gu.data() + s.start[e] * 2 * I, threads);
  }
  s.act.resize(static_cast<size_t>(R * I));
  s.up.resize(static_cast<size_t>(R * I));
  parallel_ranges(R, std::max<int64_t>(1, kGrain / (2 * I)), threads, [&](int64_t lo, int64_t hi) {
    round_n(s.gu.data() + lo * 2 * I, (hi - lo) * 2 * I, act);
    for (int64_t i = lo; i < hi; ++i) {
      std::memcpy(s.act.data() + i * I, s.gu.data() + i * 2 * I, sizeof(float) * I);
      std::memcpy(s.up.data() + i * I, s.gu.data() + i * 2 * I + I, sizeof(float) * I);
    }
    silu_mul(s.act.data() + lo * I, s.up.data() + lo * I, (hi - lo) * I, act);
  });
}

void moe_down(const Weight& down, int64_t E, int64_t H, DType act, int threads, MoeScratch& s) {
  const int64_t R = static_cast<int64_t>(s.rows.size()), I = down.cols;
  s.y.resize(static_cast<size_t>(R * H));
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = s.start[e + 1] - s.start[e];
    if (n == 0) continue;
    linear(s.act.data() + s.start[e] * I, n, expert_slice(down, e, H, I), nullptr, s.y.data() + s.start[e] * H,
           threads);
  }
  round_rows(act, s.y.data(), R, H, threads);
}

void moe_combine(const float* weight, int64_t M, int64_t H, int64_t K, bool fp32_weights, DType act, MoeScratch& s,
                 float* out, int threads) {
  const int64_t R = M * K;
  s.slot.resize(static_cast<size_t>(R));
  for (int64_t i = 0; i < R; ++i) s.slot[s.rows[i]] = i;
  // Tokens split over the threads; each weighted row rounded as a whole (round_n), then added.
  parallel_ranges(M, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, K * H)), threads, [&](int64_t lo, int64_t hi) {
    std::vector<float> scaled(static_cast<size_t>(H));
    for (int64_t m = lo; m < hi; ++m) {
      float* o = out + m * H;
      std::fill(o, o + H, 0.0f);
      for (int64_t k = 0; k < K; ++k) {
        const float* row = s.y.data() + s.slot[m * K + k] * H;
        const float w = weight[m * K + k];
        for (int64_t j = 0; j < H; ++j) scaled[j] = row[j] * w;
        if (!fp32_weights) round_n(scaled.data(), H, act);
        for (int64_t j = 0; j < H; ++j) o[j] += scaled[j];
      }
      round_n(o, H, act);
    }
  });
}

int64_t moe_experts(const float* x, int64_t M, int64_t H, int64_t I, int64_t E, int64_t K, const int32_t* pick,
                    const float* weight, bool fp32_weights, const Weight& gate_up, const Weight& down, DType act,
                    int threads, MoeScratch& s, float* out) {
  const int64_t touched = moe_dispatch(x, M, H, E, K, pick, s);
  moe_gate_up(gate_up, E, I, act, threads, s);
  moe_down(down, E, H, act, threads, s);
  moe_combine(weight, M, H, K, fp32_weights, act, s, out, threads);
  return touched;
}

}  // namespace dmap::exec::cpu
