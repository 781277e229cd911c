// Simulator: predicts one placement (a device map + the execution semantics of its offloaded
// entries) — prefill time, time per output token, end-to-end time, bytes moved, the
// bottleneck, and memory per device with the phase and context at which it runs out.
//
// Execution semantics (DESIGN.md):
//   accelerate  cpu/disk entries compute on the map's first GPU; before each leaf module's
//               forward every weight tensor is copied from pageable memory, one blocking copy
//               per tensor plus the hook's per-tensor cost; nothing overlaps
//   prefetch    the same, from pinned memory, on a copy stream: an entry's copy overlaps the
//               compute of the entry before it (double buffering)
//   in-place    cpu/disk entries compute on the CPU; only activations cross the link
//   cpu         every entry computes on the CPU
//   routed-prefetch  dmap's proposal (no runtime does it): prefetch, except that an offloaded
//               routed-experts module copies only the experts its router picked (uniform
//               routing's count for the phase's tokens), one copy per expert and tensor, once
//               the router has run — in the op's own time, not overlapped; its buffers are
//               sized for the whole module (a prefill touches nearly all of them)
// Disk entries are read from disk (prefill: cold; decode: from the page cache when it holds
// them) and then treated like cpu entries. GPUs run one at a time (naive pipeline).
//
// Example:
//   CostModel cm(graph, rates, workload);
//   Prediction p = simulate(cm, hardware, plan.device_map, Semantics::kAccelerate);
//   if (!p.feasible) std::cout << p.oom << "\n";
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/device_map.h"
#include "core/semantics.h"
#include "sim/cost_model.h"
#include "sim/hardware.h"

namespace dmap::sim {

// The execution semantics (core/semantics.h).
using dmap::parse_semantics;
using dmap::Semantics;
using dmap::semantics_name;

struct Prediction {
  bool feasible = true;
  std::string oom;                                 // why it does not fit or run ("" when feasible)
  bool cannot_run = false;                         // infeasible for its runtime, not for memory
  std::vector<std::pair<Device, Bytes>> memory;    // peak bytes per device used by the placement
  std::vector<std::pair<Device, Bytes>> capacity;  // what each device offers it
  double prefill_s = 0;
  double decode_token_s = 0;            // mean over the decode steps
  double total_s = 0;                   // prefill + every decode step
  double tokens_per_s = 0;              // decode throughput: batch / decode_token_s
  double transfer_bytes_per_token = 0;  // weights and activations crossing a link or read from disk, per step
  double offloaded_fraction = 0;        // weight bytes stored off-GPU / all weight bytes (0 without GPU)
  Breakdown prefill, decode;            // seconds per resource (decode: per token)
  Resource bottleneck = Resource::kGpuMemory;
};

// A placement its runtime cannot run whatever the memory (a dtype it cannot compute in on this
// CPU, a map transformers refuses to load): infeasible, `why` in `oom`, marked as not memory.
void mark_cannot_run(Prediction& p, std::string why);
// The "fits" cell of a row: "yes", "OOM", or "no" where its runtime cannot run it.
const char* fits_label(const Prediction& p);

// One priced step of a simulated forward: an op on the device it executes on, or a weight
// tensor / activation moving to it. Times are from the start of the phase.
struct TimelineSpan {
  int op = -1;       // the graph op this belongs to
  std::string lane;  // "cpu", "cuda:N" (ops), "disk" (reads), "link" (copies to a device)
  std::string what;  // "compute", "disk read", "weights to cuda:N", "activations to cpu", ...
  double start_s = 0, dur_s = 0;
};
// The prefill, and the first decode step simulated (at the smallest sampled context), laid out
// span by span; prefetch copies start during the previous entry's compute.
struct Timeline {
  std::vector<TimelineSpan> prefill, decode;
};

// `per_entry`: the semantics of each entry of `map.items()` (only cpu/disk entries care).
// `timeline`, when given, receives the spans of the priced forwards (costs a string per op).
Prediction simulate(const CostModel& cm, const Hardware& hw, const DeviceMap& map,
                    const std::vector<Semantics>& per_entry, Timeline* timeline = nullptr);
Prediction simulate(const CostModel& cm, const Hardware& hw, const DeviceMap& map, Semantics semantics,
                    Timeline* timeline = nullptr);

// Shared with the optimal search so both price a unit the same way.
struct StreamCost {
  double disk_s = 0, link_s = 0, hook_s = 0;
  double total() const { return disk_s + link_s + hook_s; }
};
// Moving one weight tensor of `bytes` stored on cpu (from_disk = false) or disk to where it
// computes, under `semantics`.
StreamCost stream_tensor(const CostModel& cm, double bytes, bool from_disk, bool warm, ExecDevice exec,
                         Semantics semantics);
// Whether disk-offloaded weights stay in the page cache between forwards.
bool page_cache_holds(const Hardware& hw, Bytes host_resident, Bytes disk_bytes);

}  // namespace dmap::sim
