// The optimal search: equal to brute force over its search space on chains small enough to
// enumerate (scored by simulate() itself), and — over hundreds of generated scenarios (shipped
// models and hardware presets, 1-8 GPUs, caps, RAM that forces disk, tied and untied heads,
// batch, prompt and token counts) — feasible, deterministic, never slower than a strategy row
// its search space contains, within its stated work bound. A failing scenario prints the YAML
// that reproduces it.
#include <catch2/catch.hpp>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <sstream>

#include "core/device_map.h"
#include "core/error.h"
#include "sim/optimal.h"
#include "sim/recommend.h"
#include "sim/sim_scenario.h"
#include "sim/simulate.h"
#include "tests/sim/fixtures.h"
#include "tests/sim/generate.h"

using namespace dmap;
using namespace dmap::sim;
using namespace dmap::sim::testing;

namespace {

constexpr double kInfT = std::numeric_limits<double>::infinity();

// A 2-layer Llama (units: embed, 2 layers, norm, rotary, head), tied or not.
std::unique_ptr<ModuleTree> two_layer_tree(bool tied) {
  std::string text = kTinyLlama;
  text.replace(text.find("num_hidden_layers: 4"), 20, "num_hidden_layers: 2");
  if (tied) text.replace(text.find("tie_word_embeddings: false"), 26, "tie_word_embeddings: true ");
  return std::make_unique<ModuleTree>(
      build_module_tree(model_spec_from_node(load_yaml_string(text, "two.yaml"), "two.yaml")));
}

// The optimum found is optimal within the search's gap (OptimalOptions::gap): never below the
// true optimum, at most gap above it.
bool within_gap(double found, double optimum) {
  return found >= optimum * (1 - 1e-9) && found <= optimum * (1 + OptimalOptions{}.gap + 1e-9);
}

// The bytes of chain unit u's tensors.
double bytes_under(const ModelGraph& g, int u) {
  double b = 0;
  for (int id = 0; id < g.tree->size(); ++id) {
    const TreeNode& n = g.tree->node(id);
    if (g.chain_of_node[id] == u && n.is_tensor && !(n.is_buffer && !n.persistent))
      b += static_cast<double>(g.tensor_bytes[id]);
  }
  return b;
}

// A 2-layer Qwen3-MoE (units: embed, 2 sparse layers, norm, rotary, head): 16 experts of 128,
// 2 per token; a layer's experts (3.1 MB in float16) outweigh the rest of it (0.4 MB) 8 to 1.
std::unique_ptr<ModuleTree> two_layer_moe_tree() {
  const char* text = R"(model_type: qwen3_moe
vocab_size: 1000
hidden_size: 256
intermediate_size: 512
moe_intermediate_size: 128
num_hidden_layers: 2
num_attention_heads: 4
num_key_value_heads: 2
head_dim: 64
num_experts: 16
num_experts_per_tok: 2
decoder_sparse_step: 1
mlp_only_layers: []
norm_topk_prob: true
tie_word_embeddings: false
max_position_embeddings: 8192
)";
  return std::make_unique<ModuleTree>(
      build_module_tree(model_spec_from_node(load_yaml_string(text, "moe.yaml"), "moe.yaml")));
}

struct Brute {
  double best = kInfT;
  long valid = 0;
};

// Every placement of the given per-unit options that obeys the search space's rules, scored by
// simulate() (placement_objective).
Brute brute_force(const CostModel& cm, const Hardware& hw, const std::vector<std::pair<UnitChoice, int>>& options) {
  const int units = static_cast<int>(cm.graph().chain.size());
  const int k = static_cast<int>(options.size());
  Brute b;
  // (A unit without operators and bytes goes anywhere for free: its first option only.)
  std::vector<int> choices(units, k);
  for (int u = 0; u < units; ++u) {
    const ChainUnit& cu = cm.graph().chain[u];
    if (cu.first_op == cu.end_op && bytes_under(cm.graph(), u) == 0) choices[u] = 1;
  }
  std::vector<int> idx(units, 0);
  Placement p;
  p.choice.resize(units);
  p.gpu.resize(units);
  while (true) {
    for (int u = 0; u < units; ++u) {
      p.choice[u] = options[idx[u]].first;
      p.gpu[u] = options[idx[u]].second;
    }
    if (placement_rule_broken(cm.graph(), hw, p).empty()) {
      ++b.valid;
      b.best = std::min(b.best, placement_objective(cm, hw, p));
    }
    int u = 0;
    while (u < units && ++idx[u] == choices[u]) idx[u++] = 0;
    if (u == units) break;
  }
  return b;
}

