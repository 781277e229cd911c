// The cost formulas.
#include "sim/cost_model.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "sim/quant_cost.h"

namespace dmap::sim {

std::string resource_name(Resource r) {
  switch (r) {
    case Resource::kGpuCompute: return "gpu_compute";
    case Resource::kGpuMemory: return "gpu_memory";
    case Resource::kCpuCompute: return "cpu_compute";
    case Resource::kCpuMemory: return "cpu_memory";
    case Resource::kH2d: return "h2d";
    case Resource::kDisk: return "disk";
    case Resource::kCount: break;
  }
  return "?";
}

void Breakdown::add(const Breakdown& o, double w) {
  for (int i = 0; i < static_cast<int>(Resource::kCount); ++i) s[i] += w * o.s[i];
}

double Breakdown::total() const {
  double t = 0;
  for (double v : s) t += v;
  return t;
}

Resource Breakdown::largest() const {
  int best = 0;
  for (int i = 1; i < static_cast<int>(Resource::kCount); ++i) {
    if (s[i] > s[best]) best = i;
  }
  return static_cast<Resource>(best);
}

CostModel::CostModel(const ModelGraph& graph, const Rates& rates, const Workload& workload)
    : graph_(graph), rates_(rates), workload_(workload) {
  DMAP_CHECK(workload.batch > 0 && workload.prompt > 0 && workload.new_tokens > 0, "workload must be positive");
  terms_.push_back(
      {rates.host.row_cost(graph.dtype), rates.host.input_cost(graph.dtype), rates.host.head_rate(graph.dtype)});
  for (const auto& g : rates.gpus) {
    terms_.push_back({g.row_cost(graph.dtype), g.input_cost(graph.dtype), g.head_rate(graph.dtype)});
  }
  const int64_t steps = decode_steps();
  if (steps <= 0) {
    samples_.push_back({workload.prompt + 1, 0.0});  // reported per-token time, no decode step runs
  } else if (steps <= kDecodeSamples) {
    for (int64_t k = 1; k <= steps; ++k) samples_.push_back({workload.prompt + k, 1.0});
  } else {
    const double bin = static_cast<double>(steps) / kDecodeSamples;
    for (int i = 0; i < kDecodeSamples; ++i) {
      const double mid = (i + 0.5) * bin;  // in (0, steps)
      samples_.push_back({workload.prompt + 1 + static_cast<int64_t>(std::floor(mid)), bin});
    }
  }
}

int64_t CostModel::decode_steps() const { return workload_.new_tokens - 1; }

const DeviceRates& CostModel::rates_of(ExecDevice d) const {
  if (d.is_cpu()) return rates_.host;
  DMAP_CHECK(d.gpu < static_cast<int>(rates_.gpus.size()), "GPU ordinal beyond the hardware");
  return rates_.gpus[d.gpu];
}

// Uniform routing over spread x E experts (1: every expert alike, the assumption until a
// calibration measures skew).
double touched_experts(int64_t experts, int64_t active, double m, double spread) {
  const double E = static_cast<double>(experts), k = static_cast<double>(active);
  const double e = std::clamp(spread * E, std::min(E, k), E);
  return std::max(std::min(E, k), e * (1.0 - std::pow(1.0 - k / e, m)));
}

double touched_experts(const Op& op, double m, double spread) {
  return touched_experts(op.experts, op.active, m, spread);
}

double touched_experts(int64_t experts, int64_t active, double sequences, double per_sequence, double spread,
                       double sequence_spread) {
  const double E = static_cast<double>(experts), k = std::min(E, static_cast<double>(active));
  const double e = std::clamp(spread * E, k, E);                         // the experts routing reaches
  const double q = std::clamp(sequence_spread * e, k, e);                // those one sequence reaches
  const double f = q / e * (1.0 - std::pow(1.0 - k / q, per_sequence));  // its share of e
  return std::max(k, e * (1.0 - std::pow(1.0 - f, sequences)));
}

std::optional<double> sequence_spread_of(int64_t experts, int64_t active, double per_sequence, double touched,
                                         double spread) {
  const double E = static_cast<double>(experts), k = static_cast<double>(active);
  const double e = std::clamp(spread * E, std::min(E, k), E);
  if (!(per_sequence > 1) || !(k < e) || !(touched > 0)) return std::nullopt;
  auto at = [&](double q) { return touched_experts(experts, active, 1.0, per_sequence, spread, q); };
  double lo = k / e, hi = 1.0;
  if (touched >= at(hi)) return hi;
  if (touched <= at(lo)) return lo;
  for (int i = 0; i < 60; ++i) {
    const double mid = 0.5 * (lo + hi);
    (at(mid) < touched ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

std::optional<double> routing_spread_of(int64_t experts, int64_t active, double tokens, double touched) {
  const double E = static_cast<double>(experts), k = static_cast<double>(active);
  if (!(tokens > 1) || !(k < E) || !(touched > 0)) return std::nullopt;
  // touched_experts grows with the spread: bisect it on [k/E, 1].
  double lo = k / E, hi = 1.0;
  if (touched >= touched_experts(experts, active, tokens, hi)) return hi;
  if (touched <= touched_experts(experts, active, tokens, lo)) return lo;
  for (int i = 0; i < 60; ++i) {
    const double mid = 0.5 * (lo + hi);
    (touched_experts(experts, active, tokens, mid) < touched ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

RoutingSpreads routing_spreads_of(int64_t experts, int64_t active, const std::vector<TouchedCount>& counts) {
  const double E = static_cast<double>(experts), k = std::min(E, static_cast<double>(active));
  std::vector<TouchedCount> used;
  for (const TouchedCount& c : counts) {
    if (c.touched > 0 && c.sequences * c.per_sequence > 1 && k < E) used.push_back(c);
  }
  RoutingSpreads best;
  if (used.empty()) return best;
  auto cost = [&](double s, double q) {
    double sum = 0;
    for (const TouchedCount& c : used) {
      const double e = std::log(touched_experts(experts, active, c.sequences, c.per_sequence, s, q) / c.touched);
      sum += e * e;
    }
    return sum;
  };
  // A coarse grid over the square, then finer grids around the best point.
  double lo_s = k / E, hi_s = 1, lo_q = k / E, hi_q = 1;
  double bs = 1, bq = 1, bc = cost(1, 1);
  for (int pass = 0; pass < 6; ++pass) {
    const int n = 40;
    for (int i = 0; i <= n; ++i) {
      for (int j = 0; j <= n; ++j) {
        const double s = lo_s + (hi_s - lo_s) * i / n, q = lo_q + (hi_q - lo_q) * j / n;
        const double c = cost(s, q);
        if (c < bc) bc = c, bs = s, bq = q;
      }
    }
    const double ws = (hi_s - lo_s) / 8, wq = (hi_q - lo_q) / 8;
    lo_s = std::max(k / E, bs - ws), hi_s = std::min(1.0, bs + ws);
    lo_q = std::max(k / E, bq - wq), hi_q = std::min(1.0, bq + wq);
  }
  best.spread = bs;
  best.sequence_spread = bq;
  best.rms_log_error = std::sqrt(bc / static_cast<double>(used.size()));
  return best;
}

void CostModel::op_work(const Op& op, Phase phase, double& flops, double& bytes) const {
  const double e = graph_.elt;
  const double B = static_cast<double>(workload_.batch);
  const double T = phase.prefill ? static_cast<double>(workload_.prompt) : 1.0;
  const double M = B * T;
  switch (op.kind) {
    case OpKind::kMatmul: {
      const double m = (op.head && phase.prefill) ? B : M;  // generate keeps only the last logits
      const double K = static_cast<double>(op.in), N = static_cast<double>(op.out);
      if (op.weight_bits > 0) {  // quantized: its packed tensors as loaded (scales, zeros, bias)
        double weights = 0;
        for (int w : op.weights) weights += static_cast<double>(graph_.tensor_bytes[graph_.storage_tensor(w)]);
        if (op.experts > 0) {
          const double k = static_cast<double>(op.active);
          flops = 2.0 * m * k * K * N;
          bytes = touched(op, m) / static_cast<double>(op.experts) * weights + m * k * (K + N) * e;
          return;
        }
        flops = 2.0 * m * K * N;
        bytes = weights + m * (K + N) * e;
        return;
      }
      if (op.experts > 0) {  // routed experts: each token runs `active` of them
        const double k = static_cast<double>(op.active);
        flops = 2.0 * m * k * K * N;
        bytes = touched(op, m) * (K * N + (op.bias ? N : 0.0)) * e + m * k * (K + N) * e;
        return;
      }
      flops = 2.0 * m * K * N;
      bytes = K * N * e + (op.bias ? N * e : 0.0) + m * (K + N) * e;
      return;
    }
    case OpKind::kEmbedding:
      flops = 0;
      bytes = 2.0 * M * static_cast<double>(op.in) * e;
      return;
    case OpKind::kNorm: {
      const double D = static_cast<double>(op.in);
      flops = 5.0 * M * D;
      bytes = 2.0 * M * D * e + D * e;
      return;
    }
    case OpKind::kAttention: {
      const double H = static_cast<double>(graph_.heads), KV = static_cast<double>(graph_.kv_heads);
      const double d = static_cast<double>(graph_.head_dim);
      // Scores and weighted sum: 4 FLOPs per (query, key, head, dim); causal prefill attends
      // to P(P+1)/2 pairs per head (SDPA computes a sliding window's masked pairs too), a decode
      // step to the keys its cache holds: c, or the window of a sliding layer.
      const double keys = phase.prefill ? T : static_cast<double>(graph_.kv_tokens(op, phase.context, false));
      const double pairs = phase.prefill ? T * (T + 1) / 2.0 : keys;
      flops = 4.0 * B * H * d * pairs;
      const double q_and_out = 2.0 * M * H * d * e;
      const double kv_read = 2.0 * B * KV * d * e * keys;
      const double kv_write = 2.0 * M * KV * d * e;
      const double rotary = 2.0 * M * (H + KV) * d * e;
      bytes = q_and_out + kv_read + kv_write + rotary;
      return;
    }
    case OpKind::kActivation: {
      const double I = static_cast<double>(op.in);
      flops = (op.gated ? 6.0 : 8.0) * M * I;
      bytes = (op.gated ? 3.0 : 2.0) * M * I * e;
      return;
    }
    case OpKind::kResidual: {
      const double D = static_cast<double>(op.in);
      flops = M * D;
      bytes = 3.0 * M * D * e;
      return;
    }
  }
}

OpTime CostModel::op(const Op& op, ExecDevice dev, Phase phase) const {
  OpTime t;
  op_work(op, phase, t.flops, t.bytes);
  const DeviceRates& r = rates_of(dev);
  // The rows of the products: prefill matmuls and attention (queries) run M = batch x prompt.
  const bool full_rows = (op.kind == OpKind::kMatmul && !(op.head && phase.prefill)) || op.kind == OpKind::kAttention;
  const double m =
      full_rows ? static_cast<double>(workload_.batch) * (phase.prefill ? static_cast<double>(workload_.prompt) : 1.0)
                : static_cast<double>(workload_.batch);
  const RateCurve& rate =
      op.kind == OpKind::kAttention ? r.attention_flops_for(graph_.dtype) : r.flops_for(graph_.dtype);
  int quant_kernels = 0;
  if (op.weight_bits > 0 && graph_.tree && graph_.tree->quantization) {
    // Dequantisation traffic and kernels of the method (sim/quant_cost.h).
    const DequantFigure qk = dequant_figure(r.dequant, graph_.tree->quantization->method, !dev.is_cpu());
    const double weights =
        static_cast<double>(op.in) * static_cast<double>(op.out) * (op.experts > 0 ? touched(op, m) : 1.0);
    t.bytes += (m >= 2 ? qk.prefill_bytes_per_weight : qk.decode_bytes_per_weight) * weights;
    quant_kernels = qk.kernels;
  }
  t.compute_s = t.flops / rate.at(m);
  t.memory_s = t.bytes / r.memory_bandwidth.value;
  t.overhead_s = (op.kernels + quant_kernels) * r.dispatch.value +
                 (op.kind == OpKind::kAttention ? r.attention_overhead.value : 0.0);
  // One-row products (decode at batch 1) pay a cost per output row beyond the streaming.
  // Products of several rows (prefill) pay a cost per input element (M x K) instead: converting
  // and packing the activations, which dominates products with few output features.
  if (op.kind == OpKind::kMatmul && op.experts > 0) {
    // Each touched expert is a product of its own share of the rows (routing spread evenly over them).
    const double touched_n = touched(op, m), rows = m * static_cast<double>(op.active) / touched_n;
    t.compute_s = t.flops / rate.at(rows);
    const ProductTerms& pt = terms_of(dev);
    t.overhead_s += rows < 2 ? touched_n * static_cast<double>(op.out) * pt.row
                             : m * static_cast<double>(op.active * op.in) * pt.input;
  } else if (op.kind == OpKind::kMatmul) {
    const ProductTerms& pt = terms_of(dev);
    t.overhead_s += m < 2 ? static_cast<double>(op.out) * pt.row : m * static_cast<double>(op.in) * pt.input;
    if (m < 2 && op.head && op.weight_bits == 0 && pt.head > 0) {
      // The LM head at its own measured streaming rate (one product over the vocabulary, run
      // after the layers: whole-model decode streams it faster than the layers' products).
      const double weights = static_cast<double>(op.in) * static_cast<double>(op.out) * graph_.elt;
      t.memory_s = weights / pt.head;
      t.compute_s = 0;
    }
  }
  return t;
}

void CostModel::charge(const OpTime& t, ExecDevice dev, Breakdown& b) const {
  const bool compute = t.compute_bound();
  if (dev.is_cpu()) {
    b[compute ? Resource::kCpuCompute : Resource::kCpuMemory] += t.time();
  } else {
    b[compute ? Resource::kGpuCompute : Resource::kGpuMemory] += t.time();
  }
}

double CostModel::touched(const Op& op, double tokens) const {
  // `tokens` is batch x tokens per sequence (prefill: the prompt; decode: one).
  const double B = static_cast<double>(std::max<int64_t>(1, workload_.batch));
  return touched_experts(op.experts, op.active, B, tokens / B, rates_.routing_spread.value,
                         rates_.sequence_spread.value);
}

double CostModel::h2d(double bytes, bool pinned) const {
  return bytes / (pinned ? rates_.h2d_pinned.value : rates_.h2d_pageable.value) + rates_.copy_latency.value;
}

double CostModel::d2h(double bytes, bool pinned) const {
  return bytes / (pinned ? rates_.d2h_pinned.value : rates_.d2h_pageable.value) + rates_.copy_latency.value;
}

double CostModel::p2p(double bytes, int from, int to) const {
  return bytes / rates_.p2p[from][to] + rates_.copy_latency.value;
}

double CostModel::activation_bytes(Phase phase) const {
  const double T = phase.prefill ? static_cast<double>(workload_.prompt) : 1.0;
  return static_cast<double>(workload_.batch) * T * static_cast<double>(graph_.hidden) * graph_.elt;
}

double CostModel::activation_copy(ExecDevice from, ExecDevice to, Phase phase) const {
  if (from == to) return 0;
  const double b = activation_bytes(phase);
  if (from.is_cpu()) return h2d(b, false);
  if (to.is_cpu()) return d2h(b, false);
  return p2p(b, from.gpu, to.gpu);
}

double CostModel::disk_read(double bytes, bool warm) const {
  if (warm) return bytes / rates_.page_cache_rate(workload_.dtype, bytes);
  // Cold: the file's rate and latency. Under PyTorch (Rates::TorchOffload) the tensor is copied out
  // of the file's memory map while the kernel reads ahead: the slower of the copy and the disk,
  // then the copy's fresh pages as warm.
  const double disk = bytes / rates_.disk_read_rate(workload_.dtype, bytes) + rates_.disk_latency.value;
  if (!rates_.torch_offload) return disk;
  const Rates::TorchOffload& t = *rates_.torch_offload;
  return std::max(disk, t.cold_copy_seconds(bytes, workload_.dtype)) + t.fresh_seconds(bytes);
}

Bytes CostModel::workspace_bytes(Phase phase) const {
  const double T = phase.prefill ? static_cast<double>(workload_.prompt) : 1.0;
  const double M = static_cast<double>(workload_.batch) * T;
  const double width = 3.0 * static_cast<double>(graph_.hidden) +
                       static_cast<double>((graph_.heads + 2 * graph_.kv_heads) * graph_.head_dim) +
                       3.0 * static_cast<double>(graph_.inter);
  return static_cast<Bytes>(M * width * graph_.elt);
}

Bytes CostModel::logits_bytes() const {
  return static_cast<Bytes>(workload_.batch * graph_.vocab * 4);  // float32 logits of the last position
}

}  // namespace dmap::sim
