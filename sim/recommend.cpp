// Ranking, recommendation and verdict.
#include "sim/recommend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "strategies/plan.h"

namespace dmap::sim {

std::string format_seconds(double s) {
  char buf[64];
  if (s < 1e-3) {
    std::snprintf(buf, sizeof buf, "%.1f us", s * 1e6);
  } else if (s < 1.0) {
    std::snprintf(buf, sizeof buf, "%.1f ms", s * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f s", s);
  }
  return buf;
}

namespace {

// llama.cpp's flags for an in-place map: -ngl counts the decoder layers whose attention is on a
// GPU; routed experts kept on the CPU in such layers add --cpu-moe (all of them), --n-cpu-moe N
// (the first N layers) or an -ot pattern over GGUF's blk.N.ffn_{gate,up,down}_exps tensors.
std::string llama_cpp_flags(const ModuleTree& tree, const ModelGraph& graph, const DeviceMap& map) {
  int gpu_layers = 0, cpu_layers = 0, moe_layers = 0;
  std::vector<int> cpu_experts;  // layer index (among decoder layers) of GPU layers with CPU experts
  int index = 0;
  for (const auto& cu : graph.chain) {
    if (!cu.is_layer) continue;
    const TreeNode& layer = tree.node(cu.node);
    int attn = -1;
    for (int c : layer.children) {
      if (attn < 0 && tree.node(c).local.find("attn") != std::string::npos) attn = c;
    }
    const int experts = routed_experts_of(tree, cu.node);
    const auto main_dev = strategies::device_of(tree, map, attn >= 0 ? attn : cu.node);
    const bool on_gpu = main_dev && main_dev->is_gpu();
    (on_gpu ? gpu_layers : cpu_layers) += 1;
    if (experts >= 0) {
      ++moe_layers;
      const auto e = strategies::device_of(tree, map, experts);
      if (on_gpu && e && !e->is_gpu()) cpu_experts.push_back(index);
    }
    ++index;
  }
  std::string out = "llama.cpp-style split: -ngl " + std::to_string(gpu_layers);
  if (!cpu_experts.empty()) {
    bool prefix = true;
    for (size_t i = 0; i < cpu_experts.size(); ++i) prefix = prefix && cpu_experts[i] == static_cast<int>(i);
    if (static_cast<int>(cpu_experts.size()) == moe_layers) {
      out += " --cpu-moe";
    } else if (prefix) {
      out += " --n-cpu-moe " + std::to_string(cpu_experts.size());
    } else {
      std::string alt;
      for (int l : cpu_experts) alt += (alt.empty() ? "" : "|") + std::to_string(l);
      out += " -ot \"blk\\.(" + alt + ")\\.ffn_(gate|up|down)_exps=CPU\"";
    }
  }
  out +=
      " (" + std::to_string(gpu_layers) + " layers on the GPU" +
      (cpu_experts.empty() ? ""
                           : ", the routed experts of " + std::to_string(cpu_experts.size()) + " of them on the CPU") +
      ", " + std::to_string(cpu_layers) + " computed on the CPU)";
  return out;
}

bool has_gpu(const DeviceMap& dm) {
  for (const auto& [n, d] : dm.items()) {
    if (d.is_gpu()) return true;
  }
  return false;
}
bool has_offload(const DeviceMap& dm) {
  for (const auto& [n, d] : dm.items()) {
    if (!d.is_gpu()) return true;
  }
  return false;
}

std::string pct(double f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f%%", f * 100);
  return buf;
}
std::string ratio(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f\u00d7", r);
  return buf;
}
std::string gbs(double bps) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GB/s", bps / 1e9);
  return buf;
}

// One runtime's rates and cost model (sim/runtime.h); dmap's are the context's own.
struct RuntimeModel {
  Runtime runtime = Runtime::kDmap;
  RuntimeProfile profile;
  Rates rates;
  std::unique_ptr<CostModel> cm;
};

struct Context {
  const SimScenario& s;
  std::shared_ptr<ModuleTree> tree;
  std::shared_ptr<ModelGraph> graph;
  Rates rates;
  std::unique_ptr<CostModel> cm;
  std::vector<std::unique_ptr<RuntimeModel>> runtimes;  // the scenario's, except dmap
  bool named() const { return !s.runtimes.empty(); }    // rows name their runtime
  bool lists(Runtime r) const { return std::find(s.runtimes.begin(), s.runtimes.end(), r) != s.runtimes.end(); }
  const RuntimeModel* model_for(Runtime r) const {
    for (const auto& m : runtimes) {
      if (m->runtime == r) return m.get();
    }
    return nullptr;
  }
  const CostModel& cm_for(Runtime r) const {
    for (const auto& m : runtimes) {
      if (m->runtime == r) return *m->cm;
    }
    return *cm;
  }
};

void setup(Context& c, const Hardware& hw) {
  c.tree = std::make_shared<ModuleTree>(build_module_tree(c.s.base.model));
  c.graph = std::make_shared<ModelGraph>(build_graph(*c.tree, c.s.workload.dtype));
  const Calibration* cal = c.s.calibration ? &*c.s.calibration : nullptr;
  c.rates = make_rates(hw, cal);
  c.cm = std::make_unique<CostModel>(*c.graph, c.rates, c.s.workload);
  for (Runtime r : c.s.runtimes) {
    if (r == Runtime::kDmap) continue;
    auto m = std::make_unique<RuntimeModel>();
    m->runtime = r;
    m->profile = profile_for(cal, r);
    m->rates = runtime_rates(c.rates, r, m->profile);
    m->cm = std::make_unique<CostModel>(*c.graph, m->rates, c.s.workload);
    c.runtimes.push_back(std::move(m));
  }
}

// The runtimes a row of `dm` under `sem` is predicted under: dmap alone when the scenario names
// none; else those listed that run the semantics (a map with nothing offloaded: every runtime).
std::vector<Runtime> row_runtimes(const Context& c, const DeviceMap& dm, Semantics sem) {
  if (!c.named()) return {Runtime::kDmap};
  std::vector<Runtime> out;
  const bool resident = has_gpu(dm) && !has_offload(dm);
  for (Runtime r : c.s.runtimes) {
    if (resident || runtime_runs(r, sem)) out.push_back(r);
  }
  return out;
}

std::optional<strategies::PlanResult> plan(const SimScenario& s, const ModuleTree& tree, const Hardware& hw,
                                           const std::string& strategy, MaxMemory& given, bool& derived,
                                           std::string& error) {
  strategies::PlanRequest req = strategies::plan_request_for(s.base, tree);
  auto st = strategies::parse_strategy(strategy);
  DMAP_CHECK(st.has_value(), "not a planner strategy: " + strategy);
  req.strategy = *st;
  if (s.base.max_memory) {
    req.max_memory = *s.base.max_memory;
    req.user_gave_max_memory = true;
    derived = false;
  } else {
    req.max_memory = derived_max_memory(hw);
    req.user_gave_max_memory = false;
    derived = true;
  }
  req.host_available_bytes = hw.host.ram - hw.host.reserved_ram;
  given = req.max_memory;
  try {
    return strategies::plan_device_map(req);
  } catch (const InputError& e) {
    error = e.message();
  } catch (const RuntimeFailure& e) {
    error = e.what();
  }
  return std::nullopt;
}

bool same_placement(const ResultRow& a, const ResultRow& b) {
  if (a.semantics != b.semantics || a.runtime != b.runtime || !a.error.empty() || !b.error.empty()) return false;
  const auto x = a.map.items(), y = b.map.items();
  if (x.size() != y.size()) return false;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] != y[i]) return false;
  }
  return a.per_entry == b.per_entry;
}

