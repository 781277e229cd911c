// The simulator: walks a forward pass op by op on the devices a placement gives them.
#include "sim/simulate.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>
#include <unordered_map>

#include "core/error.h"

namespace dmap::sim {

void mark_cannot_run(Prediction& p, std::string why) {
  p.feasible = false;
  p.cannot_run = true;
  p.oom = std::move(why);
}

const char* fits_label(const Prediction& p) { return p.feasible ? "yes" : p.cannot_run ? "no" : "OOM"; }

StreamCost stream_tensor(const CostModel& cm, double bytes, bool from_disk, bool warm, ExecDevice exec,
                         Semantics semantics) {
  StreamCost c;
  if (from_disk) c.disk_s = cm.disk_read(bytes, warm);
  if (!exec.is_cpu()) {
    const bool pinned = is_prefetching(semantics);
    c.link_s = cm.h2d(bytes, pinned);
    if (semantics == Semantics::kAccelerate) c.hook_s = cm.rates().offload_tensor_overhead.value;
  }
  return c;
}

bool page_cache_holds(const Hardware& hw, Bytes host_resident, Bytes disk_bytes) {
  if (!hw.page_cache) return false;
  const Bytes free_ram = hw.host.ram - hw.host.reserved_ram - host_resident;
  return disk_bytes <= free_ram;
}

namespace {

std::string human(double bytes) { return format_bytes_human(bytes); }

struct Streamed {
  enum From { kFromHost, kFromDisk, kFromGpu };
  double bytes;
  From from;
  int gpu = 0;          // kFromGpu: where it is stored
  bool routed = false;  // routed-prefetch: only the experts the router picked, after it runs
};

struct Segment {
  int entry = -1;
  ExecDevice exec;
  Semantics semantics = Semantics::kAccelerate;
  std::vector<int> ops;
  std::vector<std::vector<Streamed>> streamed;  // per op: tensors copied before it runs
  std::vector<char> device_change;              // per op: activations arrive from another device
  std::vector<ExecDevice> prev_exec;            // per op: where the activations come from
  double streamed_bytes = 0;
};

struct PhaseResult {
  double time = 0;
  Breakdown b;
  double moved_bytes = 0;
};

}  // namespace

Prediction simulate(const CostModel& cm, const Hardware& hw, const DeviceMap& map, Semantics semantics,
                    Timeline* timeline) {
  return simulate(cm, hw, map, std::vector<Semantics>(map.items().size(), semantics), timeline);
}

Prediction simulate(const CostModel& cm, const Hardware& hw, const DeviceMap& map,
                    const std::vector<Semantics>& per_entry, Timeline* timeline) {
  const ModelGraph& g = cm.graph();
  const ModuleTree& tree = *g.tree;
  const Workload& w = cm.workload();
  const auto items = map.items();
  DMAP_CHECK(per_entry.size() == items.size(), "one semantics per map entry");

  // Governing entry of every node (nearest listed ancestor, itself included).
  std::unordered_map<std::string, int> entry_index;
  for (size_t i = 0; i < items.size(); ++i) entry_index[items[i].first] = static_cast<int>(i);
  std::vector<int> entry_of(tree.size(), -1);
  for (int id = 0; id < tree.size(); ++id) {  // parents precede children in node order
    auto it = entry_index.find(tree.node(id).name);
    if (it != entry_index.end()) {
      entry_of[id] = it->second;
    } else if (tree.node(id).parent >= 0) {
      entry_of[id] = entry_of[tree.node(id).parent];
    }
  }
  std::optional<int> main_gpu;
  for (const auto& [name, d] : items) {
    if (d.is_gpu()) {
      main_gpu = d.index;
      break;
    }
  }
  for (const auto& [name, d] : items) {
    if (d.is_gpu() && d.index >= static_cast<int>(hw.gpus.size())) {
      throw InputError("the device map puts '" + name + "' on GPU " + d.str() + " but the hardware has " +
                       std::to_string(hw.gpus.size()) + " GPU(s)");
    }
    if (d.kind == Device::Kind::kMps) throw InputError("the device map uses 'mps', which dmap does not simulate");
  }
  auto storage_of = [&](int node) -> Device {
    const int e = entry_of[node];
    DMAP_CHECK(e >= 0, "device map does not cover " + tree.node(node).name);
    return items[e].second;
  };
  auto exec_of_entry = [&](int e) -> ExecDevice {
    const Device d = items[e].second;
    if (d.is_gpu()) return ExecDevice::on_gpu(d.index);
    const Semantics s = per_entry[e];
    if ((s == Semantics::kAccelerate || is_prefetching(s)) && main_gpu) return ExecDevice::on_gpu(*main_gpu);
    return ExecDevice::cpu();
  };

  // Segments: runs of ops governed by one entry.
  std::vector<Segment> segs;
  ExecDevice cur = main_gpu ? ExecDevice::on_gpu(*main_gpu) : ExecDevice::cpu();
  bool started = false;
  std::vector<Bytes> max_leaf_streamed_on(hw.gpus.size() + 1, 0);
  std::map<int, double> max_segment_streamed;  // per GPU, prefetch double buffers
  for (size_t oi = 0; oi < g.ops.size(); ++oi) {
    const Op& op = g.ops[oi];
    int e = entry_of[op.node];
    if (e < 0) {
      e = segs.empty() ? -1 : segs.back().entry;  // residual adds of a split block follow the data
    }
    ExecDevice exec = e >= 0 ? exec_of_entry(e) : cur;
    if (segs.empty() || segs.back().entry != e) {
      Segment s;
      s.entry = e;
      s.exec = exec;
      s.semantics = e >= 0 ? per_entry[e] : Semantics::kAccelerate;
      segs.push_back(std::move(s));
    }
    Segment& s = segs.back();
    s.ops.push_back(static_cast<int>(oi));
    s.device_change.push_back(started && exec != cur);
    s.prev_exec.push_back(cur);
    std::vector<Streamed> st;
    double leaf_bytes = 0;
    for (int wt : op.weights) {
      const int src = g.storage_tensor(wt);
      const Device sd = storage_of(src);
      const double bytes = static_cast<double>(g.tensor_bytes[src]);
      if (sd.is_gpu() && !exec.is_cpu() && sd.index == exec.gpu) continue;  // resident on its GPU
      if (sd.kind == Device::Kind::kCpu && exec.is_cpu()) continue;         // resident in RAM
      if (sd.is_gpu()) {
        // a (tied) weight stored on another device than the op runs on: one copy per forward
        st.push_back({bytes, Streamed::kFromGpu, sd.index});
      } else {
        const bool routed = s.semantics == Semantics::kRoutedPrefetch && op.experts > 0;
        st.push_back({bytes, sd.kind == Device::Kind::kDisk ? Streamed::kFromDisk : Streamed::kFromHost, 0, routed});
      }
      leaf_bytes += bytes;
    }
    if (!exec.is_cpu() && exec.gpu < static_cast<int>(max_leaf_streamed_on.size())) {
      max_leaf_streamed_on[exec.gpu] = std::max<Bytes>(max_leaf_streamed_on[exec.gpu], static_cast<Bytes>(leaf_bytes));
    }
    s.streamed_bytes += leaf_bytes;
    s.streamed.push_back(std::move(st));
    cur = exec;
    started = true;
  }
  for (const auto& s : segs) {
    // (routed-prefetch: buffers for the whole experts module, which a prefill touches whole.)
    if (!s.exec.is_cpu() && is_prefetching(s.semantics)) {
      max_segment_streamed[s.exec.gpu] = std::max(max_segment_streamed[s.exec.gpu], s.streamed_bytes);
    }
  }

  // ---- memory ----
  const int ngpu = static_cast<int>(hw.gpus.size());
  std::vector<double> gpu_weights(ngpu, 0);
  std::vector<std::vector<int64_t>> gpu_windows(ngpu);  // per attention op executing there: its window (0 full)
  std::vector<int64_t> host_windows;
  std::vector<char> gpu_used(ngpu, 0), gpu_head(ngpu, 0);
  double host_weights = 0, disk_weights = 0;
  double disk_read = 0;  // disk weights some operator reads (an idle vision tower's are never read)
  bool host_exec = false, host_head = false;
  for (int id = 0; id < tree.size(); ++id) {
    const TreeNode& n = tree.node(id);
    if (!n.is_tensor || n.tied_source >= 0) continue;
    if (n.is_buffer && !n.persistent) continue;  // recomputed buffers (rotary) are negligible
    const Device d = storage_of(id);
    const double b = static_cast<double>(g.tensor_bytes[id]);
    if (d.is_gpu()) {
      gpu_weights[d.index] += b;
      gpu_used[d.index] = 1;
    } else if (d.kind == Device::Kind::kDisk) {
      disk_weights += b;
      const int u = g.chain_of_node[id];
      if (u < 0 || g.chain[u].first_op != g.chain[u].end_op) disk_read += b;
    } else {
      host_weights += b;
    }
  }
  for (const auto& s : segs) {
    if (s.exec.is_cpu()) {
      host_exec = true;
    } else {
      gpu_used[s.exec.gpu] = 1;
    }
    for (int oi : s.ops) {
      const Op& op = g.ops[oi];
      if (op.kind == OpKind::kAttention)
        (s.exec.is_cpu() ? host_windows : gpu_windows[s.exec.gpu]).push_back(op.window);
      if (op.kind == OpKind::kMatmul && op.head) {
        if (s.exec.is_cpu()) {
          host_head = true;
        } else {
          gpu_head[s.exec.gpu] = 1;
        }
      }
    }
  }
  Prediction p;
  const int64_t final_context = w.prompt + cm.decode_steps();
  const double ws_prefill = static_cast<double>(cm.workspace_bytes(Phase::prefill_of(w.prompt)));
  const double ws_decode = static_cast<double>(cm.workspace_bytes(Phase::decode_at(final_context)));
  const double logits = static_cast<double>(cm.logits_bytes());
  const double kvpt = static_cast<double>(g.kv_bytes_per_token(w.batch));
  // KV bytes the attention ops with these windows hold after a forward at `context`.
  auto kv_at = [&](const std::vector<int64_t>& windows, int64_t context, bool prefill) {
    double tokens = 0;
    for (int64_t win : windows) {
      tokens += static_cast<double>(prefill || win <= 0 ? context : std::min(context, win));
    }
    return kvpt * tokens;
  };
  std::vector<std::string> problems;
  auto check_device = [&](const std::string& label, double cap, bool capped, double fixed, bool executes, bool head,
                          const std::vector<int64_t>& windows, Device dev) {
    const double ws_p = executes ? ws_prefill + (head ? logits : 0) : 0;
    const double ws_d = executes ? ws_decode + (head ? logits : 0) : 0;
    const double peak_prefill = fixed + ws_p + kv_at(windows, w.prompt, true);
    const double peak_decode = fixed + ws_d + kv_at(windows, final_context, false);
    const double peak = std::max(peak_prefill, peak_decode);
    p.memory.emplace_back(dev, static_cast<Bytes>(peak));
    p.capacity.emplace_back(dev, static_cast<Bytes>(cap));
    const std::string has = human(cap) + (capped ? " (the scenario's max_memory)" : "");
    std::ostringstream why;
    if (fixed > cap) {
      why << label << " cannot even hold the placement: " << human(fixed) << " of weights, buffers and runtime vs "
          << has << " available";
    } else if (peak_prefill > cap) {
      why << label << " runs out of memory in prefill (context " << w.prompt << "): needs " << human(peak_prefill)
          << ", has " << has;
    } else if (peak_decode > cap) {
      // The first decode context whose cache no longer fits (the cache grows with the context).
      int64_t lo = w.prompt + 1, hi = final_context;
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (fixed + ws_d + kv_at(windows, mid, false) > cap) {
          hi = mid;
        } else {
          lo = mid + 1;
        }
      }
      if (kv_at(windows, final_context, false) > 0) {
        why << label << " runs out of memory while decoding at context " << lo << " (new token " << (lo - w.prompt + 1)
            << " of " << w.new_tokens << "): the KV cache outgrows the " << human(cap - fixed - ws_d) << " left of "
            << has;
      } else {
        why << label << " runs out of memory while decoding: needs " << human(peak_decode) << ", has " << has;
      }
    }
    if (!why.str().empty()) problems.push_back(why.str());
  };
  for (int gi = 0; gi < ngpu; ++gi) {
    if (!gpu_used[gi]) continue;
    const GpuSpec& spec = hw.gpus[gi];
    double transient = static_cast<double>(max_leaf_streamed_on[gi]);  // accelerate: one leaf's weights at a time
    if (max_segment_streamed.count(gi)) transient = std::max(transient, 2.0 * max_segment_streamed[gi]);
    const double fixed = static_cast<double>(spec.runtime_context) + gpu_weights[gi] + transient;
    check_device("GPU " + std::to_string(gi), static_cast<double>(hw.gpu_capacity(gi)), hw.gpu_capped(gi), fixed, true,
                 gpu_head[gi], gpu_windows[gi], Device::gpu(gi));
  }
  check_device("host RAM", static_cast<double>(hw.host_capacity()), hw.host_capped(), host_weights, host_exec,
               host_head, host_windows, Device::cpu());
  if (disk_weights > 0) {
    p.memory.emplace_back(Device::disk(), static_cast<Bytes>(disk_weights));
    p.capacity.emplace_back(Device::disk(), static_cast<Bytes>(disk_weights));
  }
  p.feasible = problems.empty();
  for (const auto& s : problems) p.oom.append(p.oom.empty() ? "" : "; ").append(s);
  const double all_weights = static_cast<double>(g.weight_bytes_total());
  if (main_gpu && all_weights > 0) p.offloaded_fraction = (host_weights + disk_weights) / all_weights;

