// CostModel: the time of each operator on a device, of each copy over a link, of each read
// from disk, and the memory a phase needs — DESIGN.md's cost model:
//   op time       = max(flops / achieved FLOP/s(device, dtype, M), bytes / achieved bandwidth)
//                   + kernels x dispatch overhead
//                   (one-row products: + rows x row cost; the LM head's at its own measured
//                   streaming rate where the calibration has one, DeviceRates::head_rate)
//   copy time     = bytes / link bandwidth (pinned or pageable) + per-copy latency
//   accelerate    = per tensor: pageable copy + latency + hook overhead (allocate, copy, empty_cache)
//   disk read     = bytes / disk bandwidth (cold) or page-cache bandwidth (warm) + latency
//
// Phases: prefill runs P tokens (M = batch x P; the LM head only the last position, as
// generate does); decode runs one token (M = batch) at context length c.
//
// Example:
//   CostModel cm(graph, rates, workload);
//   OpTime t = cm.op(graph.ops[3], ExecDevice::gpu(0), Phase::decode(600));
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "sim/calibration.h"
#include "sim/graph.h"

namespace dmap::sim {

struct Workload {
  int64_t batch = 1;
  int64_t prompt = 512;
  int64_t new_tokens = 128;
  DType dtype = DType::kFloat16;
};

// Where an op computes: GPU ordinal >= 0, or the CPU (-1).
struct ExecDevice {
  int gpu = -1;
  static ExecDevice cpu() { return {-1}; }
  static ExecDevice on_gpu(int i) { return {i}; }
  bool is_cpu() const { return gpu < 0; }
  bool operator==(const ExecDevice& o) const { return gpu == o.gpu; }
  bool operator!=(const ExecDevice& o) const { return gpu != o.gpu; }
};

struct Phase {
  bool prefill = false;
  int64_t context = 0;  // tokens in the KV cache after this step
  static Phase prefill_of(int64_t prompt) { return {true, prompt}; }
  static Phase decode_at(int64_t context) { return {false, context}; }
};

// The resources a time is charged to (the bottleneck is the largest).
enum class Resource { kGpuCompute, kGpuMemory, kCpuCompute, kCpuMemory, kH2d, kDisk, kCount };
std::string resource_name(Resource r);

struct Breakdown {
  double s[static_cast<int>(Resource::kCount)] = {};
  double& operator[](Resource r) { return s[static_cast<int>(r)]; }
  double operator[](Resource r) const { return s[static_cast<int>(r)]; }
  void add(const Breakdown& o, double w = 1.0);
  double total() const;
  Resource largest() const;
};

struct OpTime {
  double compute_s = 0, memory_s = 0, overhead_s = 0;
  double flops = 0, bytes = 0;
  double time() const { return (compute_s > memory_s ? compute_s : memory_s) + overhead_s; }
  bool compute_bound() const { return compute_s > memory_s; }
};

// The expected number of distinct experts `tokens` tokens touch in one routed-experts op when
// each picks op.active of op.experts uniformly: E (1 - (1 - k/E)^tokens) (at least k). Skewed
// routing: `spread` < 1 spreads the tokens uniformly over spread x E of them (at least k) —
// one figure, fitted from measured counts (routing_spread_of) and kept in a calibration.
double touched_experts(const Op& op, double tokens, double spread = 1.0);
double touched_experts(int64_t experts, int64_t active, double tokens, double spread = 1.0);
// The same for `sequences` sequences of `per_sequence` tokens each, whose tokens route alike
// within a sequence: one sequence's tokens spread uniformly over `sequence_spread` of the
// spread x E experts (a share f of them touched: q (1 - (1 - k/(q E'))^T) with E' = spread x E),
// the sequences independently: E' (1 - (1 - f)^sequences). sequence_spread 1 is the formula
// above for sequences x per_sequence tokens; one token per sequence (decode) does not depend on it.
double touched_experts(int64_t experts, int64_t active, double sequences, double per_sequence, double spread,
                       double sequence_spread);
// The spread under which `tokens` tokens touch `touched` experts on average (in [k/E, 1]);
// nullopt when the count says nothing (a single token always touches k).
std::optional<double> routing_spread_of(int64_t experts, int64_t active, double tokens, double touched);
// The sequence spread under which one sequence of `per_sequence` tokens touches `touched` experts
// (in [k/E', 1], E' = spread x E); nullopt when the count says nothing.
std::optional<double> sequence_spread_of(int64_t experts, int64_t active, double per_sequence, double touched,
                                         double spread = 1.0);
// A measured count: `sequences` sequences of `per_sequence` tokens touched `touched` experts.
struct TouchedCount {
  double sequences = 1, per_sequence = 1, touched = 0;
};
struct RoutingSpreads {
  double spread = 1, sequence_spread = 1;
  double rms_log_error = 0;  // of the counts as the two figures predict them
};
// Both figures at once, least squares on the log of the counts over [k/E, 1]^2: counts of few
// tokens barely move with the spread (4 sequences' decode step: 29.1 experts of 128 uniform,
// 28.8 at spread 0.88), so the spread is fitted where the sequences' union shows it (several
// sequences' prefill). Counts that say nothing (one token: k) are ignored; none left: 1, 1.
RoutingSpreads routing_spreads_of(int64_t experts, int64_t active, const std::vector<TouchedCount>& counts);

class CostModel {
 public:
  CostModel(const ModelGraph& graph, const Rates& rates, const Workload& workload);