void check_result(const CostModel& cm, const Hardware& hw, const OptimalResult& r) {
  REQUIRE(r.found);
  const Prediction pr = simulate(cm, hw, r.map, r.per_entry);
  INFO("optimum " << r.label << ": " << device_map_to_json(r.map) << " oom: " << pr.oom);
  CHECK(pr.feasible);
  CHECK(pr.total_s == Approx(r.objective_s).epsilon(1e-9));
  CHECK(placement_rule_broken(cm.graph(), hw, r.placement).empty());
  CHECK(r.stats.labels <= r.stats.bound);
}

Bytes two_layer_bytes(bool tied) {
  const auto t = two_layer_tree(tied);
  const ModelGraph g = build_graph(*t, DType::kFloat16);
  return g.weight_bytes_total();
}

}  // namespace

TEST_CASE("optimal search equals brute force on one GPU (every choice per unit)", "[unit][sim][optimal]") {
  const std::vector<std::pair<UnitChoice, int>> one_gpu = {
      {UnitChoice::kResident, 0},        {UnitChoice::kStreamAccelerate, -1},   {UnitChoice::kStreamAccelerateDisk, -1},
      {UnitChoice::kStreamPrefetch, -1}, {UnitChoice::kStreamPrefetchDisk, -1}, {UnitChoice::kInPlaceCpu, -1},
      {UnitChoice::kInPlaceDisk, -1}};
  const Workload w = workload(1, 32, 12);
  for (bool tied : {false, true}) {
    const auto tree = two_layer_tree(tied);
    const ModelGraph g = build_graph(*tree, DType::kFloat16);
    const double bytes = static_cast<double>(two_layer_bytes(tied));
    for (double fraction : {0.3, 0.6, 1.2}) {
      for (Bytes ram : {64 * kGiB, static_cast<Bytes>(bytes * 0.5)}) {
        const Bytes gpu = static_cast<Bytes>(1.0 * kMiB + w.prompt * 2816 * 2 + 1000 * 4 + fraction * bytes);
        const Hardware hw = round_machine(gpu, 1 * kMiB, ram);
        const Priced p(g, hw, w);
        INFO("tied " << tied << ", GPU ~" << fraction << " of the weights, RAM " << ram);
        const Brute b = brute_force(p.cm, hw, one_gpu);
        CHECK(b.valid > 1000);
        const OptimalResult r = optimal_search(p.cm, hw);
        if (!std::isfinite(b.best)) {
          CHECK_FALSE(r.found);
          continue;
        }
        check_result(p.cm, hw, r);
        CHECK(r.exact);
        CHECK(within_gap(r.objective_s, b.best));
      }
    }
  }
}