// A row the CPU computes under a runtime that cannot compute in the model's dtype there (measured
// by the runtime's profiler: Debian's torch 1.13 has no float16 products on the CPU) cannot run.
void refuse_unsupported_dtype(ResultRow& r, const Context& c, Runtime rt, Semantics sem) {
  if (sem != Semantics::kCpu) return;
  const RuntimeModel* m = c.model_for(rt);
  if (!m) return;
  const auto it = m->profile.unsupported.find(c.graph->dtype);
  if (it == m->profile.unsupported.end()) return;
  mark_cannot_run(r.pred, runtime_name(rt) + " cannot compute in " + std::string(dtype_name(c.graph->dtype)) +
                              " on this CPU (measured by `dmap profile --real --runtime " + runtime_name(rt) +
                              "`: " + it->second + ")");
}

void add_rows(std::vector<ResultRow>& rows, const Context& c, const Hardware& hw, const std::string& strategy,
              const DeviceMap& dm, const std::vector<Semantics>& semantics) {
  std::vector<Semantics> list;
  if (!has_gpu(dm)) {
    list = {Semantics::kCpu};
  } else if (!has_offload(dm)) {
    list = {Semantics::kAccelerate};  // nothing offloaded: every semantics runs it the same way
  } else {
    // `cpu` names the all-CPU map's semantics; a map with GPUs runs under the others. Beside
    // prefetch, for a mixture-of-experts model, dmap's routed variant (a proposal, priced only).
    const bool moe = std::any_of(c.graph->ops.begin(), c.graph->ops.end(), [](const Op& op) { return op.experts > 0; });
    for (Semantics s : semantics) {
      if (s != Semantics::kCpu) list.push_back(s);
      if (s == Semantics::kPrefetch && moe &&
          std::find(semantics.begin(), semantics.end(), Semantics::kRoutedPrefetch) == semantics.end())
        list.push_back(Semantics::kRoutedPrefetch);
    }
  }
  for (Semantics sem : list) {
    for (Runtime rt : row_runtimes(c, dm, sem)) {
      ResultRow r;
      r.strategy = strategy;
      r.semantics = semantics_name(sem);
      if (c.named()) r.runtime = runtime_name(rt);
      r.map = dm;
      r.per_entry.assign(dm.items().size(), sem);
      r.pred = simulate(c.cm_for(rt), hw, dm, r.per_entry);
      refuse_unsupported_dtype(r, c, rt, sem);
      for (const auto& prev : rows) {
        if (same_placement(prev, r)) {
          r.same_as = prev.strategy;
          break;
        }
      }
      rows.push_back(std::move(r));
    }
  }
}

