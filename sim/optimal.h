// The optimal search: the placement that minimises the simulator's predicted time of the
// workload (prefill + every decode step, simulate()'s total_s) over a stated search space,
// under every memory limit the simulator checks.
//
// Search space. The chain of placement units (embedding, decoder layers, final norm, head; a
// unit without operators and bytes, such as rotary buffers, goes anywhere for free; one with
// weights and no operators — a multimodal checkpoint's vision tower, no image given — costs
// nothing anywhere and goes to disk when disk may be used (its weights, never read, take no
// memory there), else to RAM or the GPU in use). Each unit is either
//   * resident on a GPU (GPUs are used in order: the GPU of resident units never decreases
//     along the chain, except that a tied head may sit on the GPU holding its tie source, as
//     accelerate places it),
//   * streamed to GPU 0 on every forward (accelerate or prefetch semantics, one of the two per
//     placement) from RAM or disk, while GPU 0 is the GPU in use; a streaming placement keeps
//     unit 0 (the embedding) resident on GPU 0, the map's first device,
//   * or computed in place on the CPU with its weights in RAM or on disk;
//   * a mixture-of-experts decoder layer may also split (expert-aware placements): resident on
//     a GPU, its routed experts module computed in place on the CPU, their weights in RAM or on
//     disk — llama.cpp's --n-cpu-moe / -ot "exps=CPU" — in the map as the layer's children, the
//     MoE block's children listed one by one. Not with streamed units in one placement.
// Not in it (the recommender compares such rows separately): maps that split a unit, GPUs
// used out of order, and streaming to GPU 0 after a later GPU has been used (accelerate's
// multi-GPU map with a CPU tail).
//
// Exactness. A label carries, besides the time so far, the exact bytes the simulator counts:
// on the GPU in use its prefill and decode peaks (context, workspace, weights, KV cache at the
// prompt and at the final context, sliding windows capped, logits) and its transient (the
// largest streamed leaf, or twice a prefetched entry); on the host the same peaks (weights in
// RAM, then KV and workspace once a CPU op runs) when RAM can bind; the weights off the GPUs
// when the page cache must hold them. Each unit is priced as simulate() prices it: operators
// on their device, activation hand-overs, every streamed tensor (tied weights from where their
// source is stored), prefetch overlap with the previous entry's compute. Disk reads in decode
// hit the page cache or not depending on the whole placement: one run assumes cold reads, one
// requires the page cache to hold the offloaded weights and prices them warm; the better
// re-simulated result is exact. Every result is re-simulated; its objective is simulate()'s.
//
// Bounded work. Labels are kept per state (unit, GPU in use, device of the last operator, where
// the pending tie source is stored, whether the tied head returns to it) on their Pareto front.
// A front is capped at `max_labels` labels: when it would be larger, the labels kept are the
// fastest per 1/max_labels band of the scarcest resource, and the result says it is not exact
// (`exact = false`). Work: at most units x states x max_labels labels per pass, each expanded
// into at most 2 + 3 x GPUs + 5 choices; states <= (GPUs + 1)^2 x (GPUs + 3) x 2; passes <= 3 modes
// x 2 page-cache assumptions x (3 quick + at most 13 deepening steps + 1 when out of work).
// Budgets, in `stats.work()` (labels + dominance tests / 64, 0.1-0.2 us each here): the
// deepening passes together stop after `max_work` (default 150 000: at most ~25 ms here), or
// once all passes so far have done 1.5 x max_work; the wider quick passes (fronts of 8, and of
// 32 where the incumbent is over 2 % from the run's bound) share max_work / 2, and the
// out-of-work passes, once something is found, max_work / 5; the greedy quick passes (fronts of
// 2) are bounded by their fronts (units x states x 2). Split layers' placements make the fronts of
// mixture-of-experts models far larger: a third of the generated ones end out of work. Out of
// work, the result is the best placement found (never slower than a seed), exact only when
// nothing unexplored can beat it by more than the gap, else with `lower_bound_s` a proven bound
// on the optimum. Bound tables: units x (1 + 3 x (R x (K0 + 1) + (GPUs - 1) x (K + 1))) values
// x price columns (K = 64 buckets per GPU — where layers split, up to twice as many as the
// GPU holds of what stays of a split layer, at most 8192 / GPUs —, K0 up to 256 on GPU 0 where streamed layers' KV
// caches need them, R <= 4 transient reservations); from 2 GPUs on one per page-cache
// assumption, shared by the modes, and a run's own where the shared one leaves over 2 % to the
// incumbent, until one is no tighter (a warm run's own table also serves the cold run of its
// mode: page-cache reads are never slower than disk, so its columns without the page-cache
// price bound the cold run); on one GPU a coarse (8 to 32 buckets) and a fine one per run. The counters are in `stats`
// (`bound_values`: the tables' values).
//
// Pruning (exact within options.gap, 1e-4). A label is dropped when its time plus a lower bound
// on the rest exceeds a threshold, or, once a placement is known, cannot beat it by more than
// the gap. The bound is a relaxation solved exactly by a DP over units (optimal.cpp,
// RoomBound): each GPU's room in buckets sized so that a decoder layer is a whole number of
// them (bytes and room rounded down: every completion that fits still fits), the prefetch
// transient reserved, hand-overs, prefetch overlap and tied copies priced per previous device
// and tie storage (RAM, disk, the GPU in use, an earlier GPU); host memory and the page cache by
// Lagrangian prices (per byte, per decoder layer; the page cache's in one column of its own). Order: on one GPU each
// run (mode x page-cache assumption) gets a coarse bound (8 to 32 buckets per GPU, enough for a decoder layer to be a
// bucket) and, unless that cannot beat the best so far, a fine one (64); from 2 GPUs on the runs of one page-cache
// assumption share one fine bound, of the union of the modes (a bound for each; on several GPUs the modes' own bounds
// agree, and a table costs the same for one mode as for all). Quick passes (fronts of 2, then of 8, pruned against the
// best so far) give an incumbent; then deepening, best first across runs (the run with the least bound so far takes its
// next step): the threshold starts just above the run's bound and doubles its slack — or rises at once to the least
// bound of a label the last pass dropped, which then bounds the run — until a placement is found under it (that
// placement is the run's optimum: nothing under the threshold was dropped) or it reaches the incumbent. Out of work,
// the proven bound is the least of the runs' bounds so far. Tables of 2 MiB or more ask for transparent huge pages, in
// 64 MiB regions reused by the next table (a table no run needs is released at once: a fresh process pays for every new
// page it touches). A run whose bound cannot beat the
// incumbent by more than the gap, or whose warm page cache cannot hold what the GPUs cannot, is
// skipped. Tables are floats, the DP run in floats and every row rounded down (a bound stays a
// bound). DMAP_SEARCH_TRACE=1 prints every phase on stderr.
// `OptimalOptions::prune = false` keeps every Pareto label (tests compare the two).
//
// Example:
//   OptimalResult r = optimal_search(cm, hw);
//   if (r.found) simulate(cm, hw, r.map, r.per_entry);   // == r.objective_s, feasible
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/device_map.h"
#include "sim/cost_model.h"
#include "sim/hardware.h"
#include "sim/simulate.h"