TEST_CASE("optimal search equals brute force on two GPUs (tied head returning to GPU 0)", "[unit][sim][optimal]") {
  const std::vector<std::pair<UnitChoice, int>> two_gpus = {{UnitChoice::kResident, 0},
                                                            {UnitChoice::kResident, 1},
                                                            {UnitChoice::kStreamAccelerate, -1},
                                                            {UnitChoice::kInPlaceCpu, -1},
                                                            {UnitChoice::kInPlaceDisk, -1}};
  const Workload w = workload(2, 24, 9);
  for (bool tied : {false, true}) {
    const auto tree = two_layer_tree(tied);
    const ModelGraph g = build_graph(*tree, DType::kFloat16);
    const double bytes = static_cast<double>(two_layer_bytes(tied));
    for (double fraction : {0.35, 0.7}) {
      const Bytes base = static_cast<Bytes>(1.0 * kMiB + w.batch * w.prompt * 2816 * 2 + 2 * 1000 * 4);
      Hardware hw =
          round_machine(base + static_cast<Bytes>(fraction * bytes), 1 * kMiB, static_cast<Bytes>(0.6 * bytes));
      hw.gpus.push_back(hw.gpus[0]);
      hw.gpus[1].memory = base + static_cast<Bytes>(0.8 * fraction * bytes);
      hw.link.p2p_bandwidth = 8e9;
      const Priced p(g, hw, w);
      INFO("tied " << tied << ", GPUs ~" << fraction << " of the weights");
      const Brute b = brute_force(p.cm, hw, two_gpus);
      OptimalOptions no_prefetch;
      no_prefetch.allow_prefetch = false;
      const OptimalResult r = optimal_search(p.cm, hw, no_prefetch);
      REQUIRE(std::isfinite(b.best));
      check_result(p.cm, hw, r);
      CHECK(within_gap(r.objective_s, b.best));
    }
  }
}

TEST_CASE("expert-aware placements: the search equals brute force with sparse layers split", "[unit][sim][optimal]") {
  // Each sparse layer may also be resident with its routed experts computed in place on the CPU
  // from RAM or disk (llama.cpp's --n-cpu-moe); on one GPU and on two, RAM ample or forcing disk.
  const auto tree = two_layer_moe_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  REQUIRE(split_experts(g, 1) >= 0);
  REQUIRE(split_experts(g, 0) < 0);
  const double bytes = static_cast<double>(g.weight_bytes_total());
  const Workload w = workload(1, 32, 12);
  const Bytes base = static_cast<Bytes>(1.0 * kMiB + w.prompt * 2816 * 2 + 1000 * 4);
  int split_won = 0;
  for (int gpus : {1, 2}) {
    std::vector<std::pair<UnitChoice, int>> options = {
        {UnitChoice::kResident, 0},          {UnitChoice::kSplitExpertsCpu, 0}, {UnitChoice::kSplitExpertsDisk, 0},
        {UnitChoice::kStreamAccelerate, -1}, {UnitChoice::kInPlaceCpu, -1},     {UnitChoice::kInPlaceDisk, -1}};
    if (gpus == 2) {
      options.push_back({UnitChoice::kResident, 1});
      options.push_back({UnitChoice::kSplitExpertsCpu, 1});
    }
    for (double fraction : {0.3, 0.5, 0.8}) {
      for (double ram : {4.0, 0.35}) {
        Hardware hw =
            round_machine(base + static_cast<Bytes>(fraction * bytes), 1 * kMiB, static_cast<Bytes>(ram * bytes));
        if (gpus == 2) {
          hw.gpus.push_back(hw.gpus[0]);
          hw.gpus[1].memory = base + static_cast<Bytes>(0.25 * bytes);
          hw.link.p2p_bandwidth = 8e9;
        }
        const Priced p(g, hw, w);
        INFO(gpus << " GPUs, GPU 0 ~" << fraction << " of the weights, RAM ~" << ram << " of them");
        const Brute b = brute_force(p.cm, hw, options);
        OptimalOptions no_prefetch;
        no_prefetch.allow_prefetch = false;
        const OptimalResult r = optimal_search(p.cm, hw, no_prefetch);
        if (!std::isfinite(b.best)) {
          CHECK_FALSE(r.found);
          continue;
        }
        check_result(p.cm, hw, r);
        CHECK(within_gap(r.objective_s, b.best));
        const bool split = std::any_of(r.placement.choice.begin(), r.placement.choice.end(), is_split);
        split_won += split ? 1 : 0;
        if (split) {  // the map lists the experts module itself, computed in place
          bool experts_off = false;
          const auto items = r.map.items();
          for (size_t i = 0; i < items.size(); ++i) {
            const auto& [name, d] = items[i];
            if (name.size() > 12 && name.substr(name.size() - 12) == ".mlp.experts" && !d.is_gpu())
              experts_off = r.per_entry[i] == Semantics::kInPlace;
          }
          CHECK(experts_off);
          // and that map is the placement again
          const auto back = placement_of(p.cm, hw, r.map, r.per_entry, no_prefetch);
          REQUIRE(back.has_value());
          CHECK(placement_objective(p.cm, hw, *back, no_prefetch) == Approx(r.objective_s).epsilon(1e-12));
        }
      }
    }
  }
  CHECK(split_won >= 3);  // the split is the optimum somewhere in this grid, or the test shows nothing
}