// Weight bytes under a node (each tensor once).
double bytes_under(const ModuleTree& tree, const ModelGraph& g, int node) {
  double b = 0;
  const TreeNode& n = tree.node(node);
  if (n.is_tensor) return n.tied_source >= 0 ? 0.0 : static_cast<double>(g.tensor_bytes[node]);
  for (int p : n.params) b += bytes_under(tree, g, p);
  for (int q : n.buffers) b += bytes_under(tree, g, q);
  for (int c : n.children) b += bytes_under(tree, g, c);
  return b;
}

// llama.cpp's --n-cpu-moe N: every layer on the GPUs (split across them in order, in proportion
// to their memory, as llama.cpp's default tensor split does), except the routed experts of the
// first N sparse layers, computed in place on the CPU; N from 0 to all, the fastest that fits (the
// least that fits, unless the CPU runs experts faster than the GPUs). No row when the model has
// no routed experts or the hardware no GPU; when nothing fits, the row with every layer's experts
// on the CPU says why.
void add_n_cpu_moe_row(std::vector<ResultRow>& rows, const Context& c, const Hardware& hw) {
  const ModuleTree& tree = *c.tree;
  if (hw.gpus.empty() || tree.dims.num_experts <= 0) return;
  // llama.cpp's flag: under llama.cpp where the scenario lists it, else dmap's in-place split.
  const Runtime rt = !c.named() || !c.lists(Runtime::kLlamaCpp) ? Runtime::kDmap : Runtime::kLlamaCpp;
  if (c.named() && !c.lists(rt)) return;
  const CostModel& cm = c.cm_for(rt);
  std::vector<int> layers;  // chain units that are sparse decoder layers, in order
  for (const auto& cu : c.graph->chain) {
    if (cu.is_layer && routed_experts_of(tree, cu.node) >= 0) layers.push_back(cu.node);
  }
  if (layers.empty()) return;
  // Each chain unit's bytes, and what stays on a GPU when its experts go to the CPU.
  std::vector<double> unit_bytes, kept_bytes;
  for (const auto& cu : c.graph->chain) {
    unit_bytes.push_back(bytes_under(tree, *c.graph, cu.node));
    const int e = routed_experts_of(tree, cu.node);
    kept_bytes.push_back(unit_bytes.back() - (e >= 0 ? bytes_under(tree, *c.graph, e) : 0.0));
  }
  double capacity = 0;
  for (size_t g = 0; g < hw.gpus.size(); ++g) capacity += static_cast<double>(hw.gpu_capacity(static_cast<int>(g)));
  std::optional<ResultRow> best;
  // From every layer's experts on the CPU down: on one GPU, once the GPU runs over its memory
  // with N layers' experts on the CPU, it does with fewer too (its bytes only grow), so the walk
  // stops there; on several GPUs the split moves layers between them, and every N is tried.
  for (size_t step = 0; step <= layers.size(); ++step) {
    const size_t n = layers.size() - step;
    std::vector<char> split(c.graph->chain.size(), 0);
    double on_gpus = 0;
    for (size_t u = 0; u < c.graph->chain.size(); ++u) {
      const auto it = std::find(layers.begin(), layers.end(), c.graph->chain[u].node);
      split[u] = it != layers.end() && static_cast<size_t>(it - layers.begin()) < n;
      on_gpus += split[u] ? kept_bytes[u] : unit_bytes[u];
    }
    // The GPU of each unit: in order, GPU g taking its share of the bytes.
    DeviceMap dm;
    size_t gpu = 0;
    double filled = 0, share_end = on_gpus * static_cast<double>(hw.gpu_capacity(0)) / capacity;
    for (size_t u = 0; u < c.graph->chain.size(); ++u) {
      const int node = c.graph->chain[u].node;
      while (gpu + 1 < hw.gpus.size() && filled >= share_end * (1 - 1e-12)) {
        ++gpu;
        share_end += on_gpus * static_cast<double>(hw.gpu_capacity(static_cast<int>(gpu))) / capacity;
      }
      filled += split[u] ? kept_bytes[u] : unit_bytes[u];
      const Device d = Device::gpu(static_cast<int>(gpu));
      if (!split[u]) {
        dm.assign(tree.node(node).name, d);
        continue;
      }
      const int experts = routed_experts_of(tree, node);
      for (int child : tree.node(node).children) {
        if (child != tree.node(experts).parent) {
          dm.assign(tree.node(child).name, d);
          continue;
        }
        for (int part : tree.node(child).children) dm.assign(tree.node(part).name, part == experts ? Device::cpu() : d);
      }
    }
    ResultRow r;
    r.strategy = "n_cpu_moe";
    r.semantics = semantics_name(Semantics::kInPlace);
    if (c.named()) r.runtime = runtime_name(rt);
    r.map = dm;
    r.per_entry.assign(dm.items().size(), Semantics::kInPlace);
    r.pred = simulate(cm, hw, dm, r.per_entry);
    // (None fits: the row with every layer's experts on the CPU, the first tried, says why.)
    const bool better = !best || (r.pred.feasible && (!best->pred.feasible || r.pred.total_s < best->pred.total_s));
    bool gpu_over = false;
    for (size_t i = 0; i < r.pred.memory.size() && i < r.pred.capacity.size(); ++i) {
      gpu_over = gpu_over || (r.pred.memory[i].first.is_gpu() && r.pred.memory[i].second > r.pred.capacity[i].second);
    }
    if (better) best = std::move(r);
    if (gpu_over && hw.gpus.size() == 1) break;
  }
  for (const auto& prev : rows) {
    if (same_placement(prev, *best)) {
      best->same_as = prev.strategy;
      break;
    }
  }
  rows.push_back(std::move(*best));
}

