// The optimal placement search (see optimal.h for the model).
#include "sim/optimal.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "strategies/infer_auto_device_map.h"

namespace dmap::sim {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kChoices = 7;

bool is_stream(UnitChoice c) {
  return c == UnitChoice::kStreamAccelerate || c == UnitChoice::kStreamAccelerateDisk ||
         c == UnitChoice::kStreamPrefetch || c == UnitChoice::kStreamPrefetchDisk;
}
bool is_prefetch(UnitChoice c) { return c == UnitChoice::kStreamPrefetch || c == UnitChoice::kStreamPrefetchDisk; }
bool is_in_place(UnitChoice c) { return c == UnitChoice::kInPlaceCpu || c == UnitChoice::kInPlaceDisk; }
bool from_disk(UnitChoice c) {
  return c == UnitChoice::kStreamAccelerateDisk || c == UnitChoice::kStreamPrefetchDisk || c == UnitChoice::kInPlaceDisk;
}

enum class Mode { kNone, kAccelerate, kPrefetch };

// Everything the DP and dp_objective price a unit with, precomputed once.
struct Tables {
  const CostModel& cm;
  const Hardware& hw;
  int units = 0, gpus = 0;
  std::vector<double> phase_weight;                  // prefill (1) then each decode sample
  std::vector<Phase> phases;
  // comp[u][exec+1][k]: ops-only time of unit u on exec (-1 = cpu) in phase k
  std::vector<std::vector<std::vector<double>>> comp;
  std::vector<std::vector<double>> comp_total;       // [u][exec+1]
  std::vector<double> copy_prefill, copy_decode;     // [from+1][to+1] flattened
  std::vector<double> weights, kv, logits;           // per unit bytes on its execution device
  std::vector<double> max_leaf;                      // per unit: largest leaf's weights
  std::vector<std::vector<double>> stream;           // [u][choice*3 + slot] s per forward: prefill, decode cold, decode warm
  std::vector<int> prev_ops;                         // [u]: nearest earlier unit that runs operators, -1 none
  std::vector<char> has_ops;
  double ws = 0, logits_bytes = 0, steps = 0;
  double host_cap = 0;
  std::vector<double> gpu_cap, gpu_ctx;
  bool host_binding = false;
  double transient_acc = 0, transient_pre = 0;