TEST_CASE("a tied head is priced where its weight is stored", "[unit][sim][optimal]") {
  // Embedding in RAM computed in place, head resident on the GPU: the simulator copies the tied
  // weight every forward; the search's objective is the simulator's, so it never recommends
  // such a split when keeping the pair together is cheaper.
  const auto tree = two_layer_tree(true);
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Workload w = workload(1, 32, 40);
  const Hardware hw = round_machine(64 * kMiB);
  const Priced p(g, hw, w);
  const int units = static_cast<int>(g.chain.size());
  Placement split{std::vector<UnitChoice>(units, UnitChoice::kResident), std::vector<int>(units, 0)};
  split.choice[0] = UnitChoice::kInPlaceCpu;
  split.gpu[0] = -1;
  DeviceMap dm;
  std::vector<Semantics> sem;
  placement_map(g, split, dm, sem);
  const Prediction pr = simulate(p.cm, hw, dm, sem);
  CHECK(pr.transfer_bytes_per_token >= 1000 * 256 * 2);  // the tied head crosses the link
  const OptimalResult r = optimal_search(p.cm, hw);
  check_result(p.cm, hw, r);
  CHECK(r.label == "gpu");
  CHECK(r.objective_s < pr.total_s);
}

TEST_CASE("a GPU with no room left (memory at or below its context) is priced, not overflowed",
          "[unit][sim][optimal]") {
  // dmap report's GPU-budget sweep asks for budgets down to nothing: every unit's bytes are
  // then far more buckets than the bound's table holds (once an int overflow and a crash).
  const auto tree = preset_tree("opt_6_7b");  // 400 MiB layers, a tied head
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Workload w = workload(1, 32, 16);
  for (Bytes memory : {Bytes{0}, 1 * kMiB, 1 * kMiB + 1, 2 * kMiB}) {
    for (Bytes ram : {64 * kGiB, 8 * kGiB}) {
      Hardware hw = round_machine(memory, 1 * kMiB, ram);
      hw.gpus.push_back(hw.gpus[0]);
      const Priced p(g, hw, w);
      INFO("GPU memory " << memory << ", RAM " << ram);
      const OptimalResult r = optimal_search(p.cm, hw);
      OptimalOptions all;
      all.prune = false;
      const OptimalResult full = optimal_search(p.cm, hw, all);
      REQUIRE(r.found == full.found);
      if (!r.found) continue;
      check_result(p.cm, hw, r);
      CHECK(r.gpu_layers == 0);
      CHECK(within_gap(r.objective_s, full.objective_s));
    }
  }
}

TEST_CASE("more GPU memory never makes the optimum slower", "[unit][sim][optimal]") {
  const auto tree = tiny_tree();
  const ModelGraph g = build_graph(*tree, DType::kFloat16);
  const Workload w = workload(1, 32, 64);
  for (bool tight_ram : {false, true}) {
    double prev = kInfT;
    for (int i = 0; i <= 10; ++i) {
      const double fraction = 0.12 * i;
      const Hardware hw =
          round_machine(static_cast<Bytes>(1.0 * kMiB + w.prompt * 2816 * 2 + 1000 * 4 + fraction * kTinyBytes16),
                        1 * kMiB, tight_ram ? 3 * kMiB : 64 * kGiB);
      const Priced p(g, hw, w);
      const OptimalResult r = optimal_search(p.cm, hw);
      INFO("fraction " << fraction << ", tight RAM " << tight_ram);
      check_result(p.cm, hw, r);
      CHECK(r.objective_s <= prev * (1 + 1e-12));
      prev = r.objective_s;
      if (fraction > 1.1) CHECK(r.label == "gpu");
    }
  }
}