// A map transformers' quantizer refuses (bitsandbytes with modules on cpu or disk): its rows
// under transformers (accelerate's semantics) cannot run; the reason is transformers' ValueError.
void refuse_under_transformers(std::vector<ResultRow>& rows, size_t first, const std::string& refusal) {
  if (refusal.empty()) return;
  for (size_t i = first; i < rows.size(); ++i) {
    if (rows[i].semantics != semantics_name(Semantics::kAccelerate)) continue;
    mark_cannot_run(rows[i].pred, "transformers refuses to load this map: " + refusal);
  }
}

}  // namespace

std::vector<Placement> contained_placements(const std::vector<ResultRow>& rows, const CostModel& cm,
                                            const Hardware& hw) {
  std::vector<Placement> out;
  for (const ResultRow& row : rows) {
    if (row.strategy == "optimal" || !row.error.empty() || !row.pred.feasible) continue;
    if (auto p = placement_of(cm, hw, row.map, row.per_entry)) out.push_back(std::move(*p));
  }
  return out;
}

Evaluation evaluate(const SimScenario& s) {
  Context c{s, nullptr, nullptr, {}, nullptr, {}};
  const Hardware& hw = s.hardware;
  setup(c, hw);
  Evaluation ev;
  ev.tree = c.tree;
  ev.graph = c.graph;
  ev.rates = c.rates;
  for (const std::string& name : s.strategies) {
    if (name == "optimal") {  // computed below, once the other rows are known
      ev.optimal_row = static_cast<int>(ev.rows.size());
      ResultRow r;
      r.strategy = "optimal";
      ev.rows.push_back(std::move(r));
      continue;
    }
    if (name == "n_cpu_moe") {  // a row only for mixture-of-experts models on a GPU
      add_n_cpu_moe_row(ev.rows, c, hw);
      continue;
    }
    if (name == "cpu" || name == "disk") {
      const DeviceMap dm = strategies::whole_model_map(name == "cpu" ? Device::cpu() : Device::disk());
      if (name == "cpu") ev.cpu_row = static_cast<int>(ev.rows.size());
      add_rows(ev.rows, c, hw, name, dm, s.semantics);
      continue;
    }
    if (strategies::parse_strategy(name)) {
      std::string error;
      auto res = plan(s, *c.tree, hw, name, ev.max_memory, ev.max_memory_derived, error);
      if (name == "auto") ev.auto_row = static_cast<int>(ev.rows.size());
      if (!res) {
        ResultRow r;
        r.strategy = name;
        r.semantics = "-";
        r.error = error;
        r.pred.feasible = false;
        r.pred.oom = "the planner raised: " + error;
        ev.rows.push_back(std::move(r));
        continue;
      }
      const size_t first = ev.rows.size();
      add_rows(ev.rows, c, hw, name, res->device_map, s.semantics);
      refuse_under_transformers(ev.rows, first, res->refusal);
      continue;
    }
    // A hand-written map.
    for (const auto& m : s.base.device_maps) {
      if (m.name != name) continue;
      DeviceMap dm;
      try {
        dm = strategies::validate_manual_map(*c.tree, m.entries, s.base.file, m.entry_lines);
      } catch (const InputError& e) {
        throw InputError(s.base.file, e.line() > 0 ? e.line() : m.line, 0,
                         "device_maps." + m.name + ": " + e.message());
      }
      const size_t first = ev.rows.size();
      add_rows(ev.rows, c, hw, name, dm, s.semantics);
      refuse_under_transformers(ev.rows, first, strategies::quantizer_refusal(*c.tree, dm));
    }
  }
  if (ev.optimal_row >= 0) {
    // The optimum starts from every row its search space contains: it is never slower than
    // any of them, even when the search runs out of work.
    OptimalOptions opts;
    // transformers refuses a bitsandbytes map with offloaded modules: no accelerate placement.
    if (!c.tree->gguf_file_type.empty()) {  // llama.cpp computes layers where they live
      opts.allow_accelerate = false;
      opts.allow_prefetch = false;
    }
    if (const auto& q = c.tree->quantization;
        q && !q->llm_int8_enable_fp32_cpu_offload &&
        (q->method == QuantMethod::kBnb4bit || q->method == QuantMethod::kBnb8bit)) {
      opts.allow_accelerate = false;
    }
    // Runtimes listed without dmap: none of them prefetches.
    if (c.named() && !c.lists(Runtime::kDmap)) opts.allow_prefetch = false;
    ev.optimal = optimal_search(*c.cm, hw, opts, contained_placements(ev.rows, *c.cm, hw));
    ResultRow& r = ev.rows[ev.optimal_row];
    if (!ev.optimal->found) {
      r.semantics = "-";
      r.error = ev.optimal->why_not;
      r.pred.feasible = false;
      r.pred.oom = r.error;
    } else {
      r.semantics = ev.optimal->label;
      r.map = ev.optimal->map;
      r.per_entry = ev.optimal->per_entry;
      // The search prices dmap's executor. Where the scenario lists runtimes without dmap, the
      // placement it found is priced under the listed runtime that runs it (the fastest placement
      // for dmap, not searched for that runtime); else it stays dmap's.
      Runtime rt = Runtime::kDmap;
      if (c.named() && !c.lists(Runtime::kDmap)) {
        bool accelerate = true, in_place = true;
        for (Semantics sem : r.per_entry) {
          accelerate = accelerate && (sem == Semantics::kAccelerate || sem == Semantics::kCpu);
          in_place = in_place && (sem == Semantics::kInPlace || sem == Semantics::kCpu);
        }
        const bool resident = has_gpu(r.map) && !has_offload(r.map);
        if ((accelerate || resident) && c.lists(Runtime::kTransformers)) {
          rt = Runtime::kTransformers;
        } else if ((in_place || resident) && c.lists(Runtime::kLlamaCpp)) {
          rt = Runtime::kLlamaCpp;
        }
      }
      if (c.named()) r.runtime = runtime_name(rt);
      r.pred = simulate(c.cm_for(rt), hw, r.map, r.per_entry);
    }
    // Later rows name the optimum when they are the same placement, as they would have.
    for (size_t i = ev.optimal_row + 1; i < ev.rows.size(); ++i) {
      ResultRow& later = ev.rows[i];
      later.same_as.clear();
      for (size_t j = 0; j < i; ++j) {
        if (same_placement(ev.rows[j], later)) {
          later.same_as = ev.rows[j].strategy;
          break;
        }
      }
    }
  }
  // Like with like: the verdict compares auto with CPU-only under auto's runtime where it has one.
  if (c.named() && ev.auto_row >= 0 && ev.cpu_row >= 0) {
    for (int i = ev.cpu_row; i < static_cast<int>(ev.rows.size()) && ev.rows[i].strategy == "cpu"; ++i) {
      if (ev.rows[i].runtime == ev.rows[ev.auto_row].runtime) {
        ev.cpu_row = i;
        break;
      }
    }
  }
  if (ev.max_memory.empty()) {
    ev.max_memory = s.base.max_memory ? *s.base.max_memory : derived_max_memory(hw);
    ev.max_memory_derived = !s.base.max_memory;
  }

  // Ranking: feasible rows by end-to-end time; duplicates keep their place.
  for (int i = 0; i < static_cast<int>(ev.rows.size()); ++i) ev.ranking.push_back(i);
  std::stable_sort(ev.ranking.begin(), ev.ranking.end(), [&](int a, int b) {
    const auto& x = ev.rows[a].pred;
    const auto& y = ev.rows[b].pred;
    if (x.feasible != y.feasible) return x.feasible;
    if (!x.feasible) return false;
    // Equal predictions (the same placement written differently) keep the scenario's order.
    auto key = [](double t) { return t > 0 ? std::round(std::log(t) * 1e9) : -1e300; };
    return key(x.total_s) < key(y.total_s);
  });
  // Recommended: the fastest row a runtime can run (routed-prefetch is dmap's proposal).
  for (int i : ev.ranking) {
    if (!ev.rows[i].pred.feasible) break;
    if (ev.rows[i].semantics == semantics_name(Semantics::kRoutedPrefetch)) continue;
    ev.recommended = i;
    break;
  }

  // Break-even offloaded fraction: streaming a fraction f of the weights over the link costs
  // f*W/h2d per token; the CPU reads all W at its memory bandwidth. CPU-only wins past h2d/bw.
  ev.break_even_fraction = c.rates.h2d_pageable.value / c.rates.host.memory_bandwidth.value;

  // The verdict (each side names its runtime when the scenario lists runtimes).
  auto under = [](const ResultRow& r) { return r.runtime.empty() ? std::string() : " under " + r.runtime; };
  std::ostringstream v;
  const ResultRow* au = ev.auto_row >= 0 ? &ev.rows[ev.auto_row] : nullptr;  // auto x accelerate is its first row
  const ResultRow* cpu = ev.cpu_row >= 0 ? &ev.rows[ev.cpu_row] : nullptr;
  if (au && !au->error.empty()) {
    v << "device_map='auto' cannot be planned here (" << au->error << "). ";
  } else if (au && !au->pred.feasible) {
    v << "device_map='auto' does not run here: " << au->pred.oom << ". ";
  } else if (au && !has_gpu(au->map)) {
    v << "device_map='auto' runs everything on the CPU here (no GPU memory to use). ";
  } else if (au && cpu && cpu->pred.feasible) {
    const double r = au->pred.decode_token_s / cpu->pred.decode_token_s;
    if (r > 1.0) {
      v << "CPU-only" << under(*cpu) << " decodes " << ratio(r) << " faster than device_map='auto'" << under(*au)
        << " here: " << pct(au->pred.offloaded_fraction) << " of the weights cross PCIe every token. ";
    } else if (au->pred.offloaded_fraction > 0) {
      v << "device_map='auto'" << under(*au) << " decodes " << ratio(1.0 / r) << " faster than CPU-only" << under(*cpu)
        << " with " << pct(au->pred.offloaded_fraction) << " of the weights offloaded. ";
    } else {
      v << "device_map='auto'" << under(*au) << " keeps the whole model on the GPU and decodes " << ratio(1.0 / r)
        << " faster than CPU-only" << under(*cpu) << ". ";
    }
  }
  // accelerate's disk-offloaded layers under PyTorch on glibc (Rates::TorchOffload): copied into
  // fresh memory on every forward; glibc told to keep what it frees, they land on warm pages.
  if (au && au->error.empty() && au->pred.feasible && au->runtime == runtime_name(Runtime::kTransformers)) {
    bool disk = false;
    for (const auto& [n, d] : au->map.items()) disk = disk || d.kind == Device::Kind::kDisk;
    for (const auto& m : c.runtimes) {
      if (!disk || m->runtime != Runtime::kTransformers || !m->rates.torch_offload) continue;
      Rates warm = m->rates;
      warm.torch_offload->fresh_page.value = warm.torch_offload->mapped_page.value = 0;
      const CostModel wcm(*c.graph, warm, c.s.workload);
      const Prediction w = simulate(wcm, hw, au->map, au->per_entry);
      if (!w.feasible || !(w.decode_token_s < 0.95 * au->pred.decode_token_s)) continue;
      std::ostringstream us;
      us << std::setprecision(2) << m->rates.torch_offload->fresh_page.value * 1e6;
      v << "Its disk-offloaded layers are copied into fresh memory on every forward (glibc maps each tensor of "
           "32 MiB or more afresh and trims its heap between layers; a fresh page costs "
        << us.str() << " us here): with " << glibc_keep_freed_text()
        << " in its environment glibc keeps what it frees and they land on warm pages: about "
        << format_seconds(w.decode_token_s) << "/token instead of " << format_seconds(au->pred.decode_token_s) << ". ";
    }
  }
  if (!hw.gpus.empty()) {
    v << "Break-even offloaded fraction: " << pct(ev.break_even_fraction) << " (host-to-device "
      << gbs(c.rates.h2d_pageable.value) << " / CPU memory " << gbs(c.rates.host.memory_bandwidth.value) << ")";
    if (au && au->error.empty()) v << "; auto offloads " << pct(au->pred.offloaded_fraction);
    v << ". ";
  }
  if (ev.recommended >= 0) {
    const ResultRow& best = ev.rows[ev.recommended];
    v << "Fastest: ";
    if (best.strategy != "optimal" && best.semantics == "in-place") {
      v << best.strategy << "'s map computed in place (llama.cpp-style: CPU-mapped layers run on the CPU)";
    } else if (best.strategy != "optimal" && best.semantics == "prefetch") {
      v << best.strategy << "'s map with prefetched offload (dmap's executor)";
    } else {
      v << best.strategy << " (" << best.semantics << ")";
    }
    v << under(best) << ", " << format_seconds(best.pred.decode_token_s) << "/token, "
      << format_seconds(best.pred.total_s) << " end to end";
    if (au && au->error.empty() && au->pred.feasible && &best != au) {
      const double r = au->pred.total_s / best.pred.total_s;
      if (r < 1.005) {
        v << ", as fast as device_map='auto'" << under(*au);
      } else {
        v << ", " << ratio(r) << " faster than device_map='auto'" << under(*au);
      }
    }
    v << ".";
    if (ev.optimal && ev.optimal->found && !ev.optimal->exact) {
      const OptimalResult& o = *ev.optimal;
      v << " The optimal search " << (o.stats.out_of_work ? "stopped at its work limit" : "thinned a front")
        << ": no placement of its search space is more than "
        << pct(o.lower_bound_s > 0 ? o.objective_s / o.lower_bound_s - 1 : 1.0) << " faster than its result.";
    }
    // How to run it.
    if (best.strategy == "optimal" && ev.optimal && ev.optimal->found) {
      const OptimalResult& o = *ev.optimal;
      if (o.transformers_expressible) {
        ev.how_to_run = "from_pretrained(..., device_map=" + device_map_to_json(best.map) + ")";
      } else if (o.label.find("prefetch") != std::string::npos) {
        ev.how_to_run =
            "needs prefetching offload (dmap run --semantics prefetch) with device map " + device_map_to_json(best.map);
      } else {
        ev.how_to_run = llama_cpp_flags(*ev.tree, *ev.graph, best.map);
      }
      // Routed experts kept on the CPU beside their layers: transformers takes the same map but
      // runs no operator on the CPU — its hooks copy each such experts module, all its experts, to
      // the GPU on every forward. Say what that would cost.
      if (std::any_of(o.placement.choice.begin(), o.placement.choice.end(), is_split)) {
        const std::vector<Semantics> streamed(best.map.items().size(), Semantics::kAccelerate);
        const Prediction t = simulate(*c.cm, hw, best.map, streamed);
        v << " It keeps the routed experts of some layers on the CPU beside layers on the GPU (llama.cpp's split);"
          << " transformers with the same device_map copies those experts modules whole to the GPU on every forward";
        if (t.feasible) {
          v << " (" << format_bytes_human(t.transfer_bytes_per_token)
            << " per token): " << format_seconds(t.decode_token_s) << "/token.";
        } else {
          v << ", and does not fit: " << t.oom << ".";
        }
      }
    } else if (best.semantics == "in-place") {
      ev.how_to_run = llama_cpp_flags(*ev.tree, *ev.graph, best.map);
    } else if (best.semantics == "prefetch") {
      ev.how_to_run =
          "needs prefetching offload (dmap run --semantics prefetch) with device map " + device_map_to_json(best.map);
    } else if (best.semantics == "cpu" && best.runtime == "llama.cpp") {
      ev.how_to_run = "llama.cpp on the CPU alone: -ngl 0";
    } else if (best.semantics == "cpu" && best.runtime == "dmap") {
      ev.how_to_run = "dmap run MODEL --strategy cpu (dmap's executor)";
    } else if (best.semantics == "cpu") {
      ev.how_to_run = "from_pretrained(..., device_map=\"cpu\")";
    } else {
      ev.how_to_run = "from_pretrained(..., device_map=" + device_map_to_json(best.map) + ")";
    }
    if (!ev.tree->gguf_file_type.empty()) {  // a GGUF file: the llama.cpp command line
      const std::string name = ev.tree->model_name.empty() ? ev.tree->model_type : ev.tree->model_name;
      std::string flags = best.semantics == "cpu" ? "-ngl 0" : llama_cpp_flags(*ev.tree, *ev.graph, best.map);
      const std::string prefix = "llama.cpp-style split: ";
      if (flags.rfind(prefix, 0) == 0) flags = flags.substr(prefix.size());
      ev.how_to_run =
          "llama-cli -m " +
          (ev.tree->gguf_path.empty() ? name + "-" + ev.tree->gguf_file_type + ".gguf" : ev.tree->gguf_path) + " " +
          flags;
    }
    // llama.cpp predicted with its weights read into memory (the calibration measured the mapped
    // file slower here): the command line says so (not where layers stay on disk: llama.cpp reads
    // those only through the map).
    if (best.runtime == "llama.cpp") {
      const RuntimeProfile lp = profile_for(s.calibration ? &*s.calibration : nullptr, Runtime::kLlamaCpp);
      bool disk = false;
      for (const auto& [n, d] : best.map.items()) disk = disk || d.kind == Device::Kind::kDisk;
      if (lp.no_mmap_in(ev.graph->dtype) && !disk) {
        // The factor measured in the scenario's dtype, else the largest measured.
        double f = 0;
        for (const auto& [d, x] : lp.mapped_factor) f = std::max(f, x);
        if (const auto it = lp.mapped_factor.find(ev.graph->dtype); it != lp.mapped_factor.end()) f = it->second;
        std::ostringstream o;
        o << std::setprecision(2) << " --no-mmap (this machine's calibration measured the mapped file decoding " << f
          << "x slower)";
        ev.how_to_run += o.str();
      }
    }
    // dmap's routed prefetch (a proposal): its fastest row, beside that map's plain prefetch.
    const ResultRow* routed = nullptr;
    for (int i : ev.ranking) {
      const ResultRow& r = ev.rows[i];
      if (r.pred.feasible && r.semantics == semantics_name(Semantics::kRoutedPrefetch)) {
        routed = &r;
        break;
      }
    }
    if (routed) {
      const ResultRow* plain = nullptr;
      for (const ResultRow& r : ev.rows) {
        if (r.strategy == routed->strategy && r.semantics == semantics_name(Semantics::kPrefetch) &&
            r.runtime == routed->runtime)
          plain = &r;
      }
      v << " dmap's proposal, routed prefetch (no runtime does it yet: each offloaded experts module copies only the "
           "experts its router picked, once the router has run), would run "
        << routed->strategy << "'s map at " << format_seconds(routed->pred.decode_token_s) << "/token, moving "
        << format_bytes_human(routed->pred.transfer_bytes_per_token) << " per token";
      if (plain && plain->pred.feasible) {
        v << " where prefetching whole modules moves " << format_bytes_human(plain->pred.transfer_bytes_per_token)
          << " (" << format_seconds(plain->pred.decode_token_s) << "/token)";
      }
      v << (routed->pred.total_s < best.pred.total_s ? ", faster than the fastest runnable placement." : ".");
    }
  } else {
    // Say what is short and by how much: the rows that need the least memory (everything on
    // disk, everything in RAM) name the device and the bytes.
    v << "No placement fits this hardware";
    if (s.hardware.host_capped() || !s.hardware.gpu_cap.empty()) v << " within the scenario's max_memory";
    v << ".";
    for (const auto& r : ev.rows) {
      if ((r.strategy == "disk" || r.strategy == "cpu") && !r.pred.oom.empty())
        v << " " << r.strategy << ": " << r.pred.oom << ".";
    }
    if (ev.optimal && !ev.optimal->why_not.empty()) v << " The optimal search: " << ev.optimal->why_not << ".";
  }
  ev.verdict = v.str();
  return ev;
}