  Tables(const CostModel& c, const Hardware& h) : cm(c), hw(h) {
    const ModelGraph& g = cm.graph();
    const Workload& w = cm.workload();
    units = static_cast<int>(g.chain.size());
    gpus = static_cast<int>(hw.gpus.size());
    phases.push_back(Phase::prefill_of(w.prompt));
    phase_weight.push_back(1.0);
    for (const auto& s : cm.decode_samples()) {
      phases.push_back(Phase::decode_at(s.context));
      phase_weight.push_back(s.steps);
      steps += s.steps;
    }
    const int execs = gpus + 1;
    comp.assign(units, std::vector<std::vector<double>>(execs, std::vector<double>(phases.size(), 0)));
    comp_total.assign(units, std::vector<double>(execs, 0));
    for (int u = 0; u < units; ++u) {
      const ChainUnit& cu = g.chain[u];
      for (int e = -1; e < gpus; ++e) {
        for (size_t k = 0; k < phases.size(); ++k) {
          double t = 0;
          for (int oi = cu.first_op; oi < cu.end_op; ++oi) t += cm.op(g.ops[oi], ExecDevice{e}, phases[k]).time();
          comp[u][e + 1][k] = t;
          comp_total[u][e + 1] += phase_weight[k] * t;
        }
      }
    }
    copy_prefill.assign(execs * execs, 0);
    copy_decode.assign(execs * execs, 0);
    for (int a = -1; a < gpus; ++a) {
      for (int b = -1; b < gpus; ++b) {
        copy_prefill[(a + 1) * execs + b + 1] = cm.activation_copy(ExecDevice{a}, ExecDevice{b}, phases[0]);
        copy_decode[(a + 1) * execs + b + 1] = cm.activation_copy(ExecDevice{a}, ExecDevice{b}, Phase::decode_at(w.prompt + 1));
      }
    }
    const int64_t final_context = w.prompt + cm.decode_steps();
    const double kv_layer = static_cast<double>(g.kv_bytes_per_token(w.batch)) * static_cast<double>(final_context);
    logits_bytes = static_cast<double>(cm.logits_bytes());
    ws = static_cast<double>(cm.workspace_bytes(phases[0]));
    weights.assign(units, 0);
    kv.assign(units, 0);
    logits.assign(units, 0);
    max_leaf.assign(units, 0);
    stream.assign(units, std::vector<double>(kChoices * 3, 0));
    prev_ops.assign(units, -1);
    has_ops.assign(units, 0);
    for (int u = 0, last = -1; u < units; ++u) {
      prev_ops[u] = last;
      has_ops[u] = g.chain[u].first_op != g.chain[u].end_op;
      if (has_ops[u]) last = u;
    }
    // The tensors each unit owns (tie targets live with their source).
    std::vector<std::vector<double>> tensors(units);
    const ModuleTree& tree = *g.tree;
    for (int id = 0; id < tree.size(); ++id) {
      const TreeNode& n = tree.node(id);
      if (!n.is_tensor || n.tied_source >= 0 || (n.is_buffer && !n.persistent)) continue;
      const int u = g.chain_of_node[id];
      DMAP_CHECK(u >= 0, "tensor outside every placement unit: " + n.name);
      weights[u] += static_cast<double>(g.tensor_bytes[id]);
      if (!n.is_buffer) tensors[u].push_back(static_cast<double>(g.tensor_bytes[id]));
    }
    for (int u = 0; u < units; ++u) {
      const ChainUnit& cu = g.chain[u];
      if (cu.is_layer) kv[u] = kv_layer;
      for (int oi = cu.first_op; oi < cu.end_op; ++oi) {
        const Op& op = g.ops[oi];
        if (op.kind == OpKind::kMatmul && op.head) logits[u] = logits_bytes;
        double leaf = 0;
        for (int t : op.weights) {
          if (tree.node(t).tied_source < 0) leaf += static_cast<double>(g.tensor_bytes[t]);
        }
        max_leaf[u] = std::max(max_leaf[u], leaf);
      }
      transient_acc = std::max(transient_acc, max_leaf[u]);
      transient_pre = std::max(transient_pre, 2.0 * weights[u]);
      for (int c = 0; c < kChoices; ++c) {
        const UnitChoice ch = static_cast<UnitChoice>(c);
        if (!is_stream(ch) && ch != UnitChoice::kInPlaceDisk) continue;
        const ExecDevice exec = is_stream(ch) ? ExecDevice::on_gpu(0) : ExecDevice::cpu();
        const Semantics sem = is_prefetch(ch) ? Semantics::kPrefetch
                              : is_stream(ch) ? Semantics::kAccelerate
                                              : Semantics::kInPlace;
        for (int slot = 0; slot < 3; ++slot) {
          double t = 0;
          for (double b : tensors[u]) t += stream_tensor(cm, b, from_disk(ch), slot == 2, exec, sem).total();
          stream[u][c * 3 + slot] = t;
        }
      }
    }
    host_cap = static_cast<double>(hw.host.ram - hw.host.reserved_ram);
    double worst_host = ws + logits_bytes;
    for (int u = 0; u < units; ++u) worst_host += weights[u] + kv[u];
    host_binding = worst_host > host_cap;
    for (int gi = 0; gi < gpus; ++gi) {
      const Bytes in_use = hw.gpu_memory_in_use.count(gi) ? hw.gpu_memory_in_use.at(gi) : 0;
      gpu_cap.push_back(static_cast<double>(hw.gpus[gi].memory - in_use));
      gpu_ctx.push_back(static_cast<double>(hw.gpus[gi].runtime_context) + ws);
    }
  }