TEST_CASE("the lower bound never drops the optimum: pruned and unpruned searches agree",
          "[unit][sim][optimal][property]") {
  // Random small chains (2-8 layers, tied or not) on 1-3 GPUs of random sizes, RAM that may
  // force disk, with and without the page cache: the search with its lower-bound pruning and
  // deepening finds the same optimum as the search that keeps every Pareto label.
  std::mt19937_64 rng(20261203);
  auto uniform = [&](double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); };
  int compared = 0, pruned_less = 0, cut_short = 0;
  for (int i = 0; i < 300; ++i) {
    const int layers = 2 + static_cast<int>(rng() % 7);
    const bool tied = rng() % 2 == 0;
    std::string text = kTinyLlama;
    text.replace(text.find("num_hidden_layers: 4"), 20, "num_hidden_layers: " + std::to_string(layers));
    if (tied) text.replace(text.find("tie_word_embeddings: false"), 26, "tie_word_embeddings: true ");
    const ModuleTree tree = build_module_tree(model_spec_from_node(load_yaml_string(text, "t.yaml"), "t.yaml"));
    const ModelGraph g = build_graph(tree, DType::kFloat16);
    const double bytes = static_cast<double>(g.weight_bytes_total());
    const Workload w = workload(1 + static_cast<int64_t>(rng() % 3), 4 + static_cast<int64_t>(rng() % 60),
                                1 + static_cast<int64_t>(rng() % 40));
    const Bytes base = static_cast<Bytes>(1.0 * kMiB + w.batch * w.prompt * 2816 * 2 + 2 * 1000 * 4 * w.batch);
    Hardware hw = round_machine(base + static_cast<Bytes>(uniform(0.05, 0.8) * bytes), 1 * kMiB,
                                static_cast<Bytes>(uniform(0.3, 1.6) * bytes) + 2 * kMiB);
    const int gpus = 1 + static_cast<int>(rng() % 3);
    for (int k = 1; k < gpus; ++k) {
      hw.gpus.push_back(hw.gpus[0]);
      hw.gpus[k].memory = base + static_cast<Bytes>(uniform(0.05, 0.6) * bytes);
    }
    hw.link.p2p_bandwidth = 8e9;
    hw.page_cache = rng() % 3 != 0;
    const Priced p(g, hw, w);
    OptimalOptions all;
    all.prune = false;
    all.max_labels = 1 << 20;
    INFO("case " << i << ": " << layers << " layers, tied " << tied << ", " << gpus << " GPUs, RAM " << hw.host.ram);
    const OptimalResult full = optimal_search(p.cm, hw, all);
    const OptimalResult pruned = optimal_search(p.cm, hw);
    REQUIRE(full.exact);
    CHECK(full.found == pruned.found);
    if (!full.found || !pruned.found) continue;
    ++compared;
    CHECK(pruned.exact);
    CHECK(within_gap(pruned.objective_s, full.objective_s));
    if (pruned.stats.labels < full.stats.labels) ++pruned_less;
    // Out of work: still a feasible placement, and a lower bound that is one.
    OptimalOptions little;
    little.max_work = 1 + static_cast<int64_t>(rng() % 200);
    const OptimalResult cut = optimal_search(p.cm, hw, little);
    REQUIRE(cut.found);
    check_result(p.cm, hw, cut);
    CHECK(cut.objective_s >= full.objective_s * (1 - 1e-9));
    CHECK(cut.lower_bound_s <= full.objective_s * (1 + 1e-9));
    CHECK(cut.lower_bound_s <= cut.objective_s);
    if (cut.exact) CHECK(within_gap(cut.objective_s, full.objective_s));
    cut_short += cut.stats.out_of_work;
  }
  WARN("compared " << compared << " optima; the pruned search made fewer labels in " << pruned_less
                   << "; a search out of work in " << cut_short);
  CHECK(compared > 150);
  CHECK(cut_short > 20);
}

// ---------------------------------------------------------------------------------------------
// Generated scenarios
// ---------------------------------------------------------------------------------------------