  const ModelGraph& graph() const { return graph_; }
  const Rates& rates() const { return rates_; }
  const Workload& workload() const { return workload_; }

  // FLOPs and bytes an op moves in a phase (device independent), then its time on a device.
  void op_work(const Op& op, Phase phase, double& flops, double& bytes) const;
  OpTime op(const Op& op, ExecDevice dev, Phase phase) const;
  // Charges an op's time to the device's compute or memory resource.
  void charge(const OpTime& t, ExecDevice dev, Breakdown& b) const;

  // Distinct routed experts `tokens` (batch x tokens per sequence) touch in op, under the rates'
  // routing and sequence spreads.
  double touched(const Op& op, double tokens) const;
  // One copy of `bytes` host->device (pinned or pageable), device->host, or GPU->GPU.
  double h2d(double bytes, bool pinned) const;
  double d2h(double bytes, bool pinned) const;
  double p2p(double bytes, int from, int to) const;
  // Moving activations of one token block between execution devices.
  double activation_copy(ExecDevice from, ExecDevice to, Phase phase) const;
  double activation_bytes(Phase phase) const;
  // Reading `bytes` of one tensor from disk (cold) or from the page cache (warm).
  double disk_read(double bytes, bool warm) const;

  // Memory: activation workspace of a phase on one execution device, and the logits buffer.
  Bytes workspace_bytes(Phase phase) const;
  Bytes logits_bytes() const;

  // The decode contexts the per-token time is averaged over: at most `kDecodeSamples`
  // evenly spaced bin midpoints of the decode steps (exact when there are fewer steps), each
  // with the number of steps it stands for.
  static constexpr int kDecodeSamples = 16;
  struct DecodeSample {
    int64_t context;
    double steps;
  };
  const std::vector<DecodeSample>& decode_samples() const { return samples_; }
  int64_t decode_steps() const;  // new_tokens - 1 forwards after prefill

 private:
  const DeviceRates& rates_of(ExecDevice d) const;
  // Per-dtype product terms of each device for the graph's dtype, looked up once: [0] the host,
  // [1 + i] GPU i.
  struct ProductTerms {
    double row = 0, input = 0;  // DeviceRates::row_cost, input_cost
    double head = 0;            // DeviceRates::head_rate (0: the M = 1 rate)
  };
  const ProductTerms& terms_of(ExecDevice d) const { return terms_[static_cast<size_t>(d.gpu + 1)]; }
  const ModelGraph& graph_;
  const Rates& rates_;
  Workload workload_;
  std::vector<DecodeSample> samples_;
  std::vector<ProductTerms> terms_;
};

}  // namespace dmap::sim