  int exec_of(UnitChoice c, int gpu) const {
    if (c == UnitChoice::kResident) return gpu;
    if (is_stream(c)) return 0;
    return -1;
  }

  // Time of unit u under choice c on exec e, after the last unit that ran operators ran on pe.
  // Units without operators cost nothing and hand nothing over. `warm`: decode disk reads hit
  // the page cache.
  double step_time(int u, UnitChoice c, int e, int pe, bool warm) const {
    if (!has_ops[u]) return 0;
    const int before = prev_ops[u];
    double t = comp_total[u][e + 1];
    const int execs = gpus + 1;
    if (before >= 0 && pe != e) {
      t += copy_prefill[(pe + 1) * execs + e + 1] + steps * copy_decode[(pe + 1) * execs + e + 1];
    }
    if (is_stream(c) || c == UnitChoice::kInPlaceDisk) {
      const int ci = static_cast<int>(c);
      const double sp = stream[u][ci * 3], sd = stream[u][ci * 3 + (warm ? 2 : 1)];
      if (is_prefetch(c)) {
        for (size_t k = 0; k < phases.size(); ++k) {
          const double s = k == 0 ? sp : sd;
          const double prev = before < 0 ? 0.0 : comp[before][pe + 1][k];
          t += phase_weight[k] * std::max(0.0, s - prev);
        }
      } else {
        t += sp + steps * sd;
      }
    }
    return t;
  }