std::string semantics_label(const ResultRow& r) {
  return r.runtime.empty() ? r.semantics : r.semantics + " under " + r.runtime;
}

BudgetPoint evaluate_budget(const SimScenario& s, Bytes budget) {
  SimScenario t = s;
  for (auto& g : t.hardware.gpus) g.memory = budget;  // a GPU with this much memory
  t.hardware.gpu_memory_in_use.clear();
  t.hardware.gpu_cap.clear();
  t.base.max_memory.reset();  // derived from the capped hardware, as transformers would
  t.strategies = {"auto", "cpu", "optimal"};
  t.semantics = {Semantics::kAccelerate, Semantics::kInPlace};
  t.runtimes.clear();  // the chart prices dmap's executor under each semantics
  BudgetPoint p;
  p.budget = budget;
  const Evaluation ev = evaluate(t);
  for (const auto& r : ev.rows) {
    if (!r.pred.feasible) continue;
    if (r.strategy == "auto" && (r.semantics == "accelerate")) {
      p.auto_s = r.pred.decode_token_s;
      p.auto_offloaded = r.pred.offloaded_fraction;
    }
    if (r.strategy == "auto" && r.semantics == "in-place") p.in_place_s = r.pred.decode_token_s;
    if (r.strategy == "cpu") p.cpu_s = r.pred.decode_token_s;
    if (r.strategy == "optimal") p.optimal_s = r.pred.decode_token_s;
  }
  if (p.in_place_s < 0 && p.auto_s >= 0 && p.auto_offloaded == 0) p.in_place_s = p.auto_s;  // nothing offloaded
  return p;
}

}  // namespace dmap::sim