  // ---- time ----
  const bool warm_decode = page_cache_holds(hw, static_cast<Bytes>(host_weights), static_cast<Bytes>(disk_read));
  auto lane_of = [](ExecDevice d) { return d.is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(d.gpu); };
  // spans: where the phase's timeline goes (nullptr: not recorded). Without overlap every
  // copy and read sits right before its op; prefetch copies run on the link from the start of
  // the previous entry's compute, and the entry's ops wait for the last of them.
  auto run_phase = [&](Phase phase, bool warm, std::vector<TimelineSpan>* spans) {
    PhaseResult r;
    double prev_compute = 0;
    for (size_t si = 0; si < segs.size(); ++si) {
      const Segment& s = segs[si];
      const bool overlapped = is_prefetching(s.semantics) && !s.exec.is_cpu();
      double compute = 0, ops_only = 0, stream = 0;
      Breakdown sb, stream_b;
      const double tokens = static_cast<double>(w.batch) * (phase.prefill ? static_cast<double>(w.prompt) : 1.0);
      std::vector<TimelineSpan> ops_spans, copy_spans;  // laid out once `exposed` is known
      double op_clock = 0, copy_clock = 0;              // within the segment
      // Called only when recording: the names cost allocations the optimal search must not pay.
      auto span = [&](std::vector<TimelineSpan>& into, double& clock, int op, const std::string& lane, std::string what,
                      double dur) {
        if (dur <= 0) return;
        into.push_back({op, lane, std::move(what), clock, dur});
        clock += dur;
      };
      for (size_t k = 0; k < s.ops.size(); ++k) {
        const int op_index = s.ops[k];
        const Op& op = g.ops[op_index];
        if (s.device_change[k]) {
          const double t = cm.activation_copy(s.prev_exec[k], s.exec, phase);
          compute += t;
          sb[Resource::kH2d] += t;
          r.moved_bytes += cm.activation_bytes(phase);
          if (spans) span(ops_spans, op_clock, op_index, "link", "activations to " + lane_of(s.exec), t);
        }
        for (const Streamed& st : s.streamed[k]) {
          StreamCost c;
          if (st.from == Streamed::kFromGpu) {
            c.link_s = s.exec.is_cpu() ? cm.d2h(st.bytes, false) : cm.p2p(st.bytes, st.gpu, s.exec.gpu);
          } else if (st.routed) {
            // The experts the router picked, one copy (and read) each, once it has run: in the
            // op's own time, not behind the previous entry's.
            const double touched = cm.touched(op, tokens), one = st.bytes / static_cast<double>(op.experts);
            const StreamCost e = stream_tensor(cm, one, st.from == Streamed::kFromDisk, warm, s.exec, s.semantics);
            c = {touched * e.disk_s, touched * e.link_s, touched * e.hook_s};
            compute += c.total();
            sb[Resource::kDisk] += c.disk_s;
            sb[Resource::kH2d] += c.link_s + c.hook_s;
            r.moved_bytes += touched * one;
            if (spans) {
              span(ops_spans, op_clock, op_index, "disk", "disk read (routed experts)", c.disk_s);
              span(ops_spans, op_clock, op_index, "link", "routed experts to " + lane_of(s.exec), c.link_s + c.hook_s);
            }
            continue;
          } else {
            c = stream_tensor(cm, st.bytes, st.from == Streamed::kFromDisk, warm, s.exec, s.semantics);
          }
          stream += c.total();
          stream_b[Resource::kDisk] += c.disk_s;
          stream_b[Resource::kH2d] += c.link_s + c.hook_s;
          r.moved_bytes += st.bytes;
          if (spans) {
            auto& into = overlapped ? copy_spans : ops_spans;
            double& clock = overlapped ? copy_clock : op_clock;
            span(into, clock, op_index, "disk", "disk read", c.disk_s);
            span(into, clock, op_index, "link", "weights to " + lane_of(s.exec), c.link_s + c.hook_s);
          }
        }
        const OpTime t = cm.op(op, s.exec, phase);
        compute += t.time();
        ops_only += t.time();
        cm.charge(t, s.exec, sb);
        if (spans) span(ops_spans, op_clock, op_index, lane_of(s.exec), "compute", t.time());
      }
      double exposed = stream;
      if (overlapped && stream > 0) exposed = std::max(0.0, stream - prev_compute);
      if (spans) {
        const double copies_from = r.time - prev_compute;  // the copy stream starts with the previous entry
        for (auto& sp : copy_spans) spans->push_back({sp.op, sp.lane, sp.what, copies_from + sp.start_s, sp.dur_s});
        const double ops_from = r.time + (overlapped ? exposed : 0);
        for (auto& sp : ops_spans) spans->push_back({sp.op, sp.lane, sp.what, ops_from + sp.start_s, sp.dur_s});
      }
      if (stream > 0) r.b.add(stream_b, exposed / stream);
      r.b.add(sb);
      r.time += compute + exposed;
      prev_compute = ops_only;  // the copy overlaps the previous entry's kernels
    }
    // The runtime's host time per forward (sim/runtime.h; 0 for dmap's executor).
    if (const double step = cm.rates().step_overhead.value; step > 0) {
      r.time += step;
      r.b[Resource::kCpuCompute] += step;
    }
    return r;
  };
  const PhaseResult pre = run_phase(Phase::prefill_of(w.prompt), false, timeline ? &timeline->prefill : nullptr);
  p.prefill_s = pre.time;
  p.prefill = pre.b;
  double decode_total = 0, moved = 0;
  const auto& samples = cm.decode_samples();
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto& smp = samples[i];
    const PhaseResult d =
        run_phase(Phase::decode_at(smp.context), warm_decode, timeline && i == 0 ? &timeline->decode : nullptr);
    const double weight = smp.steps > 0 ? smp.steps : 1.0;
    decode_total += smp.steps * d.time;  // a single-token workload runs no decode step
    p.decode.add(d.b, weight);
    moved += weight * d.moved_bytes;
  }
  double mean = 0;
  for (const auto& smp : samples) mean += (smp.steps > 0 ? smp.steps : 1.0);
  for (double& v : p.decode.s) v /= mean;
  p.decode_token_s = p.decode.total();
  p.transfer_bytes_per_token = moved / mean;
  p.total_s = p.prefill_s + decode_total;
  p.tokens_per_s = p.decode_token_s > 0 ? static_cast<double>(w.batch) / p.decode_token_s : 0;
  p.bottleneck = (cm.decode_steps() > 0 ? p.decode : p.prefill).largest();
  return p;
}

}  // namespace dmap::sim