  // Bytes the unit adds to its GPU (or host) under choice c.
  double gpu_bytes(int u, UnitChoice c) const {
    if (c == UnitChoice::kResident) return weights[u] + kv[u] + logits[u];
    if (is_stream(c)) return kv[u] + logits[u];
    return 0;
  }
  double host_bytes(int u, UnitChoice c) const {
    if (!host_binding) return 0;
    double b = 0;
    if (c == UnitChoice::kStreamAccelerate || c == UnitChoice::kStreamPrefetch || c == UnitChoice::kInPlaceCpu) b += weights[u];
    if (is_in_place(c)) b += kv[u] + logits[u];
    return b;
  }
  // Host bytes every placement pays when RAM binds: the CPU's activation workspace.
  double host_base() const { return host_binding ? ws + logits_bytes : 0; }
  double gpu_open(int g, Mode mode) const {
    double b = gpu_ctx[g];
    if (g == 0 && mode == Mode::kAccelerate) b += transient_acc;
    if (g == 0 && mode == Mode::kPrefetch) b += transient_pre;
    return b;
  }
  bool allowed(UnitChoice c, Mode mode, const OptimalOptions& o) const {
    switch (c) {
      case UnitChoice::kResident: return gpus > 0;
      case UnitChoice::kStreamAccelerate: return mode == Mode::kAccelerate;
      case UnitChoice::kStreamAccelerateDisk: return mode == Mode::kAccelerate && o.allow_disk;
      case UnitChoice::kStreamPrefetch: return mode == Mode::kPrefetch;
      case UnitChoice::kStreamPrefetchDisk: return mode == Mode::kPrefetch && o.allow_disk;
      case UnitChoice::kInPlaceCpu: return o.allow_in_place || gpus == 0;
      case UnitChoice::kInPlaceDisk: return (o.allow_in_place || gpus == 0) && o.allow_disk;
    }
    return false;
  }
};

struct Label {
  double mem;   // bytes on the open GPU
  double host;  // host bytes (0 unless RAM binds)
  double time;
  int parent;   // index into the previous unit's labels
  int8_t gpu;   // open GPU after this unit (-1 none)
  int8_t choice;
};

struct Run {
  double time = kInf;
  std::vector<UnitChoice> choices;
  std::vector<int> gpu;
};

Run run_dp(const Tables& T, Mode mode, const OptimalOptions& opt, bool warm) {
  Run best;
  if (T.units == 0) return best;
  const int G = T.gpus;
  std::vector<std::vector<Label>> layers(T.units);
  // Unit 0.
  {
    std::vector<Label>& out = layers[0];
    for (int c = 0; c < kChoices; ++c) {
      const UnitChoice ch = static_cast<UnitChoice>(c);
      if (!T.allowed(ch, mode, opt) || is_stream(ch)) continue;
      if (mode != Mode::kNone && ch != UnitChoice::kResident) continue;  // streaming: unit 0 on GPU 0
      const int first_gpu = 0, last_gpu = (mode != Mode::kNone) ? 0 : G - 1;
      if (ch == UnitChoice::kResident) {
        for (int g = first_gpu; g <= last_gpu; ++g) {
          const double mem = T.gpu_open(g, mode) + T.gpu_bytes(0, ch);
          if (mem > T.gpu_cap[g]) continue;
          out.push_back({mem, T.host_bytes(0, ch) + T.host_base(), T.step_time(0, ch, g, g, warm), -1, static_cast<int8_t>(g),
                         static_cast<int8_t>(c)});
        }
      } else {
        const double host = T.host_bytes(0, ch) + T.host_base();
        if (host > T.host_cap) continue;
        out.push_back({0, host, T.step_time(0, ch, -1, -1, warm), -1, -1, static_cast<int8_t>(c)});
      }
    }
  }
  // States are (open GPU, choice): prune each to its Pareto front over (memory on the open GPU,
  // host bytes, time). Host bytes are 0 unless RAM binds, so then two criteria remain and a
  // sweep by memory keeps exactly the labels with strictly decreasing time.
  auto prune = [&](std::vector<Label>& v) {
    std::sort(v.begin(), v.end(), [](const Label& a, const Label& b) {
      if (a.gpu != b.gpu) return a.gpu < b.gpu;
      if (a.choice != b.choice) return a.choice < b.choice;
      if (a.mem != b.mem) return a.mem < b.mem;
      if (a.host != b.host) return a.host < b.host;
      return a.time < b.time;
    });
    std::vector<Label> out;
    out.reserve(v.size());
    size_t start = 0;
    for (size_t k = 0; k < v.size(); ++k) {
      if (k == 0 || v[k].gpu != v[k - 1].gpu || v[k].choice != v[k - 1].choice) start = out.size();
      bool dominated = false;
      if (!T.host_binding) {
        dominated = out.size() > start && out.back().time <= v[k].time;
      } else {
        for (size_t m = start; m < out.size() && !dominated; ++m) {
          dominated = out[m].mem <= v[k].mem && out[m].host <= v[k].host && out[m].time <= v[k].time;
        }
      }
      if (!dominated) out.push_back(v[k]);
    }
    v.swap(out);
  };
  prune(layers[0]);
  for (int u = 1; u < T.units; ++u) {
    std::vector<Label> cand;
    const std::vector<Label>& prev = layers[u - 1];
    for (int li = 0; li < static_cast<int>(prev.size()); ++li) {
      const Label& L = prev[li];
      const UnitChoice pc = static_cast<UnitChoice>(L.choice);
      const int pe = T.exec_of(pc, L.gpu);
      if (!T.has_ops[u]) {
        // A unit without operators (rotary buffers) goes with the unit before it: free, and the
        // next unit hands over from the last one that ran.
        const double mem = L.mem + (L.gpu >= 0 ? T.gpu_bytes(u, pc) : 0.0);
        if (L.gpu >= 0 && mem > T.gpu_cap[L.gpu]) continue;
        cand.push_back({mem, L.host + T.host_bytes(u, pc), L.time, li, L.gpu, L.choice});
        continue;
      }
      for (int c = 0; c < kChoices; ++c) {
        const UnitChoice ch = static_cast<UnitChoice>(c);
        if (!T.allowed(ch, mode, opt)) continue;
        if (ch == UnitChoice::kResident) {
          for (int g = std::max(0, static_cast<int>(L.gpu)); g < G; ++g) {
            const bool open = g != L.gpu;
            const double mem = (open ? T.gpu_open(g, Mode::kNone) : L.mem) + T.gpu_bytes(u, ch);
            if (mem > T.gpu_cap[g]) continue;
            cand.push_back({mem, L.host + T.host_bytes(u, ch), L.time + T.step_time(u, ch, g, pe, warm), li,
                            static_cast<int8_t>(g), static_cast<int8_t>(c)});
          }
        } else if (is_stream(ch)) {
          if (L.gpu != 0) continue;  // streaming runs on GPU 0 while it is the open GPU
          const double mem = L.mem + T.gpu_bytes(u, ch);
          if (mem > T.gpu_cap[0]) continue;
          const double host = L.host + T.host_bytes(u, ch);
          if (host > T.host_cap) continue;
          cand.push_back({mem, host, L.time + T.step_time(u, ch, 0, pe, warm), li, 0, static_cast<int8_t>(c)});
        } else {
          const double host = L.host + T.host_bytes(u, ch);
          if (host > T.host_cap) continue;
          cand.push_back({L.mem, host, L.time + T.step_time(u, ch, -1, pe, warm), li, L.gpu, static_cast<int8_t>(c)});
        }
      }
    }
    prune(cand);
    layers[u].swap(cand);
    if (layers[u].empty()) return best;
  }
  int arg = -1;
  for (int i = 0; i < static_cast<int>(layers.back().size()); ++i) {
    if (arg < 0 || layers.back()[i].time < layers.back()[arg].time) arg = i;
  }
  if (arg < 0) return best;
  best.time = layers.back()[arg].time;
  best.choices.resize(T.units);
  best.gpu.resize(T.units);
  for (int u = T.units - 1, i = arg; u >= 0; --u) {
    const Label& L = layers[u][i];
    best.choices[u] = static_cast<UnitChoice>(L.choice);
    best.gpu[u] = best.choices[u] == UnitChoice::kResident ? L.gpu : -1;
    i = L.parent;
  }
  return best;
}

}  // namespace