namespace {

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5))];
}

}  // namespace

TEST_CASE("generated scenarios: the optimum is feasible, deterministic and never slower than a row it contains",
          "[unit][sim][optimal][property]") {
  const std::vector<std::string> models = presets(kConfigs + "/models", "");
  const std::vector<std::string> gpus = presets(kHardwareDir, "gpu");
  const std::vector<std::string> hosts = presets(kHardwareDir, "host");
  REQUIRE(models.size() >= 10);
  TempDir dir;
  std::mt19937_64 rng(20261203);
  int scenarios = 0, found = 0, exact = 0, contained_rows = 0, disk_used = 0, tied_return = 0;
  int split_found = 0, split_exact = 0;  // mixture-of-experts models on GPUs (expert-aware placements)
  double slowest_ms = 0;
  std::vector<double> search_times;
  int unpruned_compared = 0;
  for (int i = 0; i < 520; ++i) {
    const std::string yaml = generate(rng, kConfigs, models, gpus, hosts, i);
    INFO("scenario (seed " << i << "):\n" << yaml);
    // DMAP_SHOW=<id> prints one generated scenario (ids as in sim_bench's DMAP_BENCH_SLOW list).
    if (getenv("DMAP_SHOW") && yaml.find("id: " + std::string(getenv("DMAP_SHOW")) + "\n") != std::string::npos) {
      printf("%s", yaml.c_str());
    }
    // DMAP_ONLY=<id>: that generated scenario alone (its checks, with DMAP_UNPRUNED too).
    if (getenv("DMAP_ONLY") && yaml.find("id: " + std::string(getenv("DMAP_ONLY")) + "\n") == std::string::npos) {
      continue;
    }
    SimScenario s;
    try {
      s = load_sim_scenario(dir.write("s.yaml", yaml), kConfigs);
    } catch (const InputError& e) {
      FAIL("generated scenario rejected: " << e.message());
    }
    ++scenarios;
    const auto t0 = std::chrono::steady_clock::now();
    const Evaluation ev = evaluate(s);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    slowest_ms = std::max(slowest_ms, ms);
    REQUIRE(ev.optimal);
    const OptimalResult& r = *ev.optimal;
    const CostModel cm(*ev.graph, ev.rates, s.workload);
    // Whatever the search space holds and the simulator says fits must be found.
    bool some_row_contained_fits = false;
    for (const ResultRow& row : ev.rows) {
      if (row.strategy == "optimal" || !row.error.empty()) continue;
      const auto p = placement_of(cm, s.hardware, row.map, row.per_entry);
      if (!p) continue;
      ++contained_rows;
      if (!row.pred.feasible) continue;
      some_row_contained_fits = true;
      INFO("row " << row.strategy << " (" << row.semantics << "): " << device_map_to_json(row.map));
      REQUIRE(r.found);
      CHECK(r.objective_s <= row.pred.total_s * (1 + 1e-9));
      CHECK(placement_objective(cm, s.hardware, *p) == Approx(row.pred.total_s).epsilon(1e-9));
    }
    if (!r.found) {
      CHECK_FALSE(some_row_contained_fits);
      CHECK_FALSE(r.why_not.empty());
      continue;
    }
    ++found;
    check_result(cm, s.hardware, r);
    exact += r.exact;
    bool splits = !s.hardware.gpus.empty();  // sparse layers may split: a larger space
    for (size_t u = 0; u < ev.graph->chain.size() && splits; ++u)
      splits = split_experts(*ev.graph, static_cast<int>(u)) < 0;
    splits = !splits && !s.hardware.gpus.empty();
    if (splits) {
      ++split_found;
      split_exact += r.exact;
    }
    for (UnitChoice c : r.placement.choice) {
      if (from_disk(c)) {
        ++disk_used;
        break;
      }
    }
    for (size_t u = 1; u < r.placement.gpu.size(); ++u) {
      if (r.placement.gpu[u] >= 0 &&
          r.placement.gpu[u] < *std::max_element(r.placement.gpu.begin(), r.placement.gpu.begin() + u)) {
        ++tied_return;
        break;
      }
    }
    if (getenv("DMAP_UNPRUNED")) {  // slow: the unpruned search on every generated scenario
      OptimalOptions all;
      all.prune = false;
      const OptimalResult full = optimal_search(cm, s.hardware, all);
      if (full.exact) {
        ++unpruned_compared;
        INFO("pruned " << r.objective_s << " (exact " << r.exact << ", bound " << r.lower_bound_s << "), unpruned "
                       << full.objective_s);
        if (r.exact) CHECK(within_gap(r.objective_s, full.objective_s));
        // Out of work: never better than the optimum, and its proven bound is one.
        CHECK(r.objective_s >= full.objective_s * (1 - 1e-9));
        CHECK(r.lower_bound_s <= full.objective_s * (1 + 1e-9));
      }
    }
    // Deterministic (and the search alone timed: informational, benchmarks check speed).
    const auto s0 = std::chrono::steady_clock::now();
    const OptimalResult again = optimal_search(cm, s.hardware, {}, contained_placements(ev.rows, cm, s.hardware));
    const double search_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count();
    search_times.push_back(search_ms);
    // DMAP_INEXACT=1 lists the scenarios whose result is not proven optimal, with the gap.
    if (getenv("DMAP_INEXACT") && !again.exact) {
      printf("INEXACT gap %.2f %%, %.1f ms, %zu GPUs, %zu units\n%s\n",
             100 * (again.objective_s / again.lower_bound_s - 1), search_ms, s.hardware.gpus.size(),
             ev.graph->chain.size(), yaml.c_str());
    }
    // DMAP_OBJECTIVES=1 prints every scenario's optimum (to compare two builds).
    if (getenv("DMAP_OBJECTIVES"))
      printf("OBJECTIVE %d %.9g %d %.3f\n", i, again.objective_s, again.exact ? 1 : 0, search_ms);
    // DMAP_SLOW=<ms> lists the scenarios whose search took longer.
    if (getenv("DMAP_SLOW") && search_ms > atof(getenv("DMAP_SLOW"))) {
      printf("SLOW search %.1f ms, labels %lld, front %lld, passes %d, %zu GPUs, %zu units\n%s\n", search_ms,
             static_cast<long long>(again.stats.labels), static_cast<long long>(again.stats.max_front),
             again.stats.runs, s.hardware.gpus.size(), ev.graph->chain.size(), yaml.c_str());
    }
    CHECK(again.objective_s == r.objective_s);
    CHECK(device_map_to_json(again.map) == device_map_to_json(r.map));
  }
  WARN("generated " << scenarios << " scenarios: optimum found in " << found << " (" << exact << " exact), "
                    << contained_rows << " strategy rows in the search space, disk used in " << disk_used
                    << ", a tied head back on its source's GPU in " << tied_return << "; slowest evaluate() "
                    << slowest_ms << " ms; search alone: median " << percentile(search_times, 0.5) << " ms, p99 "
                    << percentile(search_times, 0.99) << " ms, slowest " << percentile(search_times, 1.0)
                    << " ms; compared with the unpruned search: " << unpruned_compared
                    << "; with sparse layers that split: " << split_exact << " exact of " << split_found);
  CHECK(scenarios >= 500);
  CHECK(found > scenarios / 2);
  CHECK(disk_used > 0);
  // Fronts beyond max_labels are thinned, or the work budget is spent (then the result is flagged,
  // still feasible, no slower than the rows above, with a proven lower bound); it stays rare:
  // at most 1 in 20 (20 of 520 on this seed since the 2025-2026 models joined the presets:
  // Qwen3-32B and Llama-2-70B on 3-8 GPUs and OPT-30B with RAM binding) — for dense models. With
  // layers that split (MoE on GPUs: 3 x GPUs + 7 choices a unit) the work budget leaves more of
  // them unproven (33 of 121 on this seed, most of them Qwen3-235B with RAM binding): at most half.
  CHECK(exact - split_exact >= (found - split_found) - (found - split_found) / 20);
  CHECK(split_exact >= split_found / 2);
}