namespace dmap::sim {

// How one chain unit is placed.
enum class UnitChoice {
  kResident,
  kStreamAccelerate,
  kStreamAccelerateDisk,
  kStreamPrefetch,
  kStreamPrefetchDisk,
  kInPlaceCpu,
  kInPlaceDisk,
  kSplitExpertsCpu,  // resident on the unit's GPU, its routed experts in place on the CPU from RAM
  kSplitExpertsDisk  // the same, the experts' weights on disk
};
bool is_stream(UnitChoice c);
bool is_prefetch(UnitChoice c);
bool is_in_place(UnitChoice c);
bool from_disk(UnitChoice c);  // (a split unit: its experts)
bool is_split(UnitChoice c);
// Whether a unit has a GPU (resident, or split with its experts on the CPU).
bool on_gpu(UnitChoice c);
// The routed experts module of chain unit u when the layer can split (a sparse decoder layer,
// its MoE block a direct child holding no weights of its own), else -1.
int split_experts(const ModelGraph& g, int u);

struct Placement {
  std::vector<UnitChoice> choice;  // per chain unit
  std::vector<int> gpu;            // per chain unit: the GPU of a resident or split unit, -1 otherwise
};

struct OptimalOptions {
  bool allow_accelerate = true;
  bool allow_prefetch = true;
  bool allow_in_place = true;
  bool allow_disk = true;
  int max_labels = 2048;  // per state; beyond it the front is thinned and the result is not exact
  bool prune = true;      // drop labels by the lower bound (off: the same optimum, more work; for tests)
  // Labels the deepening passes may create in all (0: no limit). Beyond it the search stops and
  // returns the best placement found, not exact, with a proven lower bound on the optimum.
  int64_t max_work = 150000;
  // Relative optimality tolerance: a run or label that cannot beat the best placement found by
  // more than this is not searched further, and `exact` means optimal within it (1e-4, MIP
  // solvers' usual default: a hundredth of a percent, far inside the cost model's accuracy).
  double gap = 1e-4;
};

struct SearchStats {
  int64_t labels = 0;    // labels created
  int64_t compares = 0;  // dominance tests between labels of one state
  // Work, in labels: a dominance test costs about a sixtieth of a label (measured).
  int64_t work() const { return labels + compares / 64; }
  int64_t bound = 0;         // the stated bound on labels for this model and hardware
  int64_t bound_values = 0;  // values computed in lower-bound tables
  int64_t max_front = 0;     // the largest front kept for one state
  int runs = 0;
  bool thinned = false;
  bool out_of_work = false;  // max_work was reached
};

struct OptimalResult {
  bool found = false;
  bool exact = true;         // proven optimal within options.gap (no front thinned, work left)
  std::string why_not;       // when not found
  double objective_s = 0;    // simulate(map, per_entry).total_s
  double lower_bound_s = 0;  // no placement of the search space is faster (objective_s x (1 - gap) when exact
                             // and no front was thinned)
  Placement placement;
  DeviceMap map;
  std::vector<Semantics> per_entry;       // aligned with map.items()
  std::string label;                      // "gpu", "accelerate", "prefetch", "in-place", "prefetch+in-place", ...
  bool transformers_expressible = false;  // transformers + accelerate can run it (no in-place, no prefetch)
  int gpu_layers = 0;                     // decoder layers resident on GPUs (llama.cpp -ngl)
  int cpu_layers = 0;
  SearchStats stats;
};

// `seeds`: placements known beforehand (the strategy rows the search space contains); the result
// is never slower than any of them that fits, even when the search runs out of work.
OptimalResult optimal_search(const CostModel& cm, const Hardware& hw, const OptimalOptions& options = {},
                             const std::vector<Placement>& seeds = {});

// The device map (one entry per chain unit) and per-entry semantics a placement runs as.
void placement_map(const ModelGraph& g, const Placement& p, DeviceMap& map, std::vector<Semantics>& per_entry);
// "" when the placement obeys the search space's rules, else the rule it breaks.
std::string placement_rule_broken(const ModelGraph& g, const Hardware& hw, const Placement& p,
                                  const OptimalOptions& options = {});
// The search's objective of one placement: simulate()'s total_s when it obeys the rules and
// fits, +inf otherwise (for brute force).
double placement_objective(const CostModel& cm, const Hardware& hw, const Placement& p,
                           const OptimalOptions& options = {});
// The placement of the search space that a device map run under `per_entry` is — the same
// devices, the same semantics, the same predicted time — or nullopt when the space lacks it.
std::optional<Placement> placement_of(const CostModel& cm, const Hardware& hw, const DeviceMap& map,
                                      const std::vector<Semantics>& per_entry, const OptimalOptions& options = {});

}  // namespace dmap::sim