OptimalResult optimal_search(const CostModel& cm, const Hardware& hw, const OptimalOptions& options) {
  const Tables T(cm, hw);
  // Decode disk reads hit the page cache or not depending on the whole placement (what stays in
  // RAM); when RAM binds, search under both assumptions and keep the placement whose exact
  // objective is lowest.
  std::vector<bool> warm_runs = {false};
  if (T.host_binding && hw.page_cache && options.allow_disk) warm_runs.push_back(true);
  std::vector<Mode> modes = {Mode::kNone};
  if (!hw.gpus.empty() && options.allow_accelerate) modes.push_back(Mode::kAccelerate);
  if (!hw.gpus.empty() && options.allow_prefetch) modes.push_back(Mode::kPrefetch);
  Run best;
  for (bool warm : warm_runs) {
    for (Mode m : modes) {
      Run r = run_dp(T, m, options, warm);
      if (!std::isfinite(r.time)) continue;
      if (warm_runs.size() > 1) r.time = dp_objective(cm, hw, r.choices, r.gpu);
      if (r.time < best.time) best = std::move(r);
    }
  }
  OptimalResult res;
  if (!std::isfinite(best.time)) return res;
  res.found = true;
  res.objective_s = best.time;
  res.choices = best.choices;
  res.gpu = best.gpu;
  const ModelGraph& g = cm.graph();
  bool any_gpu = false, any_acc = false, any_pre = false, any_inplace = false;
  for (int u = 0; u < T.units; ++u) {
    const UnitChoice c = best.choices[u];
    const std::string& name = g.tree->node(g.chain[u].node).name;
    Device d = Device::cpu();
    Semantics s = Semantics::kAccelerate;
    if (c == UnitChoice::kResident) {
      d = Device::gpu(best.gpu[u]);
      any_gpu = true;
    } else if (is_stream(c)) {
      d = from_disk(c) ? Device::disk() : Device::cpu();
      s = is_prefetch(c) ? Semantics::kPrefetch : Semantics::kAccelerate;
      (is_prefetch(c) ? any_pre : any_acc) = true;
    } else {
      d = from_disk(c) ? Device::disk() : Device::cpu();
      s = Semantics::kInPlace;
      any_inplace = true;
    }
    res.map.assign(name, d);
    res.per_entry.push_back(s);
    if (g.chain[u].is_layer) (c == UnitChoice::kResident ? res.gpu_layers : res.cpu_layers) += 1;
  }
  // Merge same-device siblings as accelerate's clean_device_map does, when the map runs under
  // one semantics whose cost does not depend on entry granularity (not prefetch, which
  // double-buffers whole entries).
  if (!any_pre && !(any_acc && any_inplace)) {
    strategies::clean_device_map(res.map);
    res.per_entry.assign(res.map.items().size(), any_inplace ? Semantics::kInPlace : Semantics::kAccelerate);
  }
  std::string label;
  auto add = [&](const char* part) { label.append(label.empty() ? "" : "+").append(part); };
  if (any_acc) add("accelerate");
  if (any_pre) add("prefetch");
  if (any_inplace) add(any_gpu ? "in-place" : "cpu");
  if (label.empty()) label = any_gpu ? "gpu" : "cpu";
  res.label = label;
  res.transformers_expressible = !any_pre && !(any_inplace && any_gpu);
  return res;
}

double dp_objective(const CostModel& cm, const Hardware& hw, const std::vector<UnitChoice>& choices,
                    const std::vector<int>& gpu) {
  const Tables T(cm, hw);
  if (static_cast<int>(choices.size()) != T.units || gpu.size() != choices.size() || T.units == 0) return kInf;
  Mode mode = Mode::kNone;
  for (UnitChoice c : choices) {
    if (!is_stream(c)) continue;
    const Mode m = is_prefetch(c) ? Mode::kPrefetch : Mode::kAccelerate;
    if (mode != Mode::kNone && mode != m) return kInf;
    mode = m;
  }
  if (mode != Mode::kNone && (choices[0] != UnitChoice::kResident || gpu[0] != 0)) return kInf;
  std::vector<double> gpu_mem(T.gpus, -1);
  double host = T.host_base(), time = 0, ram_weights = 0, disk_weights = 0;
  for (int u = 0; u < T.units; ++u) {
    const UnitChoice c = choices[u];
    if (c == UnitChoice::kStreamAccelerate || c == UnitChoice::kStreamPrefetch || c == UnitChoice::kInPlaceCpu) {
      ram_weights += T.weights[u];
    } else if (from_disk(c)) {
      disk_weights += T.weights[u];
    }
  }
  const bool warm = page_cache_holds(hw, static_cast<Bytes>(ram_weights), static_cast<Bytes>(disk_weights));
  int open = -1, last_exec = -1;
  for (int u = 0; u < T.units; ++u) {
    const UnitChoice c = choices[u];
    const int e = T.exec_of(c, gpu[u]);
    if (c == UnitChoice::kResident) {
      if (gpu[u] < 0 || gpu[u] >= T.gpus) return kInf;
      if (!T.has_ops[u] && gpu[u] != open) return kInf;  // an operator-less unit goes with its neighbour
      if (gpu[u] < open) return kInf;
      if (gpu[u] != open) {
        open = gpu[u];
        gpu_mem[open] = T.gpu_open(open, open == 0 ? mode : Mode::kNone);
      }
      gpu_mem[open] += T.gpu_bytes(u, c);
    } else if (is_stream(c)) {
      if (open != 0) return kInf;
      gpu_mem[0] += T.gpu_bytes(u, c);
    }
    host += T.host_bytes(u, c);
    time += T.step_time(u, c, e, last_exec, warm);
    if (T.has_ops[u]) last_exec = e;
  }
  for (int g = 0; g < T.gpus; ++g) {
    if (gpu_mem[g] > T.gpu_cap[g]) return kInf;
  }
  if (host > T.host_cap) return kInf;
  return time;
}

}  // namespace dmap::sim
