// The optimal placement search (see optimal.h for the search space, the exactness argument
// and the bound on work).
#include "sim/optimal.h"

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <chrono>
#include <array>
#include <cmath>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <unordered_map>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "core/error.h"
#include "strategies/infer_auto_device_map.h"

namespace dmap::sim {

bool is_stream(UnitChoice c) {
  return c == UnitChoice::kStreamAccelerate || c == UnitChoice::kStreamAccelerateDisk ||
         c == UnitChoice::kStreamPrefetch || c == UnitChoice::kStreamPrefetchDisk;
}
bool is_prefetch(UnitChoice c) { return c == UnitChoice::kStreamPrefetch || c == UnitChoice::kStreamPrefetchDisk; }
bool is_in_place(UnitChoice c) { return c == UnitChoice::kInPlaceCpu || c == UnitChoice::kInPlaceDisk; }
bool from_disk(UnitChoice c) {
  return c == UnitChoice::kStreamAccelerateDisk || c == UnitChoice::kStreamPrefetchDisk ||
         c == UnitChoice::kInPlaceDisk || c == UnitChoice::kSplitExpertsDisk;
}
bool is_split(UnitChoice c) { return c == UnitChoice::kSplitExpertsCpu || c == UnitChoice::kSplitExpertsDisk; }
bool on_gpu(UnitChoice c) { return c == UnitChoice::kResident || is_split(c); }

namespace {
// What a unit without operators and bytes takes of the unit before it (it goes there for free).
UnitChoice free_choice(UnitChoice before) { return is_split(before) ? UnitChoice::kResident : before; }
}  // namespace

int split_experts(const ModelGraph& g, int u) {
  const ModuleTree& tree = *g.tree;
  const ChainUnit& cu = g.chain[u];
  if (!cu.is_layer) return -1;
  const int x = routed_experts_of(tree, cu.node);
  if (x < 0) return -1;
  const int block = tree.node(x).parent;
  // The map lists the layer's children and the block's: weights of their own would go unmapped.
  if (block < 0 || tree.node(block).parent != cu.node) return -1;
  for (int m : {cu.node, block}) {
    if (!tree.node(m).params.empty() || !tree.node(m).buffers.empty()) return -1;
  }
  return x;
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Where a tie source's tensors are stored (GPU ordinals are >= 0).
constexpr int kRam = -1, kDisk = -2, kNoTie = -3;

// kAny: only for lower bounds, the union of the three (every streaming kind, no unit-0 rule).
enum class Mode { kNone, kAccelerate, kPrefetch, kAny };

// The semantics a placement's entries run under (what placement_map writes).
Semantics resident_semantics(Mode m, bool any_in_place) {
  if (m == Mode::kPrefetch) return Semantics::kPrefetch;
  if (m == Mode::kAccelerate) return Semantics::kAccelerate;
  return any_in_place ? Semantics::kInPlace : Semantics::kAccelerate;
}
Semantics unit_semantics(UnitChoice c, Semantics resident) {
  if (c == UnitChoice::kResident) return resident;
  if (is_stream(c)) return is_prefetch(c) ? Semantics::kPrefetch : Semantics::kAccelerate;
  return Semantics::kInPlace;
}
struct OpTensors {
  std::vector<double> own, tied;  // bytes of each weight tensor the op reads
};

// What the search prices units with, computed once per model, hardware and workload.
struct Tables {
  const CostModel& cm;
  const Hardware& hw;
  int units = 0, gpus = 0;
  std::vector<Phase> phases;                           // prefill, then each decode sample
  std::vector<double> phase_weight;                    // 1, then the steps each sample stands for
  std::vector<std::vector<std::vector<double>>> comp;  // [u][exec+1][phase]: operators only
  std::vector<std::vector<double>> comp_total;         // [u][exec+1]
  std::vector<double> trans;                           // [(from+1)*(gpus+1) + to+1]: activation hand-over, all phases
  std::vector<double> weights, kv_p, kv_d, logits;     // per unit
  std::vector<std::vector<OpTensors>> ops;             // per unit, per operator
  std::vector<char> has_ops, free_unit;
  std::vector<int> prev_ops;      // nearest earlier unit with operators, -1 none
  std::vector<int> tie_source;    // per unit: the unit storing its tied tensors, -1 none
  std::vector<char> last_target;  // the last unit reading the pending tie source
  int source = -1;                // the one unit whose tensors later units read (tie source)
  std::string unsupported;        // a model structure the search does not handle
  double ws_p = 0, ws_d = 0, logits_bytes = 0;
  double tie_reserve = 0;  // GPU bytes a source reserves for its returning tied units
  double steps = 0;        // decode steps after prefill
  // The unit's own tensors moved under each choice: seconds per forward (prefill cold, decode
  // cold, decode warm) and the largest leaf / whole entry in bytes.
  struct OwnStream {
    double cold = 0, dec_cold = 0, dec_warm = 0, leaf = 0, segment = 0;
  };
  std::vector<std::array<OwnStream, 7>> own;
  std::vector<double> gpu_cap, gpu_ctx;
  double host_cap = 0, cache_cap = 0, all_weights = 0;
  double read_weights = 0;  // of the units with operators (others are never read)
  double gpu_room = 0;      // bytes all GPUs can hold besides context and workspace
  bool host_binding = false;
  // Reading from the page cache is never slower than from disk (the two differ in nothing
  // else): then every placement's warm time is at most its cold time, and a warm bound
  // table's columns without the page-cache price bound the cold runs too.
  bool warm_bounds_cold = false;
  // A sparse layer split (resident on GPU g, its routed experts in place on the CPU), per unit:
  // the experts module (-1: the unit does not split), their bytes, the unit's time on each GPU
  // (its operators where the simulator runs them — the experts on the CPU, the block's and the
  // layer's own operators after the device before them — and the hand-overs inside it, all
  // phases), whether its last operator runs on the CPU, and the experts' reads from disk.
  std::vector<int> split_node;
  std::vector<double> split_weights;
  std::vector<std::vector<double>> split_time;  // [u][g]
  std::vector<char> split_last_cpu;
  std::vector<OwnStream> split_disk;

  Tables(const CostModel& c, const Hardware& h) : cm(c), hw(h) {
    const ModelGraph& g = cm.graph();
    const ModuleTree& tree = *g.tree;
    const Workload& w = cm.workload();
    units = static_cast<int>(g.chain.size());
    gpus = static_cast<int>(hw.gpus.size());
    phases.push_back(Phase::prefill_of(w.prompt));
    phase_weight.push_back(1.0);
    for (const auto& s : cm.decode_samples()) {
      phases.push_back(Phase::decode_at(s.context));
      phase_weight.push_back(s.steps);
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
    trans.assign(execs * execs, 0);
    for (int a = -1; a < gpus; ++a) {
      for (int b = -1; b < gpus; ++b) {
        double t = 0;
        for (size_t k = 0; k < phases.size(); ++k) {
          t += phase_weight[k] * cm.activation_copy(ExecDevice{a}, ExecDevice{b}, phases[k]);
        }
        trans[(a + 1) * execs + b + 1] = t;
      }
    }
    const int64_t final_context = w.prompt + cm.decode_steps();
    logits_bytes = static_cast<double>(cm.logits_bytes());
    ws_p = static_cast<double>(cm.workspace_bytes(Phase::prefill_of(w.prompt)));
    ws_d = static_cast<double>(cm.workspace_bytes(Phase::decode_at(final_context)));
    weights.assign(units, 0);
    kv_p.assign(units, 0);
    kv_d.assign(units, 0);
    logits.assign(units, 0);
    ops.assign(units, {});
    has_ops.assign(units, 0);
    free_unit.assign(units, 0);
    prev_ops.assign(units, -1);
    tie_source.assign(units, -1);
    last_target.assign(units, 0);
    for (int id = 0; id < tree.size(); ++id) {
      const TreeNode& n = tree.node(id);
      if (!n.is_tensor || n.tied_source >= 0 || (n.is_buffer && !n.persistent)) continue;
      const int u = g.chain_of_node[id];
      DMAP_CHECK(u >= 0, "tensor outside every placement unit: " + n.name);
      weights[u] += static_cast<double>(g.tensor_bytes[id]);
    }
    for (int u = 0, last = -1; u < units; ++u) {
      const ChainUnit& cu = g.chain[u];
      prev_ops[u] = last;
      has_ops[u] = cu.first_op != cu.end_op;
      if (has_ops[u]) last = u;
      for (int oi = cu.first_op; oi < cu.end_op; ++oi) {
        const Op& op = g.ops[oi];
        if (op.kind == OpKind::kAttention) {
          kv_p[u] += static_cast<double>(g.kv_bytes(op, w.batch, w.prompt, true));
          kv_d[u] += static_cast<double>(g.kv_bytes(op, w.batch, final_context));
        }
        if (op.kind == OpKind::kMatmul && op.head) logits[u] = logits_bytes;
        OpTensors t;
        for (int wt : op.weights) {
          const int src = g.storage_tensor(wt);
          const double b = static_cast<double>(g.tensor_bytes[src]);
          const int su = g.chain_of_node[src];
          if (su == u) {
            t.own.push_back(b);
          } else {
            t.tied.push_back(b);
            if (su > u || (tie_source[u] >= 0 && tie_source[u] != su) || (source >= 0 && source != su)) {
              unsupported = "tied tensors read across more than one pair of placement units";
            }
            tie_source[u] = su;
            source = su;
          }
        }
        ops[u].push_back(std::move(t));
      }
      free_unit[u] = !has_ops[u] && weights[u] == 0;
    }
    for (size_t k = 1; k < phases.size(); ++k) steps += phase_weight[k];
    own.assign(units, {});
    for (int u = 0; u < units; ++u) {
      for (int ci = 0; ci < 7; ++ci) {
        const UnitChoice c = static_cast<UnitChoice>(ci);
        if (c == UnitChoice::kResident || c == UnitChoice::kInPlaceCpu) continue;
        const int exec = is_stream(c) ? 0 : -1;
        if (exec >= 0 && gpus == 0) continue;
        const Semantics sem =
            is_stream(c) ? (is_prefetch(c) ? Semantics::kPrefetch : Semantics::kAccelerate) : Semantics::kInPlace;
        const int storage = from_disk(c) ? kDisk : kRam;
        OwnStream& o = own[u][ci];
        for (const OpTensors& op : ops[u]) {
          o.cold += move(op.own, storage, exec, sem, false);
          o.dec_warm += move(op.own, storage, exec, sem, true);
          const double l = moved_bytes(op.own, storage, exec);
          o.leaf = std::max(o.leaf, l);
          o.segment += l;
        }
        o.dec_cold = o.cold;
      }
    }
    for (int u = units - 1; u >= 0; --u) {
      if (tie_source[u] >= 0) {
        last_target[u] = 1;
        break;
      }
    }
    for (int u = 0; u < units; ++u) {
      if (tie_source[u] >= 0) tie_reserve += weights[u] + std::max(kv_p[u], kv_d[u]) + logits[u];
    }
    host_cap = static_cast<double>(hw.host_capacity());
    cache_cap = static_cast<double>(hw.host.ram - hw.host.reserved_ram);
    double all_kv_p = 0, all_kv_d = 0;
    for (int u = 0; u < units; ++u) {
      all_weights += weights[u];
      if (has_ops[u]) read_weights += weights[u];
      all_kv_p += kv_p[u];
      all_kv_d += kv_d[u];
    }
    host_binding = all_weights + std::max(ws_p + all_kv_p, ws_d + all_kv_d) + logits_bytes > host_cap;
    // (Warm: bytes over a rate that may depend on the tensor's size, never below its slowest; cold:
    // bytes over a rate plus a latency. The slowest warm rate at least the cold one decides it.)
    warm_bounds_cold =
        cm.rates().min_page_cache_rate(cm.workload().dtype) >= cm.rates().max_disk_read_rate(cm.workload().dtype);
    split_tables();
    for (int gi = 0; gi < gpus; ++gi) {
      gpu_cap.push_back(static_cast<double>(hw.gpu_capacity(gi)));
      gpu_ctx.push_back(static_cast<double>(hw.gpus[gi].runtime_context));
      gpu_room += std::max(0.0, gpu_cap.back() - gpu_ctx.back() - std::max(ws_p, ws_d));
    }
  }

  void split_tables() {
    const ModelGraph& g = cm.graph();
    const ModuleTree& tree = *g.tree;
    const int execs = gpus + 1;
    split_node.assign(units, -1);
    split_weights.assign(units, 0);
    split_time.assign(units, std::vector<double>(gpus, 0));
    split_last_cpu.assign(units, 0);
    split_disk.assign(units, {});
    if (gpus == 0) return;
    auto under = [&](int node, int top) {
      for (int id = node; id >= 0; id = tree.node(id).parent) {
        if (id == top) return true;
      }
      return false;
    };
    for (int u = 0; u < units; ++u) {
      if (!has_ops[u] || tie_source[u] >= 0 || u == source) continue;
      const int x = split_experts(g, u);
      if (x < 0) continue;
      const ChainUnit& cu = g.chain[u];
      const int block = tree.node(x).parent;
      // (Its first operator runs on the layer's GPU: the hand-over into it is the resident one.)
      if (g.ops[cu.first_op].node == cu.node || g.ops[cu.first_op].node == block) continue;
      split_node[u] = x;
      for (int id = 0; id < tree.size(); ++id) {
        const TreeNode& n = tree.node(id);
        if (!n.is_tensor || n.tied_source >= 0 || (n.is_buffer && !n.persistent) || !under(id, x)) continue;
        split_weights[u] += static_cast<double>(g.tensor_bytes[id]);
      }
      // Which operators run on the CPU (the same on every GPU), and the hand-overs: from the
      // unit's resident time, those operators move to the CPU.
      std::vector<int> on_cpu;
      int to_cpu = 0, to_gpu = 0;
      bool cpu = false;
      for (int oi = cu.first_op; oi < cu.end_op; ++oi) {
        const Op& op = g.ops[oi];
        // (The layer's and the block's own operators have no entry of their own: they follow
        // the data, as simulate() runs them.)
        const bool here = under(op.node, x) || ((op.node == cu.node || op.node == block) && cpu);
        if (here != cpu) (here ? to_cpu : to_gpu) += 1;
        cpu = here;
        if (here) on_cpu.push_back(oi);
      }
      split_last_cpu[u] = cpu;
      for (int gi = 0; gi < gpus; ++gi) {
        double t = comp_total[u][gi + 1] + to_cpu * trans[(gi + 1) * execs] + to_gpu * trans[gi + 1];
        for (int oi : on_cpu) {
          for (size_t k = 0; k < phases.size(); ++k) {
            t += phase_weight[k] * (cm.op(g.ops[oi], ExecDevice{-1}, phases[k]).time() -
                                    cm.op(g.ops[oi], ExecDevice{gi}, phases[k]).time());
          }
        }
        split_time[u][gi] = t;
      }
      OwnStream& o = split_disk[u];
      for (int oi = cu.first_op; oi < cu.end_op; ++oi) {
        if (!under(g.ops[oi].node, x)) continue;
        const OpTensors& op = ops[u][oi - cu.first_op];
        o.cold += move(op.own, kDisk, -1, Semantics::kInPlace, false);
        o.dec_warm += move(op.own, kDisk, -1, Semantics::kInPlace, true);
      }
      o.dec_cold = o.cold;
    }
  }

  // Moving tensors stored at `storage` to `exec` for one forward (simulate()'s pricing).
  double move(const std::vector<double>& tensors, int storage, int exec, Semantics sem, bool warm) const {
    double t = 0;
    for (double b : tensors) {
      if (storage >= 0) {
        if (exec == storage) continue;
        t += exec < 0 ? cm.d2h(b, false) : cm.p2p(b, storage, exec);
      } else if (storage == kRam) {
        if (exec < 0) continue;
        t += stream_tensor(cm, b, false, warm, ExecDevice{exec}, sem).total();
      } else {
        t += stream_tensor(cm, b, true, warm, ExecDevice{exec}, sem).total();
      }
    }
    return t;
  }
  static double moved_bytes(const std::vector<double>& tensors, int storage, int exec) {
    if (storage == exec || (storage == kRam && exec < 0)) return 0;
    double b = 0;
    for (double x : tensors) b += x;
    return b;
  }
};

// What placing one unit costs and adds: its time, and its bytes on its execution GPU.
struct UnitPrice {
  double time = 0;
  double transient = 0;  // on the execution GPU
};

UnitPrice price_unit(const Tables& T, int u, UnitChoice c, int exec, int own_storage, int tie_storage, int pe,
                     Semantics sem, bool warm) {
  UnitPrice p;
  if (!T.has_ops[u]) return p;
  p.time = T.comp_total[u][exec + 1];
  const int execs = T.gpus + 1;
  if (T.prev_ops[u] >= 0 && pe != exec) p.time += T.trans[(pe + 1) * execs + exec + 1];
  double s_cold = 0, s_dec = 0, leaf = 0, segment = 0;
  if (T.tie_source[u] < 0 && c != UnitChoice::kResident) {  // the common case, precomputed
    const Tables::OwnStream& o = T.own[u][static_cast<int>(c)];
    s_cold = o.cold;
    s_dec = warm ? o.dec_warm : o.dec_cold;
    leaf = o.leaf;
    segment = o.segment;
  } else if (T.tie_source[u] >= 0) {
    for (const OpTensors& op : T.ops[u]) {
      s_cold += T.move(op.own, own_storage, exec, sem, false);
      s_dec += T.move(op.own, own_storage, exec, sem, warm);
      double l = Tables::moved_bytes(op.own, own_storage, exec);
      s_cold += T.move(op.tied, tie_storage, exec, sem, false);
      s_dec += T.move(op.tied, tie_storage, exec, sem, warm);
      l += Tables::moved_bytes(op.tied, tie_storage, exec);
      leaf = std::max(leaf, l);
      segment += l;
    }
  }
  const bool overlapped = sem == Semantics::kPrefetch && exec >= 0;
  if (exec >= 0) p.transient = overlapped && segment > 0 ? std::max(leaf, 2.0 * segment) : leaf;
  if (overlapped && s_cold + s_dec > 0) {
    const int before = T.prev_ops[u];
    for (size_t k = 0; k < T.phases.size(); ++k) {
      const double s = k == 0 ? s_cold : s_dec;
      const double prev = before < 0 ? 0.0 : T.comp[before][pe + 1][k];
      p.time += T.phase_weight[k] * std::max(0.0, s - prev);
    }
  } else {
    p.time += s_cold + T.steps * s_dec;
  }
  return p;
}

// A split unit resident on GPU g, its experts in place on the CPU (their weights on disk when
// `disk`), after an operator on pe: simulate()'s time for it.
double split_price(const Tables& T, int u, int g, int pe, bool disk, bool warm) {
  double t = T.split_time[u][g];
  if (T.prev_ops[u] >= 0 && pe != g) t += T.trans[(pe + 1) * (T.gpus + 1) + g + 1];
  if (disk) {
    const Tables::OwnStream& o = T.split_disk[u];
    t += o.cold + T.steps * (warm ? o.dec_warm : o.dec_cold);
  }
  return t;
}

struct Label {
  double t = 0;
  double gp = 0, gd = 0, gt = 0;  // GPU in use: prefill peak, decode peak (without transient), transient
  double hp = 0, hd = 0;          // host peaks (when RAM binds)
  double pc = 0;                  // weights off the GPUs (when the page cache must hold them)
  int parent = -1;
  int8_t open = -1, pe = -1, sig = kNoTie, ret = 0, hx = 0, choice = 0, gpu = -1;
};

// The state a label is in, as one number (its fields are small: GPUs < 127, sig >= kNoTie).
uint32_t state_key(const Label& a) {
  return (static_cast<uint32_t>(a.open + 1) << 24) | (static_cast<uint32_t>(a.pe + 1) << 16) |
         (static_cast<uint32_t>(a.sig - kNoTie) << 8) | static_cast<uint32_t>(a.ret);
}

// Bound tables are tens of MB on many GPUs, and a fresh one costs as much in page faults and
// in the kernel's zeroing of new pages as in filling it: released tables are kept per thread
// (the last two, up to 64 MB each) for the next table, and a table of 2 MiB or more asks for
// transparent huge pages (one fault per 2 MiB: on a VM whose faults cost ~7 us each, the CLI's
// first tables had spent a third of the search in them) in a region of at least 64 MiB of
// address space, of which only the pages a table writes are ever backed: a larger table later
// reuses the pages a smaller one touched instead of faulting in (and zeroing) new ones.
constexpr size_t kHugeBytes = size_t{2} << 20;
constexpr size_t kRegionBytes = size_t{64} << 20;
// The floats a table of n gets room for.
size_t table_capacity(size_t n) {
  const size_t bytes = n * sizeof(float);
  if (bytes < kHugeBytes) return n;
  return (std::max(bytes, kRegionBytes) + kHugeBytes - 1) / kHugeBytes * kHugeBytes / sizeof(float);
}
float* table_alloc(size_t capacity) {
  const size_t bytes = capacity * sizeof(float);
  if (bytes < kHugeBytes) return new float[capacity];
  void* p = std::aligned_alloc(kHugeBytes, bytes);
  if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  madvise(p, bytes, MADV_HUGEPAGE);  // advice: where the kernel declines, small pages serve
#endif
  return static_cast<float*>(p);
}
void table_free(float* p, size_t capacity) {
  if (capacity * sizeof(float) < kHugeBytes) {
    delete[] p;
  } else {
    std::free(p);
  }
}

class TablePool {
 public:
  struct Return {
    size_t capacity = 0, touched = 0;  // floats of room, and how many of them a table has written
    void operator()(float* p) const { TablePool::release({p, capacity, touched}); }
  };
  using Table = std::unique_ptr<float[], Return>;
  // A table of n floats: the spare with room for it whose pages are most already backed, else
  // a new region.
  static Table acquire(size_t n) {
    auto& spare = pool();
    size_t pick = spare.size();
    for (size_t i = 0; i < spare.size(); ++i) {
      if (spare[i].capacity < n) continue;
      if (pick == spare.size() || std::min(spare[i].touched, n) > std::min(spare[pick].touched, n)) pick = i;
    }
    if (pick < spare.size()) {
      const Spare s = spare[pick];
      spare.erase(spare.begin() + static_cast<long>(pick));
      return Table(s.p, Return{s.capacity, std::max(s.touched, n)});
    }
    const size_t capacity = table_capacity(n);
    return Table(table_alloc(capacity), Return{capacity, n});
  }

 private:
  struct Spare {
    float* p;
    size_t capacity, touched;
  };
  static std::vector<Spare>& pool() {
    thread_local struct Spares {
      std::vector<Spare> v;
      ~Spares() {
        for (const Spare& s : v) table_free(s.p, s.capacity);
      }
    } spares;
    return spares.v;
  }
  static void release(Spare s) {
    if (!s.p) return;
    auto& spare = pool();
    if (s.capacity * sizeof(float) > kRegionBytes) {
      table_free(s.p, s.capacity);
      return;
    }
    spare.push_back(s);
    if (spare.size() > 2) {  // the oldest goes
      table_free(spare.front().p, spare.front().capacity);
      spare.erase(spare.begin());
    }
  }
};

// A lower bound on the time of units u+1..end, from a relaxation solved exactly by a DP over
// units (backwards, once per run). The relaxation keeps what decides the time: each unit's
// choice priced as simulate() prices it, hand-overs, a prefetched copy hidden behind the
// previous operator's compute, a tied unit's copies from where its source is stored (one
// column per storage class: on a GPU — then the tied unit may go back to it for free —, RAM,
// disk). It keeps the GPU limits, per GPU, in buckets: a GPU's room (its capacity less context
// and the larger of the prefill and decode workspaces, for a unit the smaller of its two KV
// sizes: both phases must fit, so their sums are below that room) is split into at most K
// buckets sized so that a decoder layer is a whole number of them, a unit's bytes are rounded
// down to whole buckets and the room left rounded down too (the sum of rounded-down parts never
// exceeds the rounded-down sum, so every completion that fits still fits), and a streamed
// unit's transient is reserved on GPU 0 as the simulator keeps the largest one. It relaxes the
// order rules and the host and page-cache limits, which enter by Lagrangian prices (weak
// duality: for every completion that fits, time >= time + price x (use - room)): mu per byte of
// host memory, nu per decoder layer held in RAM (at most floor(room / layer) of them), kappa per
// decoder layer off the GPUs in a warm run (at most floor(page-cache room / layer)); each column
// is one set of prices and the largest bound counts. State: (unit, GPU in use, buckets left on
// it, transient reserved, device of the previous operator: the CPU, the GPU in use, or another
// GPU). Work: units x (1 + (K + 1) x 3 x (reservations + GPUs - 1)) cells x columns x choices.
struct RoomBound {
  static constexpr int kMaxReserved = 4;
  int N = 0, G = 0, R = 1;
  std::vector<double> q;         // [g]: bytes per bucket
  std::vector<int> full;         // [g]: buckets of an unused GPU (cells hold 0..full[g] left)
  std::vector<size_t> block;     // [o]: the first cell of GPU o - 1 in use within a unit's cells
  std::vector<double> reserved;  // representable transients on GPU 0, in buckets, ascending (0 first)
  double w_common = 0;           // the weights of the commonest unit (nu prices those in RAM)
  double ip_common = 0;          // a commonest unit's host bytes in place from RAM (weights, least KV)
  double ws_host = 0;            // the host workspace once a CPU operator runs (the larger phase's)
  struct Table {
    double mu = 0, nu = 0, kappa = 0, nu_ip = 0;
  };
  std::vector<double> rest_bytes;  // [u]: host bytes units u.. can take at most (mu is paid on no more)
  // [u]: what units u.. pay nu (and kappa) and nu_ip for at most: a commonest unit counts 1,
  // another floor(its bytes / the commonest's) — it takes at least that many of its places.
  std::vector<double> rest_common, rest_ip;
  // What a column's prices credit units v.. for the host room and page-cache room left (hx: a
  // CPU operator has run, its workspace is in the host room's use): what they pay at most.
  double credit(const Table& t, int v, double host_room, double cache_room, bool hx) const {
    double c = 0;
    if (t.mu > 0) c += t.mu * std::min(host_room, rest_bytes[v]);
    if (t.nu > 0) c += t.nu * std::min(rest_common[v], std::floor(host_room / w_common));
    if (t.nu_ip > 0)
      c += t.nu_ip * std::min(rest_ip[v], std::floor(std::max(0.0, host_room - (hx ? 0.0 : ws_host)) / ip_common));
    if (t.kappa > 0) c += t.kappa * std::min(rest_common[v], std::floor(cache_room / w_common));
    return c;
  }
  std::vector<Table> tables;  // prices: a column each per tie-storage class (row() lays them out)
  Placement relaxed;          // the relaxation's optimum (may break rules or not fit; empty if none)
  // Floats rounded down (a bound stays a bound): the table is tens of MB for many GPUs.
  TablePool::Table packed;
  size_t width = 0;               // columns per cell: tie-storage classes x tables
  int tie_from = 0, tie_to = -1;  // units whose tables depend on where the tie source is stored
  int earlier = -1;               // the class of a tie source on a GPU before the one in use (-1: none)
  bool warm = false;              // built for warm runs (a column with the page-cache price kappa)
  // The tie-storage class of a label's source stored at `sig`, with GPU `open` in use.
  int tie_class(int sig, int open) const {
    if (sig == kRam) return 1;
    if (sig == kDisk) return 2;
    return sig >= 0 && sig != open && earlier >= 0 ? earlier : 0;
  }

  // Whole buckets of GPU g in `bytes`, rounded down; full[g] + 1 (never fits) beyond the table.
  int buckets(double bytes, int g) const {
    const double b = std::floor(bytes / q[g]);
    return b > full[g] ? full[g] + 1 : static_cast<int>(std::max(0.0, b));
  }
  // A unit's values, by GPU in use (o = GPU + 1, 0: none): rows of buckets left (0..full),
  // one per previous-operator class p, reservation r (on GPU 0) and column j, so that the DP
  // runs along rows (shifted minima, vectorised). No GPU in use: rows of one value, one class.
  int length(int o) const { return o == 0 ? 1 : full[o - 1] + 1; }
  int reservations(int o) const { return o == 1 ? R : 1; }
  void lay_out() {
    block.assign(G + 2, 0);
    for (int o = 0; o <= G; ++o) {
      block[o + 1] = block[o] + static_cast<size_t>(length(o)) * (o == 0 ? 1 : 3) * reservations(o) * width;
    }
  }
  size_t unit_size() const { return block[G + 1]; }
  // The first value of a row: unit u, GPU o - 1 in use, class p, reservation r, column j.
  size_t row(int u, int o, int p, int r, size_t j) const {
    return static_cast<size_t>(u) * unit_size() + block[o] +
           ((static_cast<size_t>(p) * reservations(o) + r) * width + j) * length(o);
  }
  // The smallest representable reservation at least `buckets` (the largest when none is).
  int reserve_up(double buckets) const {
    for (int i = 0; i < R; ++i) {
      if (reserved[i] >= buckets) return i;
    }
    return R - 1;
  }
  // The largest representable reservation at most `buckets`.
  int reserve_down(double buckets) const {
    int k = 0;
    for (int i = 0; i < R; ++i) {
      if (reserved[i] <= buckets) k = i;
    }
    return k;
  }
  // Units after u, for a label on GPU `open` with `room` bytes left on it (transient `gt`
  // reserved), previous operator on `pe`, and `host_room` bytes of host memory left.
  // A cold run's view of a warm table (Tables::warm_bounds_cold) skips the kappa column.
  double lower(int u, int open, double room, double gt, int pe, int sig, double host_room, double cache_room, bool hx,
               bool cold_view) const {
    if (u + 1 >= N || tables.empty()) return 0;
    int b = 0, r = 0, p = 0;
    if (open >= 0) {
      const double buckets = std::floor(room / q[open]);
      if (buckets > full[open]) return 0;  // more room than the table covers (a returning tied unit's)
      b = static_cast<int>(std::max(0.0, buckets));
      if (open == 0) r = reserve_up(std::ceil(gt / q[0]));
      p = pe < 0 ? 0 : pe == open ? 1 : 2;
    }
    const int next = u + 1;
    const int sv = next >= tie_from && next <= tie_to ? tie_class(sig, open) : 0;
    const size_t n = tables.size(), L = length(open + 1);
    const float* v = &packed[row(next, open + 1, p, r, sv * n) + b];
    double best = 0;
    for (size_t k = 0; k < n; ++k) {
      if (cold_view && tables[k].kappa > 0) continue;
      best = std::max(best, v[k * L] - credit(tables[k], next, host_room, cache_room, hx));
    }
    return best;
  }
  // Every unit, from the start (no GPU in use, the whole host room).
  double root(double host_room, double cache_room, bool cold_view = false) const {
    double best = 0;  // unit 0, no GPU in use, class 0
    for (size_t k = 0; k < tables.size(); ++k) {
      if (cold_view && tables[k].kappa > 0) continue;
      best = std::max(best, packed[row(0, 0, 0, 0, k)] - credit(tables[k], 0, host_room, cache_room, false));
    }
    return best;
  }
};

// One choice's part of a bound-table row: a[b] = min(a[b], t + next[b]) (the DP's inner loop).
void relax_row(float* __restrict a, const float* __restrict next, float t, int n) {
  for (int b = 0; b < n; ++b) a[b] = std::min(a[b], t + next[b]);
}
// A finished row scaled below its exact values (see make_room_bound).
void round_down_row(float* a, size_t n) {
  for (size_t b = 0; b < n; ++b) a[b] *= a[b] >= 0 ? 1 - 0x1p-22f : 1 + 0x1p-22f;
}

// The distinct positive values, the most frequent first (ties: the first met first).
std::vector<double> by_frequency(const std::vector<double>& values) {
  std::vector<std::pair<int, double>> count;  // (occurrences, value)
  for (double v : values) {
    if (!(v > 0)) continue;
    auto it = std::find_if(count.begin(), count.end(), [&](const auto& c) { return c.second == v; });
    if (it == count.end()) {
      count.push_back({1, v});
    } else {
      ++it->first;
    }
  }
  std::stable_sort(count.begin(), count.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<double> out;
  for (const auto& c : count) out.push_back(c.second);
  return out;
}

// The bucket size (bytes) for a room of `room` bytes in at most `k` buckets that loses least when
// each item (bytes, how many at most) is rounded down to whole buckets, and that loss (the
// smaller bucket on a tie).
std::pair<double, double> bucket_size(double room, int k, const std::vector<std::pair<double, double>>& items) {
  auto loss = [&](double q) {
    double l = 0;
    for (const auto& [bytes, count] : items) l += count * (bytes - q * std::floor(bytes / q));
    return l;
  };
  double best_q = room / k, best = loss(best_q);
  for (const auto& [bytes, count] : items) {
    if (count <= 0) continue;
    // (An item far larger than the room would try millions: 2k buckets are more than it needs.)
    for (int j = 1; j <= 2 * k && bytes / j >= room / k; ++j) {  // the item a whole number of buckets
      // (A hair under bytes / j, so that bytes / q is not rounded to just under j.)
      const double q = bytes / j * (1 - 1e-12), l = loss(q);
      if (l < best || (l == best && q < best_q)) {
        best = l;
        best_q = q;
      }
    }
  }
  return {best_q, best};
}

// Buckets the fine bound may spread over the GPUs where sparse layers split, so that the part
// that stays of a split layer takes one or two of them. (Only the resident and split choices on
// the GPU in use run along a row: a table of 8192 / GPUs buckets a GPU costs little more than one
// of 64 did. On the generated set, 1024 -> 8192 took the MoE results proven optimal from 81 to
// 88 of 121, at the same search times.)
constexpr double kSplitBuckets = 8192;

RoomBound make_room_bound(const Tables& T, Mode mode, const OptimalOptions& opt, bool warm, bool allow_disk,
                          int buckets, int buckets0) {
  RoomBound B;
  const int N = T.units, G = T.gpus, S = G + 1, K = buckets;
  B.N = N;
  B.G = G;
  const bool in_place = opt.allow_in_place || G == 0;
  const bool stream = G > 0 && mode != Mode::kNone;
  const bool any = mode == Mode::kAny;  // the union of the modes: a bound for each of them
  const UnitChoice s_ram = mode == Mode::kPrefetch ? UnitChoice::kStreamPrefetch : UnitChoice::kStreamAccelerate;
  const UnitChoice s_disk =
      mode == Mode::kPrefetch ? UnitChoice::kStreamPrefetchDisk : UnitChoice::kStreamAccelerateDisk;
  // The streaming kinds (RAM, disk) this bound offers.
  std::vector<std::pair<UnitChoice, UnitChoice>> kinds;
  if (stream) kinds.push_back({s_ram, s_disk});
  if (any) kinds.push_back({UnitChoice::kStreamPrefetch, UnitChoice::kStreamPrefetchDisk});
  const bool unit0_rule = stream && !any;  // a streaming placement keeps unit 0 resident on GPU 0
  const UnitChoice d_in = UnitChoice::kInPlaceDisk;
  // Expert-aware splits (not in a placement that streams).
  const bool split = G > 0 && opt.allow_in_place && (mode == Mode::kNone || mode == Mode::kAny);
  auto bytes_res = [&](int u) { return T.weights[u] + std::min(T.kv_p[u], T.kv_d[u]) + T.logits[u]; };
  // Buckets: sized so that what rounding down loses on the commonest units is least — a decoder
  // layer resident (then a whole number of buckets) and, on GPU 0 when units stream to it, a
  // streamed layer's KV cache, which adds up over many layers; at most `buckets` per GPU, or
  // `buckets0` on GPU 0 where that loses at least a tenth of a layer less.
  std::vector<double> values, kv_values;
  for (int u = 0; u < N; ++u) {
    if (!T.has_ops[u]) continue;
    values.push_back(bytes_res(u));
    kv_values.push_back(bytes_res(u) - T.weights[u]);
  }
  const std::vector<double> sizes = by_frequency(values);
  const double common = sizes.empty() ? 0.0 : sizes.front();
  int n_common = 0;
  for (double v : values) n_common += v == common ? 1 : 0;
  std::vector<double> split_values;  // what stays on a GPU of a split layer
  for (int u = 0; u < N && split; ++u) {
    if (T.split_node[u] >= 0) split_values.push_back(bytes_res(u) - T.split_weights[u]);
  }
  const std::vector<double> split_sizes = by_frequency(split_values);
  const std::vector<double> kv_sizes = by_frequency(kv_values);
  const double kv_common = kv_sizes.empty() ? 0.0 : kv_sizes.front();
  for (int g = 0; g < G; ++g) {
    const double room = std::max(1.0, T.gpu_cap[g] - T.gpu_ctx[g] - std::max(T.ws_p, T.ws_d));
    std::vector<std::pair<double, double>> items;  // (bytes, how many at most)
    // (A GPU too small for one such unit still sizes its buckets by it: rounded down to a whole
    // number of them, a unit slightly larger than the room would otherwise fit.)
    if (common > 0) items.push_back({common, std::max(1.0, std::min<double>(n_common, std::floor(room / common)))});
    if (g == 0 && stream && kv_common > 0)
      items.push_back({kv_common, std::min<double>(n_common, std::floor(room / kv_common))});
    // The other units resident (an embedding, a head: large, and rounding down loses up to a
    // bucket on each) count in the bucket's size, not in whether GPU 0 takes more buckets.
    std::vector<std::pair<double, double>> all = items;
    for (size_t i = 1; i < sizes.size(); ++i) {
      int count = 0;
      for (double v : values) count += v == sizes[i] ? 1 : 0;
      const double fit = std::min<double>(count, std::floor(room / sizes[i]));
      if (fit > 0) all.push_back({sizes[i], fit});
    }
    for (double v : split_sizes) {
      const double count = static_cast<double>(std::count(split_values.begin(), split_values.end(), v));
      const double fit = std::min(count, std::floor(room / v));
      if (fit > 0) all.push_back({v, fit});
    }
    // What stays of a split layer on a GPU is small (a twentieth of a Qwen3 layer): in buckets
    // larger than it, the fine bound would let split layers take no room at all.
    int Kg = K;
    if (K >= 64 && !split_sizes.empty()) {
      Kg = static_cast<int>(std::clamp(2 * std::ceil(room / split_sizes.front()), static_cast<double>(K),
                                       std::max(static_cast<double>(K), kSplitBuckets / G)));
    }
    double q = bucket_size(room, Kg, all).first;
    if (g == 0 && buckets0 > Kg &&
        bucket_size(room, Kg, items).second - bucket_size(room, buckets0, items).second >= 0.1 * common) {
      q = bucket_size(room, buckets0, all).first;
    }
    B.q.push_back(q);
    B.full.push_back(static_cast<int>(std::floor(room / q)));
  }
  auto own = [&](int u, UnitChoice c) -> const Tables::OwnStream& { return T.own[u][static_cast<int>(c)]; };
  auto transient = [&](int u, UnitChoice c) {
    const Tables::OwnStream& o = own(u, c);
    return is_prefetch(c) && o.segment > 0 ? std::max(o.leaf, 2.0 * o.segment) : o.leaf;
  };
  // Representable transient reservations: 0 and the most common streamed transients.
  B.reserved = {0};
  if (stream) {
    values.clear();
    for (int u = 0; u < N; ++u) {
      if (!T.has_ops[u]) continue;
      for (const auto& k : kinds) values.push_back(B.buckets(transient(u, k.first), 0));
    }
    for (double tb : by_frequency(values)) {
      if (B.reserved.size() < RoomBound::kMaxReserved) B.reserved.push_back(tb);
    }
    std::sort(B.reserved.begin(), B.reserved.end());
  }
  B.R = static_cast<int>(B.reserved.size());
  // The previous operator's device: p = 0 CPU, 1 the GPU in use, 2 another GPU (priced at the
  // cheapest such GPU, and a prefetched copy hidden behind the slowest one: a relaxation).
  auto hand = [&](int u, int open, int p, int exec) {
    if (T.prev_ops[u] < 0) return 0.0;
    if (p == 0) return exec == -1 ? 0.0 : T.trans[exec + 1];
    if (p == 1) return exec == open ? 0.0 : T.trans[(open + 1) * S + exec + 1];
    double m = kInf;
    for (int g = 0; g < G; ++g) {
      if (g != open) m = std::min(m, g == exec ? 0.0 : T.trans[(g + 1) * S + exec + 1]);
    }
    return std::isfinite(m) ? m : 0.0;
  };
  auto streamed = [&](int u, UnitChoice c, int open, int p) {
    const Tables::OwnStream& o = own(u, c);
    const double dec = warm ? o.dec_warm : o.dec_cold;
    if (!is_prefetch(c)) return o.cold + T.steps * dec;
    double t = 0;
    const int before = T.prev_ops[u];
    for (size_t k = 0; k < T.phases.size(); ++k) {
      const double s = k == 0 ? o.cold : dec;
      double prev = 0;
      if (before >= 0) {
        if (p == 0) prev = T.comp[before][0][k];
        if (p == 1) prev = T.comp[before][open + 1][k];
        if (p == 2) {
          for (int g = 0; g < G; ++g) {
            if (g != open) prev = std::max(prev, T.comp[before][g + 1][k]);
          }
        }
      }
      t += T.phase_weight[k] * std::max(0.0, s - prev);
    }
    return t;
  };
  auto host_extra = [&](int u) { return T.has_ops[u] ? std::min(T.kv_p[u], T.kv_d[u]) + T.logits[u] : 0.0; };
  // A unit's weights (and, in place, its host bytes) in commonest units, rounded down: what the
  // whole-unit prices (nu, kappa; nu_ip) charge it (a commonest unit: 1). Set with the prices.
  auto common_units = [&](int u) {
    if (!(B.w_common > 0)) return 0.0;
    return T.weights[u] == B.w_common ? 1.0 : std::floor(T.weights[u] / B.w_common);
  };
  auto common_split = [&](int u) {  // a split unit's experts, held off the GPU
    if (!(B.w_common > 0)) return 0.0;
    return T.split_weights[u] == B.w_common ? 1.0 : std::floor(T.split_weights[u] / B.w_common);
  };
  auto common_units_ip = [&](int u) {
    if (!(B.ip_common > 0)) return 0.0;
    return T.weights[u] == B.w_common ? 1.0 : std::floor((T.weights[u] + host_extra(u)) / B.ip_common);
  };
  // Host prices: 0, and what RAM saves the commonest unit (a decoder layer, in place and
  // streamed), per byte (mu) or per such unit held in RAM (nu: the host room then holds only
  // whole units of it, which removes the fractional unit a per-byte price credits).
  struct Price {
    double mu, nu, kappa, nu_ip;
  };
  std::vector<Price> prices = {{0.0, 0.0, 0.0, 0.0}};
  if (T.host_binding && allow_disk) {
    values.clear();
    for (int u = 0; u < N; ++u) {
      if (T.has_ops[u]) values.push_back(T.weights[u]);
    }
    const std::vector<double> weights = by_frequency(values);
    int common = -1;
    for (int u = 0; u < N && !weights.empty(); ++u) {
      if (T.has_ops[u] && T.weights[u] == weights.front()) {
        common = u;
        break;
      }
    }
    if (common >= 0) {
      B.w_common = T.weights[common];
      // With split layers, the commonest routed experts module when smaller: a unit of at least
      // that many bytes then counts 1 (a whole layer, or the experts of a split one).
      int split_common = -1;  // a split unit whose experts are the commonest
      if (!split_sizes.empty()) {
        std::vector<double> sw;
        for (int u = 0; u < N; ++u) {
          if (T.split_node[u] >= 0) sw.push_back(T.split_weights[u]);
        }
        const double experts = by_frequency(sw).front();
        for (int u = 0; u < N && split_common < 0; ++u) {
          if (T.split_node[u] >= 0 && T.split_weights[u] == experts) split_common = u;
        }
        B.w_common = std::min(B.w_common, experts);
      }
      std::vector<double> mus;
      auto add = [&](double x) {
        if (x > 0 && std::isfinite(x) &&
            std::none_of(mus.begin(), mus.end(), [&](double y) { return std::abs(x - y) <= 1e-3 * x; }))
          mus.push_back(x);
      };
      const Tables::OwnStream& o = own(common, d_in);
      // What disk costs a unit more than RAM, per byte: a whole layer in place, or where layers
      // split, their experts in place (the cheaper: a price above it makes the bound pay disk).
      if (in_place && split_common >= 0) {
        const Tables::OwnStream& os = T.split_disk[split_common];
        add((os.cold + T.steps * (warm ? os.dec_warm : os.dec_cold)) / T.split_weights[split_common]);
      } else if (in_place) {
        add((o.cold + T.steps * (warm ? o.dec_warm : o.dec_cold)) / B.w_common);
      }
      if (stream && mus.empty()) add((streamed(common, s_disk, 0, 0) - streamed(common, s_ram, 0, 0)) / B.w_common);
      for (double mu : mus) prices.push_back({mu, 0.0, 0.0, 0.0});
      for (double mu : mus) prices.push_back({0.0, mu * B.w_common, 0.0, 0.0});
      // Per such unit computed in place from RAM (nu_ip): each takes its weights and at least the
      // least KV cache of such units, and the host workspace is taken once one runs there.
      if (in_place) {
        double least = kInf;
        for (int u = 0; u < N; ++u) {
          if (T.has_ops[u] && (T.weights[u] == B.w_common || (!split_sizes.empty() && common_units(u) == 1)))
            least = std::min(least, host_extra(u));
        }
        B.ip_common = B.w_common + least;
        B.ws_host = std::max(T.ws_p, T.ws_d);
        prices.push_back({0.0, 0.0, 0.0, o.cold + T.steps * (warm ? o.dec_warm : o.dec_cold)});
      }
    }
  }
  // Warm reads need the page cache to hold every weight off the GPUs, so at most
  // floor(cache room / w_common) decoder layers off them: a price far above any time (kappa)
  // per such layer makes a completion that needs more cost more than the incumbent. One column
  // with that price alone: beside it the host prices (time-sized) change nothing the column
  // tells (a column of each had given the generated scenarios the same labels, in 25 % more
  // table values).
  if (warm && B.w_common > 0) {
    double scale = 1;
    for (int u = 0; u < N; ++u) scale += *std::max_element(T.comp_total[u].begin(), T.comp_total[u].end());
    prices.push_back({0.0, 0.0, 1e3 * scale, 0.0});
  }
  const size_t n = prices.size();
  // Where the tie source is stored decides what a tied unit costs: after the source, one
  // column per storage class (0: on a GPU — the tied unit may go back to it for free —,
  // 1: RAM, 2: disk) and price; outside the span from the source to the last tied unit the
  // columns agree.
  int last_target = -1;
  for (int u = 0; u < N; ++u) {
    if (T.tie_source[u] >= 0) last_target = u;
  }
  B.tie_from = T.source >= 0 ? T.source + 1 : N + 1;
  B.tie_to = last_target;
  // Classes: 0 on the GPU in use, 1 RAM, 2 disk, then (from 2 GPUs on) on an earlier GPU — the
  // tied unit then copies the source's tensors wherever it runs (Gemma-3's 2 GB embedding each
  // forward): without that class a tied head on the last GPU looked free.
  const int stored = T.source < 0 ? 1 : allow_disk ? 3 : 2;
  const int earlier = T.source >= 0 && G >= 2 ? stored : -1;
  B.earlier = earlier;
  B.warm = warm;
  const int variants = stored + (earlier >= 0 ? 1 : 0);
  const size_t W = n * variants;  // columns: class * n + price
  B.width = W;
  for (const Price& pr : prices) B.tables.push_back({pr.mu, pr.nu, pr.kappa, pr.nu_ip});
  B.rest_bytes.assign(N + 1, 0.0);
  B.rest_common.assign(N + 1, 0.0);
  B.rest_ip.assign(N + 1, 0.0);
  for (int u = N - 1; u >= 0; --u) {
    B.rest_bytes[u] = B.rest_bytes[u + 1] + T.weights[u] + host_extra(u);
    B.rest_common[u] = B.rest_common[u + 1] + common_units(u);
    B.rest_ip[u] = B.rest_ip[u + 1] + common_units_ip(u);
  }
  // Every cell of units 0..N-1 is written below; only the terminal row (after the last unit)
  // is set here, so the table is never zero-filled in full.
  B.lay_out();
  const size_t unit_size = B.unit_size();
  B.packed = TablePool::acquire(static_cast<size_t>(N + 1) * unit_size);
  std::fill_n(&B.packed[static_cast<size_t>(N) * unit_size], unit_size, 0.0f);
  // The DP runs in floats, and every value it stores is at most the exact one (a bound stays a
  // bound): a choice's time enters rounded down, the sums and minima of a row are taken in
  // float (each sum within 2^-24 relative of exact, above or below), and the finished row is
  // scaled by 1 -+ 2^-22 (then below its exact value by at least 2^-23 relative).
  auto down = [](double x) {
    return x < kInf ? static_cast<float>(x * (x >= 0 ? 1 - 0x1p-22 : 1 + 0x1p-22))
                    : std::numeric_limits<float>::infinity();
  };
  // The semantics resident units run under (the union: each, the cheapest counts).
  std::vector<Semantics> res_sems = {resident_semantics(any ? Mode::kNone : mode, in_place)};
  if (any) {
    res_sems.push_back(Semantics::kAccelerate);
    res_sems.push_back(Semantics::kPrefetch);
  }
  // A tied unit's time with its tie source stored at `tie` (price_unit, the simulator's pricing),
  // the previous operator of class p (the cheapest GPU for "another GPU").
  auto tied_time = [&](int u, UnitChoice c, int exec, int tie, int open, int p) {
    const int storage = from_disk(c) ? kDisk : c == UnitChoice::kResident ? exec : kRam;
    double m = kInf;
    for (const Semantics rs : res_sems) {
      const Semantics sem = c == UnitChoice::kResident ? rs
                            : is_stream(c) ? (is_prefetch(c) ? Semantics::kPrefetch : Semantics::kAccelerate)
                                           : Semantics::kInPlace;
      if (p < 2) {
        m = std::min(m, price_unit(T, u, c, exec, storage, tie, p == 0 ? -1 : open, sem, warm).time);
        continue;
      }
      for (int g = 0; g < G; ++g) {
        if (g != open) m = std::min(m, price_unit(T, u, c, exec, storage, tie, g, sem, warm).time);
      }
    }
    return m;
  };
  // One choice of a unit: its time per column, what it takes from the GPU in use, and the
  // storage class the units after it see (-1: the same as this unit's column).
  struct Choice {
    std::vector<double> time;
    int item = 0, tau = -1, p = 0, cls = -1;
    bool fresh = false;  // resident on a later GPU: `gpu` opens, `item` taken from it
    int gpu = -1;
    UnitChoice uc = UnitChoice::kResident;
    bool back = false;      // resident back on the GPU of its tie source
    const char* what = "";  // for DMAP_SEARCH_TRACE=2
  };
  std::vector<Choice> pool;  // reused: choices are pool[0, used)
  size_t used = 0;
  std::vector<double> fresh(W);
  auto add = [&](int item, int tau, int p, int cls) -> Choice& {
    if (used == pool.size()) pool.emplace_back();
    Choice& c = pool[used++];
    c.time.assign(W, kInf);
    c.fresh = false;
    c.gpu = -1;
    c.uc = UnitChoice::kResident;
    c.back = false;
    c.what = "";
    c.item = item;
    c.tau = tau;
    c.p = p;
    c.cls = cls;
    return c;
  };
  // The choices of unit u with GPU o - 1 in use and the previous operator of class p: pool[0, used).
  auto choices_for = [&](int u, int o, int p) {
    const bool ops = T.has_ops[u];
    const bool tied = T.tie_source[u] >= 0;
    const bool is_source = u == T.source;
    const int last_gpu = u == 0 && unit0_rule ? 0 : G - 1;  // streaming: unit 0 resident on GPU 0
    const double off = common_units(u), off_ip = common_units_ip(u);
    const double off_pc = ops ? off : 0.0;  // the page cache holds weights that are read
    const int open = o - 1;
    // The previous-operator class after this unit when it executes on `exec` with `open2` in use.
    auto next_p = [&](int exec, int open2) {
      if (!ops) return p == 1 && open2 != open ? 2 : p;
      return exec < 0 ? 0 : exec == open2 ? 1 : 2;
    };
    // Per class: the time of a choice executing on `exec` (-1: the CPU), a tied unit priced
    // from where its source is (on the GPU in use: as if beside it when it runs there; on an
    // earlier GPU: the cheapest such).
    auto per_class = [&](Choice& c, int exec, auto&& plain, auto&& priced, auto&& charge) {
      for (int sv = 0; sv < variants; ++sv) {
        double t = 0;
        if (!tied) {
          t = plain();
        } else if (sv == 0) {
          t = open < 0 || exec == open ? plain() : priced(open);
        } else if (sv == earlier) {
          t = kInf;
          for (int g = 0; g < open; ++g) t = std::min(t, priced(g));
        } else {
          t = priced(sv == 1 ? kRam : kDisk);
        }
        for (size_t k = 0; k < n; ++k) c.time[sv * n + k] = t + charge(k);
      }
    };
    auto none = [](size_t) { return 0.0; };
    used = 0;
    for (int g = std::max(0, open); g <= last_gpu; ++g) {  // resident
      Choice& c = add(B.buckets(bytes_res(u), g), -1, next_p(g, g), is_source ? 0 : -1);
      c.fresh = g != open;
      c.gpu = g;
      c.what = "resident";
      per_class(
          c, g, [&] { return T.comp_total[u][g + 1] + (ops ? hand(u, open, p, g) : 0.0); },
          [&](int tie) { return tied_time(u, UnitChoice::kResident, g, tie, open, p); }, none);
    }
    if (split && T.split_node[u] >= 0) {  // resident, its routed experts in place on the CPU
      const double kept = bytes_res(u) - T.split_weights[u];
      const int exec_last = T.split_last_cpu[u] ? -1 : 0;
      for (int g = std::max(0, open); g < G; ++g) {
        for (bool on_disk : {false, true}) {
          if (on_disk && !allow_disk) continue;
          Choice& c = add(B.buckets(kept, g), -1, next_p(exec_last < 0 ? -1 : g, g), -1);
          c.fresh = g != open;
          c.gpu = g;
          c.uc = on_disk ? UnitChoice::kSplitExpertsDisk : UnitChoice::kSplitExpertsCpu;
          c.what = on_disk ? "resident, experts in place from disk" : "resident, experts in place from RAM";
          const Tables::OwnStream& od = T.split_disk[u];
          const double t = T.split_time[u][g] + hand(u, open, p, g) +
                           (on_disk ? od.cold + T.steps * (warm ? od.dec_warm : od.dec_cold) : 0.0);
          // (The experts in RAM are charged per byte (mu) and as units of the commonest size
          // (nu), off the GPU (kappa); no KV cache or workspace: less than they take, as a bound may.)
          const double units = common_split(u);
          per_class(
              c, g, [&] { return t; }, [&](int) { return t; },
              [&](size_t k) {
                return prices[k].kappa * units +
                       (on_disk ? 0.0 : prices[k].mu * T.split_weights[u] + prices[k].nu * units);
              });
        }
      }
    }
    if (tied && open >= 0 && !(u == 0 && unit0_rule)) {  // back where its source is (class 0): anywhere, for free
      for (int side = 0; side < 2; ++side) {
        double t = kInf;
        // (The source is on the GPU in use or, GPUs being used in order, on an earlier one.)
        for (int g = 0; g <= open; ++g) {
          if ((g == open) == (side == 0)) t = std::min(t, T.comp_total[u][g + 1] + (ops ? hand(u, open, p, g) : 0.0));
        }
        if (!std::isfinite(t)) continue;
        Choice& c = add(0, -1, next_p(side == 0 ? open : (open == 0 ? 1 : 0), open), -1);
        c.what = "back on its source's GPU";
        c.back = true;
        // Class 0 only (an earlier GPU: that class, where there is one).
        const int cls = side == 1 && earlier >= 0 ? earlier : 0;
        std::fill_n(c.time.begin() + static_cast<long>(cls * n), n, t);
      }
    }
    if (stream && open == 0 && u > 0) {
      const int item = B.buckets(bytes_res(u) - T.weights[u], 0);
      const double base = T.comp_total[u][1] + (ops ? hand(u, open, p, 0) : 0.0);
      for (const auto& kind : kinds) {
        const int tau_index = B.reserve_down(B.buckets(transient(u, kind.first), 0));
        for (bool on_disk : {false, true}) {
          if (on_disk && !allow_disk) continue;
          const UnitChoice sc = on_disk ? kind.second : kind.first;
          Choice& c = add(item, tau_index, next_p(0, 0), is_source ? (on_disk ? 2 : 1) : -1);
          c.uc = sc;
          c.what = is_prefetch(sc) ? (on_disk ? "prefetched from disk" : "prefetched from RAM")
                                   : (on_disk ? "streamed from disk" : "streamed from RAM");
          per_class(
              c, 0, [&] { return base + streamed(u, sc, open, p); },
              [&](int tie) { return tied_time(u, sc, 0, tie, open, p); },
              [&](size_t k) {
                return prices[k].kappa * off_pc + (on_disk ? 0.0 : prices[k].mu * T.weights[u] + prices[k].nu * off);
              });
        }
      }
    }
    if (in_place && !(u == 0 && unit0_rule)) {
      const double base = T.comp_total[u][0] + (ops ? hand(u, open, p, -1) : 0.0);
      const Tables::OwnStream& od = own(u, d_in);
      for (bool on_disk : {false, true}) {
        if (on_disk && !allow_disk) continue;
        const UnitChoice ic = on_disk ? d_in : UnitChoice::kInPlaceCpu;
        Choice& c = add(0, -1, next_p(-1, open), is_source ? (on_disk ? 2 : 1) : -1);
        c.uc = ic;
        c.what = on_disk ? "in place from disk" : "in place from RAM";
        per_class(
            c, -1, [&] { return base + (on_disk ? od.cold + T.steps * (warm ? od.dec_warm : od.dec_cold) : 0.0); },
            [&](int tie) { return tied_time(u, ic, -1, tie, open, p); },
            [&](size_t k) {
              return prices[k].mu * host_extra(u) + prices[k].kappa * off_pc +
                     (on_disk ? 0.0 : prices[k].mu * T.weights[u] + prices[k].nu * off + prices[k].nu_ip * off_ip);
            });
      }
    }
  };
  // Column j of a choice's next row: its own, or the storage class the choice sets; once the
  // source is placed, opening a later GPU leaves a source on the GPU in use on an earlier one.
  auto column = [&](int u, const Choice& c, size_t j) {
    if (c.cls >= 0) return c.cls * n + j % n;
    return c.fresh && earlier >= 0 && u >= B.tie_from && j < n ? earlier * n + j : j;
  };
  for (int u = N - 1; u >= 0; --u) {
    for (int o = 0; o <= G; ++o) {
      const int L = B.length(o), rmax = B.reservations(o), pmax = o == 0 ? 1 : 3;
      for (int p = 0; p < pmax; ++p) {
        if (T.free_unit[u]) {
          std::copy_n(&B.packed[B.row(u + 1, o, p, 0, 0)], static_cast<size_t>(rmax) * W * L,
                      &B.packed[B.row(u, o, p, 0, 0)]);
          continue;
        }
        choices_for(u, o, p);
        const auto choices = std::span<const Choice>(pool.data(), used);
        // Resident on a later GPU: the same whatever is left on this one.
        std::fill(fresh.begin(), fresh.end(), kInf);
        for (const Choice& c : choices) {
          if (!c.fresh) continue;
          const int b2 = B.full[c.gpu] - c.item;
          if (b2 < 0) continue;
          for (size_t j = 0; j < W; ++j) {
            fresh[j] = std::min(fresh[j], c.time[j] + B.packed[B.row(u + 1, c.gpu + 1, c.p, 0, column(u, c, j)) + b2]);
          }
        }
        for (int r = 0; r < rmax; ++r) {
          float* cell = &B.packed[B.row(u, o, p, r, 0)];  // its W rows of L values, one after another
          for (size_t j = 0; j < W; ++j) std::fill_n(cell + j * L, L, down(fresh[j]));
          for (const Choice& c : choices) {
            if (c.fresh) continue;
            const int r2 = c.tau >= 0 ? std::max(r, c.tau) : r;
            const int shift = c.item + static_cast<int>(B.reserved[r2] - B.reserved[r]);  // b - shift left after it
            if (shift >= L) continue;
            for (size_t j = 0; j < W; ++j) {
              if (!(c.time[j] < kInf)) continue;
              relax_row(cell + j * L + shift, &B.packed[B.row(u + 1, o, c.p, r2, column(u, c, j))], down(c.time[j]),
                        L - shift);
            }
          }
          round_down_row(cell, W * L);
        }
      }
    }
  }
  // The relaxation's own optimum from the root, for its best prices: a placement (which may
  // break the order rules or not fit: the search repairs it into an incumbent), printed with
  // DMAP_SEARCH_TRACE=2.
  const char* tr = std::getenv("DMAP_SEARCH_TRACE");
  const bool print = tr && std::string(tr) == "2";
  {
    const double host = T.host_binding ? T.host_cap : 0.0;
    size_t k = 0;
    double root = -kInf;
    for (size_t j = 0; j < n; ++j) {
      const double x = B.packed[B.row(0, 0, 0, 0, j)] - B.credit(B.tables[j], 0, host, T.cache_cap, false);
      if (print) {
        std::fprintf(stderr, "  column %zu (mu %.3g nu %.3g nu_ip %.3g kappa %.3g): %.6g - credit %.6g = %.6g s\n", j,
                     B.tables[j].mu, B.tables[j].nu, B.tables[j].nu_ip, B.tables[j].kappa,
                     B.packed[B.row(0, 0, 0, 0, j)], B.credit(B.tables[j], 0, host, T.cache_cap, false), x);
      }
      if (x > root) root = x, k = j;
    }
    const RoomBound::Table& t = B.tables[k];
    if (print) {
      std::fprintf(
          stderr,
          "  relaxed optimum %.6g s (prices mu %.3g nu %.3g nu_ip %.3g kappa %.3g), buckets of GPU 0: %d of %.3g MB\n",
          root, t.mu, t.nu, t.nu_ip, t.kappa, G > 0 ? B.full[0] : 0, G > 0 ? B.q[0] / 1e6 : 0.0);
    }
    Placement& rp = B.relaxed;
    rp.choice.assign(N, UnitChoice::kInPlaceCpu);
    rp.gpu.assign(N, -1);
    int o = 0, b = 0, r = 0, p = 0, sv = 0;
    bool whole = true;
    for (int u = 0; u < N; ++u) {
      if (T.free_unit[u]) {
        if (u > 0) rp.choice[u] = free_choice(rp.choice[u - 1]), rp.gpu[u] = rp.gpu[u - 1];
        continue;
      }
      choices_for(u, o, p);
      const Choice* arg = nullptr;
      double v = kInf;
      int b_next = 0, r_next = 0;
      for (const Choice& c : std::span<const Choice>(pool.data(), used)) {
        const int r2 = c.fresh ? 0 : c.tau >= 0 ? std::max(r, c.tau) : r;
        const int b2 = c.fresh ? B.full[c.gpu] - c.item : b - c.item - static_cast<int>(B.reserved[r2] - B.reserved[r]);
        if (b2 < 0) continue;
        const int col = sv * static_cast<int>(n) + static_cast<int>(k);
        const double x = c.time[col] + B.packed[B.row(u + 1, c.fresh ? c.gpu + 1 : o, c.p, r2, column(u, c, col)) + b2];
        if (x < v) v = x, arg = &c, b_next = b2, r_next = r2;
      }
      if (!arg) {
        whole = false;
        break;
      }
      if (print) {
        std::fprintf(stderr, "  relaxed unit %d: %s on %d, %.6g s, then %d buckets left\n", u, arg->what,
                     arg->fresh ? arg->gpu : o - 1, arg->time[sv * n + k], b_next);
      }
      rp.choice[u] = arg->uc;
      if (is_split(arg->uc)) rp.gpu[u] = arg->fresh ? arg->gpu : o - 1;
      if (arg->uc == UnitChoice::kResident) {
        rp.gpu[u] = arg->back ? (T.source >= 0 ? rp.gpu[T.source] : -1) : arg->fresh ? arg->gpu : o - 1;
      }
      if (arg->fresh) o = arg->gpu + 1;
      b = b_next;
      r = r_next;
      p = arg->p;
      sv = static_cast<int>(column(u, *arg, static_cast<size_t>(sv) * n) / n);
    }
    if (!whole) rp = {};
  }
  return B;
}

struct Search {
  const Tables& T;
  const OptimalOptions& opt;
  Mode mode;
  bool warm;
  SearchStats& stats;
  bool allow_disk = false;
  int max_labels = 2048;
  const RoomBound* bound = nullptr;
  double incumbent = kInf;  // the threshold: labels that cannot reach it are dropped
  bool strict = false;      // the threshold is a placement already found: keep only labels that may beat it
  int64_t label_limit = std::numeric_limits<int64_t>::max();  // stats.work() beyond which the pass stops
  mutable bool aborted = false;                               // it stopped there (its result is void)
  mutable double min_beaten = kInf;                           // the least lower bound of a label the threshold dropped
  bool trace_path = false;                                    // print the best placement's bound per unit
  mutable std::vector<char> band_taken{};                     // thin()'s scratch
  struct Rec {
    uint32_t key, index;
    double t;
  };
  mutable std::vector<Rec> order{};  // prune()'s scratch
  mutable std::vector<double> ranks{};
  mutable std::vector<std::pair<double, size_t>> fenwick{};

  // A lower bound on the time of every completion of label L of unit u.
  double lower(int u, const Label& L) const {
    double room = L.open >= 0 ? T.gpu_cap[L.open] - L.gt - std::max(L.gp, L.gd) : 0.0;
    if (L.ret) room += T.tie_reserve;  // reserved for the tied unit, which then adds nothing
    const double host_room = T.host_binding ? std::max(0.0, T.host_cap - std::max(L.hp, L.hd)) : 0.0;
    return L.t +
           bound->lower(u, L.open, room, L.gt, L.pe, L.sig, host_room, T.cache_cap - L.pc, L.hx, bound->warm && !warm);
  }
  bool beaten(int u, const Label& L) const {
    if (!bound || !std::isfinite(incumbent)) return false;
    const double lb = lower(u, L);
    const bool out = strict ? lb >= incumbent * (1 - std::max(1e-9, opt.gap)) : lb > incumbent * (1 + 1e-9);
    if (out) min_beaten = std::min(min_beaten, lb);
    return out;
  }

  bool fits_gpu(const Label& L) const { return L.open < 0 || std::max(L.gp, L.gd) + L.gt <= T.gpu_cap[L.open]; }
  bool fits_host(const Label& L) const {
    return (!T.host_binding || std::max(L.hp, L.hd) <= T.host_cap) && (!warm || L.pc <= T.cache_cap);
  }
  // a dominates b for every completion of the chain (a.t <= b.t checked by the caller).
  bool dominates(const Label& a, const Label& b) const {
    if (a.gp > b.gp || a.gd > b.gd || a.gt > b.gt || (warm && a.pc > b.pc)) return false;
    if (!T.host_binding) return true;
    if (a.hp > b.hp || a.hd > b.hd) return false;
    const double ap = a.hp + (a.hx ? 0 : T.ws_p), bp = b.hp + (b.hx ? 0 : T.ws_p);
    const double ad = a.hd + (a.hx ? 0 : T.ws_d), bd = b.hd + (b.hx ? 0 : T.ws_d);
    return ap <= bp && ad <= bd;
  }

  void host_add(Label& L, int u, bool weights_in_ram, bool computes_here) const {
    if (weights_in_ram) {
      L.hp += T.weights[u];
      L.hd += T.weights[u];
    }
    if (computes_here && T.has_ops[u]) {
      if (!L.hx) {
        L.hp += T.ws_p;
        L.hd += T.ws_d;
        L.hx = 1;
      }
      L.hp += T.kv_p[u] + T.logits[u];
      L.hd += T.kv_d[u] + T.logits[u];
    }
  }

  // Label n's unit resident on GPU g: a later GPU opens, holding its context and workspace.
  void use_gpu(Label& n, int g) const {
    if (g == n.open) return;
    n.open = static_cast<int8_t>(g);
    n.gp = T.gpu_ctx[g] + T.ws_p;
    n.gd = T.gpu_ctx[g] + T.ws_d;
    n.gt = 0;
  }

  // Every label unit u can follow label L (index li of the previous unit) with.
  void expand(int u, const Label& L, int li, std::vector<Label>& out) const {
    const int G = T.gpus;
    const bool is_source = u == T.source && T.source >= 0;
    const bool is_target = T.tie_source[u] >= 0;
    const int tie = is_target ? L.sig : kNoTie;
    const bool any_in_place_possible = opt.allow_in_place || G == 0;
    const Semantics res_sem = resident_semantics(mode, any_in_place_possible);
    auto finish = [&](Label n, int exec, UnitChoice c, int gpu) {
      n.parent = li;
      n.choice = static_cast<int8_t>(c);
      n.gpu = static_cast<int8_t>(gpu);
      if (T.has_ops[u]) n.pe = static_cast<int8_t>(exec);
      if (is_target && T.last_target[u]) {
        n.sig = kNoTie;
        n.ret = 0;
      }
      if (!fits_gpu(n) || !fits_host(n) || beaten(u, n)) return;
      out.push_back(n);
    };
    if (T.free_unit[u]) {  // goes with the unit before it, for free
      Label n = L;
      n.parent = li;
      ++stats.labels;
      out.push_back(n);
      return;
    }
    if (is_target && L.ret) {  // the tied unit returns to the GPU holding its source: reserved there
      Label n = L;
      const UnitPrice p = price_unit(T, u, UnitChoice::kResident, L.sig, L.sig, L.sig, L.pe, res_sem, warm);
      n.t += p.time;
      ++stats.labels;
      finish(n, L.sig, UnitChoice::kResident, L.sig);
      return;
    }
    // A unit with weights and no operators (a vision tower's, no image given) costs nothing
    // wherever it is: it goes to the GPU in use, RAM or disk, not to a later GPU or streamed.
    const bool idle = !T.has_ops[u];
    // Resident on the GPU in use or on a later one.
    if (G > 0 && !(idle && allow_disk && !(u == 0 && mode != Mode::kNone))) {
      const int first = std::max(0, static_cast<int>(L.open));
      const int last = (u == 0 && mode != Mode::kNone) || idle ? first : G - 1;
      for (int g = first; g <= last; ++g) {
        Label n = L;
        use_gpu(n, g);
        const UnitPrice p = price_unit(T, u, UnitChoice::kResident, g, g, tie, L.pe, res_sem, warm);
        n.t += p.time;
        n.gp += T.weights[u] + T.kv_p[u] + T.logits[u];
        n.gd += T.weights[u] + T.kv_d[u] + T.logits[u];
        n.gt = std::max(n.gt, p.transient);
        for (int ret = 0; ret <= (is_source ? 1 : 0); ++ret) {
          Label m = n;
          if (is_source) {
            m.sig = static_cast<int8_t>(g);
            m.ret = static_cast<int8_t>(ret);
            if (ret) {  // reserve the tied units' own bytes on this GPU
              for (int t = u + 1; t < T.units; ++t) {
                if (T.tie_source[t] != u) continue;
                m.gp += T.weights[t] + T.kv_p[t] + T.logits[t];
                m.gd += T.weights[t] + T.kv_d[t] + T.logits[t];
              }
            }
          }
          ++stats.labels;
          finish(m, g, UnitChoice::kResident, g);
        }
      }
    }
    // A sparse layer resident with its routed experts computed in place on the CPU (llama.cpp's
    // split: not in a placement that streams units to a GPU).
    if (G > 0 && T.split_node[u] >= 0 && opt.allow_in_place && mode == Mode::kNone) {
      const double kept = T.weights[u] - T.split_weights[u];
      for (int g = std::max(0, static_cast<int>(L.open)); g < G; ++g) {
        for (bool disk : {false, true}) {
          if (disk && !allow_disk) continue;
          Label n = L;
          use_gpu(n, g);
          n.t += split_price(T, u, g, L.pe, disk, warm);
          n.gp += kept + T.kv_p[u] + T.logits[u];
          n.gd += kept + T.kv_d[u] + T.logits[u];
          if (!disk) {
            n.hp += T.split_weights[u];
            n.hd += T.split_weights[u];
          }
          if (!n.hx) {  // the experts run on the CPU: its workspace
            n.hp += T.ws_p;
            n.hd += T.ws_d;
            n.hx = 1;
          }
          n.pc += T.split_weights[u];
          ++stats.labels;
          finish(n, T.split_last_cpu[u] ? -1 : g, disk ? UnitChoice::kSplitExpertsDisk : UnitChoice::kSplitExpertsCpu,
                 g);
        }
      }
    }
    if (u == 0 && mode != Mode::kNone) return;  // streaming: unit 0 resident on GPU 0
    // Streamed to GPU 0 while it is the GPU in use.
    if (mode != Mode::kNone && L.open == 0 && !idle) {
      for (bool disk : {false, true}) {
        if (disk && !allow_disk) continue;
        const UnitChoice c = mode == Mode::kPrefetch
                                 ? (disk ? UnitChoice::kStreamPrefetchDisk : UnitChoice::kStreamPrefetch)
                                 : (disk ? UnitChoice::kStreamAccelerateDisk : UnitChoice::kStreamAccelerate);
        const Semantics sem = unit_semantics(c, res_sem);
        Label n = L;
        const int storage = disk ? kDisk : kRam;
        const UnitPrice p = price_unit(T, u, c, 0, storage, tie, L.pe, sem, warm);
        n.t += p.time;
        if (T.has_ops[u]) {
          n.gp += T.kv_p[u] + T.logits[u];
          n.gd += T.kv_d[u] + T.logits[u];
          n.gt = std::max(n.gt, p.transient);
        }
        host_add(n, u, !disk, false);
        if (T.has_ops[u]) n.pc += T.weights[u];  // weights never read need no page cache
        if (is_source) n.sig = static_cast<int8_t>(storage);
        ++stats.labels;
        finish(n, 0, c, -1);
      }
    }
    // Computed in place on the CPU (an idle unit: on disk when it may, where it takes nothing).
    if (any_in_place_possible || idle) {
      for (bool disk : {false, true}) {
        if (disk && !allow_disk) continue;
        if (idle && allow_disk && !disk) continue;
        const UnitChoice c = disk ? UnitChoice::kInPlaceDisk : UnitChoice::kInPlaceCpu;
        Label n = L;
        const int storage = disk ? kDisk : kRam;
        const UnitPrice p = price_unit(T, u, c, -1, storage, tie, L.pe, Semantics::kInPlace, warm);
        n.t += p.time;
        host_add(n, u, !disk, true);
        if (T.has_ops[u]) n.pc += T.weights[u];  // weights never read need no page cache
        if (is_source) n.sig = static_cast<int8_t>(storage);
        ++stats.labels;
        finish(n, -1, c, -1);
      }
    }
  }

  // Keeps each state's Pareto front (thinned beyond max_labels).
  // `v` (reordered) -> `out`; both are scratch buffers reused across units.
  void prune(std::vector<Label>& v, std::vector<Label>& out) const {
    // Sorted as small records (state, time, index), not as labels: labels are large.
    order.resize(v.size());
    for (size_t k = 0; k < v.size(); ++k) order[k] = {state_key(v[k]), static_cast<uint32_t>(k), v[k].t};
    std::sort(order.begin(), order.end(), [](const Rec& a, const Rec& b) {
      return a.key != b.key ? a.key < b.key : a.t != b.t ? a.t < b.t : a.index < b.index;
    });
    out.clear();
    // A label is dominated only by one with no more GPU prefill bytes and no more of a second
    // resource (the host prefill peak, else the page cache, else the GPU decode peak): per state, a
    // Fenwick tree over the kept labels' ranks of GPU bytes holds their least second resource,
    // and only when some kept label is no worse in both is the front scanned.
    auto second = [&](const Label& L) { return T.host_binding ? L.hp : warm ? L.pc : L.gd; };
    for (size_t begin = 0; begin < order.size();) {
      size_t end = begin + 1;
      while (end < order.size() && order[end].key == order[begin].key) ++end;
      const size_t start = out.size();
      ranks.clear();
      for (size_t k = begin; k < end; ++k) ranks.push_back(v[order[k].index].gp);
      std::sort(ranks.begin(), ranks.end());
      ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
      fenwick.assign(ranks.size() + 1, {kInf, 0});
      for (size_t k = begin; k < end; ++k) {
        const Label& L = v[order[k].index];
        const size_t r = static_cast<size_t>(std::lower_bound(ranks.begin(), ranks.end(), L.gp) - ranks.begin()) + 1;
        std::pair<double, size_t> least = {kInf, 0};  // (second resource, index in out)
        for (size_t i = r; i > 0; i &= i - 1) least = std::min(least, fenwick[i]);
        stats.compares += 1;
        bool dominated = false;
        if (least.first <= second(L)) {
          // The label holding that least is the likeliest to dominate: tried first.
          dominated = dominates(out[least.second], L);
          size_t m = start;
          for (; m < out.size() && !dominated; ++m) dominated = dominates(out[m], L);
          stats.compares += static_cast<int64_t>(m - start);
        }
        if (dominated) continue;
        const std::pair<double, size_t> mine = {second(L), out.size()};
        out.push_back(L);
        for (size_t i = r; i < fenwick.size(); i += i & (~i + 1)) fenwick[i] = std::min(fenwick[i], mine);
      }
      thin(out, start);
      begin = end;
    }
  }

  // Caps one state's front [start, end) at max_labels: the fastest label per band of the
  // scarcest resource (the front is in order of time).
  void thin(std::vector<Label>& v, size_t start) const {
    const size_t n = v.size() - start;
    stats.max_front = std::max<int64_t>(stats.max_front, static_cast<int64_t>(n));
    const int K = std::max(2, max_labels);
    if (n <= static_cast<size_t>(K)) return;
    stats.thinned = true;
    band_taken.assign(K, 0);
    size_t kept = start;  // the kept labels are compacted in place, in order
    for (size_t i = start; i < v.size(); ++i) {
      const Label& L = v[i];
      double r = L.open >= 0 ? (std::max(L.gp, L.gd) + L.gt) / T.gpu_cap[L.open] : 0.0;
      if (T.host_binding) r = std::max(r, std::max(L.hp, L.hd) / T.host_cap);
      if (warm) r = std::max(r, L.pc / T.cache_cap);
      const int b = std::clamp(static_cast<int>(r * K), 0, K - 1);
      if (band_taken[b]) continue;
      band_taken[b] = 1;
      v[kept++] = L;
    }
    v.resize(kept);
  }

  // The best placement of this run, or an empty one.
  std::optional<Placement> run() const {
    if (T.units == 0) return std::nullopt;
    std::vector<std::vector<Label>> layers(T.units);
    std::vector<Label> made, kept;
    Label start;
    expand(0, start, -1, made);
    prune(made, kept);
    layers[0].assign(kept.begin(), kept.end());
    for (int u = 1; u < T.units; ++u) {
      if (layers[u - 1].empty()) return std::nullopt;
      if (stats.work() > label_limit) {
        aborted = true;
        return std::nullopt;
      }
      made.clear();
      for (int li = 0; li < static_cast<int>(layers[u - 1].size()); ++li) expand(u, layers[u - 1][li], li, made);
      prune(made, kept);
      layers[u].assign(kept.begin(), kept.end());
    }
    const std::vector<Label>& last = layers.back();
    int arg = -1;
    for (int i = 0; i < static_cast<int>(last.size()); ++i) {
      if (arg < 0 || last[i].t < last[arg].t) arg = i;
    }
    if (arg < 0) return std::nullopt;
    Placement p;
    p.choice.resize(T.units);
    p.gpu.resize(T.units);
    for (int u = T.units - 1, i = arg; u >= 0; --u) {
      const Label& L = layers[u][i];
      p.choice[u] = static_cast<UnitChoice>(L.choice);
      p.gpu[u] = on_gpu(p.choice[u]) ? L.gpu : -1;
      i = L.parent;
    }
    if (trace_path && bound) {  // DMAP_SEARCH_TRACE=2: where the bound falls short of this placement
      for (int u = 0, i = arg; u < T.units; ++u) {
        int k = arg;
        for (int v = T.units - 1; v > u; --v) k = layers[v][k].parent;
        const Label& L = layers[u][k];
        std::fprintf(stderr, "  unit %d: choice %d gpu %d, time %.6g + bound %.6g = %.6g\n", u, L.choice, L.gpu, L.t,
                     lower(u, L) - L.t, lower(u, L));
        (void)i;
      }
    }
    // Units without operators and bytes take the placement of the unit before them.
    for (int u = 0; u < T.units; ++u) {
      if (!T.free_unit[u]) continue;
      if (u > 0) {
        p.choice[u] = free_choice(p.choice[u - 1]);
        p.gpu[u] = p.gpu[u - 1];
      }
    }
    return p;
  }
};

Mode mode_of(const Placement& p) {
  for (UnitChoice c : p.choice) {
    if (is_stream(c)) return is_prefetch(c) ? Mode::kPrefetch : Mode::kAccelerate;
  }
  return Mode::kNone;
}

bool any_in_place(const Placement& p) {
  return std::any_of(p.choice.begin(), p.choice.end(), [](UnitChoice c) { return is_in_place(c) || is_split(c); });
}

std::vector<char> free_units(const ModelGraph& g) {
  std::vector<char> f(g.chain.size(), 0);
  std::vector<double> bytes(g.chain.size(), 0);
  const ModuleTree& tree = *g.tree;
  for (int id = 0; id < tree.size(); ++id) {
    const TreeNode& n = tree.node(id);
    if (!n.is_tensor || n.tied_source >= 0 || (n.is_buffer && !n.persistent)) continue;
    const int u = g.chain_of_node[id];
    if (u >= 0) bytes[u] += static_cast<double>(g.tensor_bytes[id]);
  }
  for (size_t u = 0; u < g.chain.size(); ++u) f[u] = g.chain[u].first_op == g.chain[u].end_op && bytes[u] == 0;
  return f;
}

}  // namespace

void placement_map(const ModelGraph& g, const Placement& p, DeviceMap& map, std::vector<Semantics>& per_entry) {
  DMAP_CHECK(p.choice.size() == g.chain.size() && p.gpu.size() == g.chain.size(), "one choice per chain unit");
  map = DeviceMap();
  per_entry.clear();
  const Semantics res = resident_semantics(mode_of(p), any_in_place(p));
  const ModuleTree& tree = *g.tree;
  for (size_t u = 0; u < g.chain.size(); ++u) {
    const UnitChoice c = p.choice[u];
    const int node = g.chain[u].node;
    if (is_split(c)) {  // the layer's children, its MoE block's one by one (as --n-cpu-moe's row)
      const int x = split_experts(g, static_cast<int>(u));
      DMAP_CHECK(x >= 0, "a split placement of a unit that does not split: " + tree.node(node).name);
      const int block = tree.node(x).parent;
      const Device d = Device::gpu(p.gpu[u]);
      for (int child : tree.node(node).children) {
        if (child != block) {
          map.assign(tree.node(child).name, d);
          per_entry.push_back(res);
          continue;
        }
        for (int part : tree.node(block).children) {
          const bool experts = part == x;
          map.assign(tree.node(part).name, experts ? (from_disk(c) ? Device::disk() : Device::cpu()) : d);
          per_entry.push_back(experts ? Semantics::kInPlace : res);
        }
      }
      continue;
    }
    Device d = c == UnitChoice::kResident ? Device::gpu(p.gpu[u]) : (from_disk(c) ? Device::disk() : Device::cpu());
    map.assign(tree.node(node).name, d);
    per_entry.push_back(unit_semantics(c, res));
  }
}

std::string placement_rule_broken(const ModelGraph& g, const Hardware& hw, const Placement& p,
                                  const OptimalOptions& options) {
  const int units = static_cast<int>(g.chain.size());
  const int G = static_cast<int>(hw.gpus.size());
  if (static_cast<int>(p.choice.size()) != units || static_cast<int>(p.gpu.size()) != units)
    return "one choice per unit";
  const std::vector<char> free = free_units(g);
  // Tie sources and targets, as the search sees them.
  std::vector<int> tie_source(units, -1);
  for (int u = 0; u < units; ++u) {
    for (int oi = g.chain[u].first_op; oi < g.chain[u].end_op; ++oi) {
      for (int wt : g.ops[oi].weights) {
        const int su = g.chain_of_node[g.storage_tensor(wt)];
        if (su != u) tie_source[u] = su;
      }
    }
  }
  const Mode mode = mode_of(p);
  int open = -1;
  for (int u = 0; u < units; ++u) {
    if (is_split(p.choice[u]) && split_experts(g, u) < 0) return "a unit split that has no routed experts to split off";
    if (free[u]) continue;
    const UnitChoice c = p.choice[u];
    if (is_split(c)) {
      if (G == 0 || p.gpu[u] < 0 || p.gpu[u] >= G) return "a split unit on a GPU the hardware lacks";
      if (!options.allow_in_place) return "in-place computation the options exclude";
      if (mode != Mode::kNone) return "a split layer beside streamed units";
      if (tie_source[u] >= 0 || std::find(tie_source.begin(), tie_source.end(), u) != tie_source.end())
        return "a split unit reading or holding tied tensors";
      if (p.gpu[u] < open) return "GPUs used out of order";
      open = p.gpu[u];
    } else if (c == UnitChoice::kResident) {
      if (G == 0 || p.gpu[u] < 0 || p.gpu[u] >= G) return "a resident unit on a GPU the hardware lacks";
      const int src = tie_source[u];
      const bool returns = src >= 0 && p.choice[src] == UnitChoice::kResident && p.gpu[src] == p.gpu[u];
      if (p.gpu[u] < open && !returns) return "GPUs used out of order";
      if (!returns) open = std::max(open, p.gpu[u]);
    } else if (is_stream(c)) {
      if (G == 0) return "streaming without a GPU";
      if (is_prefetch(c) ? !options.allow_prefetch : !options.allow_accelerate)
        return "a semantics the options exclude";
      if ((mode == Mode::kPrefetch) != is_prefetch(c)) return "two streaming semantics in one placement";
      if (open != 0) return "streaming while GPU 0 is not the GPU in use";
    } else if (!(options.allow_in_place || G == 0)) {
      return "in-place computation the options exclude";
    }
    if (from_disk(c) && !options.allow_disk) return "disk the options exclude";
    if (p.gpu[u] != -1 && !on_gpu(c)) return "a GPU given to a unit that is not resident";
  }
  if (mode != Mode::kNone && (p.choice[0] != UnitChoice::kResident || p.gpu[0] != 0)) {
    return "streaming without unit 0 resident on GPU 0";
  }
  return "";
}

double placement_objective(const CostModel& cm, const Hardware& hw, const Placement& p, const OptimalOptions& options) {
  if (!placement_rule_broken(cm.graph(), hw, p, options).empty()) return kInf;
  DeviceMap map;
  std::vector<Semantics> sem;
  placement_map(cm.graph(), p, map, sem);
  const Prediction pr = simulate(cm, hw, map, sem);
  return pr.feasible ? pr.total_s : kInf;
}

std::optional<Placement> placement_of(const CostModel& cm, const Hardware& hw, const DeviceMap& map,
                                      const std::vector<Semantics>& per_entry, const OptimalOptions& options) {
  const ModelGraph& g = cm.graph();
  const ModuleTree& tree = *g.tree;
  const auto items = map.items();
  if (per_entry.size() != items.size()) return std::nullopt;
  std::unordered_map<std::string, int> entry_index;
  for (size_t i = 0; i < items.size(); ++i) entry_index[items[i].first] = static_cast<int>(i);
  std::vector<int> entry_of(tree.size(), -1);
  for (int id = 0; id < tree.size(); ++id) {
    auto it = entry_index.find(tree.node(id).name);
    if (it != entry_index.end()) {
      entry_of[id] = it->second;
    } else if (tree.node(id).parent >= 0) {
      entry_of[id] = entry_of[tree.node(id).parent];
    }
  }
  bool any_gpu = false;
  std::vector<char> inside(g.chain.size(), 0);  // units with entries strictly inside them
  for (const auto& [n, d] : items) {
    any_gpu = any_gpu || d.is_gpu();
    // A unit is not split, except a sparse layer in the split form (below).
    const int id = tree.find(n);
    if (id >= 0 && g.chain_of_node[id] >= 0 && g.chain[g.chain_of_node[id]].node != id) {
      if (split_experts(g, g.chain_of_node[id]) < 0) return std::nullopt;
      inside[g.chain_of_node[id]] = 1;
    }
  }
  auto own_entry = [&](int id) {
    const int e = entry_of[id];
    return e >= 0 && items[e].first == tree.node(id).name ? e : -1;
  };
  // A split unit: the layer's children and its MoE block's each an entry, all on one GPU but the
  // routed experts, in RAM or on disk and computed in place.
  auto split_of = [&](int u, int& gpu) -> std::optional<UnitChoice> {
    const int node = g.chain[u].node, x = split_experts(g, u), block = tree.node(x).parent;
    if (own_entry(node) >= 0 || own_entry(block) >= 0) return std::nullopt;
    std::optional<UnitChoice> c;
    gpu = -1;
    std::vector<int> parts;
    for (int child : tree.node(node).children) {
      if (child != block) parts.push_back(child);
    }
    for (int part : tree.node(block).children) parts.push_back(part);
    for (int part : parts) {
      const int e = own_entry(part);
      if (e < 0) return std::nullopt;
      const Device d = items[e].second;
      if (part == x) {
        if (d.is_gpu() || per_entry[e] != Semantics::kInPlace) return std::nullopt;
        c = d.kind == Device::Kind::kDisk ? UnitChoice::kSplitExpertsDisk : UnitChoice::kSplitExpertsCpu;
      } else if (!d.is_gpu() || (gpu >= 0 && d.index != gpu)) {
        return std::nullopt;
      } else {
        gpu = d.index;
      }
    }
    return gpu >= 0 ? c : std::nullopt;
  };
  const std::vector<char> free = free_units(g);
  Placement p;
  for (size_t u = 0; u < g.chain.size(); ++u) {
    const int node = g.chain[u].node;
    if (inside[u]) {
      int gpu = -1;
      const std::optional<UnitChoice> c = split_of(static_cast<int>(u), gpu);
      if (!c) return std::nullopt;
      p.choice.push_back(*c);
      p.gpu.push_back(gpu);
      continue;
    }
    const int e = entry_of[node];
    if (e < 0) return std::nullopt;
    const Device d = items[e].second;
    const Semantics s = per_entry[e];
    if (s == Semantics::kRoutedPrefetch) return std::nullopt;  // (dmap's proposal: not searched)
    UnitChoice c;
    int gpu = -1;
    if (d.is_gpu()) {
      c = UnitChoice::kResident;
      gpu = d.index;
    } else if (d.kind == Device::Kind::kCpu || d.kind == Device::Kind::kDisk) {
      const bool disk = d.kind == Device::Kind::kDisk;
      if (any_gpu && s == Semantics::kAccelerate) {
        c = disk ? UnitChoice::kStreamAccelerateDisk : UnitChoice::kStreamAccelerate;
      } else if (any_gpu && s == Semantics::kPrefetch) {
        c = disk ? UnitChoice::kStreamPrefetchDisk : UnitChoice::kStreamPrefetch;
      } else {
        c = disk ? UnitChoice::kInPlaceDisk : UnitChoice::kInPlaceCpu;
      }
    } else {
      return std::nullopt;
    }
    if (free[u] && u > 0) {  // placed anywhere at no cost: as the search writes it
      c = free_choice(p.choice[u - 1]);
      gpu = p.gpu[u - 1];
    }
    p.choice.push_back(c);
    p.gpu.push_back(gpu);
  }
  if (!placement_rule_broken(g, hw, p, options).empty()) return std::nullopt;
  // The same prediction: the semantics of resident entries (tied copies) must agree too.
  const Prediction given = simulate(cm, hw, map, per_entry);
  DeviceMap pm;
  std::vector<Semantics> ps;
  placement_map(g, p, pm, ps);
  const Prediction mine = simulate(cm, hw, pm, ps);
  if (given.feasible != mine.feasible) return std::nullopt;
  if (std::abs(given.total_s - mine.total_s) > 1e-9 * std::max(1e-12, given.total_s)) return std::nullopt;
  return p;
}

// DMAP_SEARCH_TRACE=1: each phase of the search on stderr (time, labels, bounds), for tuning;
// =2 also each placement a pass finds, unit by unit, with the bound on its completion there.
struct Trace {
  bool on = std::getenv("DMAP_SEARCH_TRACE") != nullptr;
  bool path = on && std::string(std::getenv("DMAP_SEARCH_TRACE")) == "2";
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  template <class... A>
  void operator()(const char* fmt, A... a) const {
    if (!on) return;
    std::fprintf(stderr, "[search %7.2f ms] ",
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    std::fprintf(stderr, fmt, a...);
    std::fprintf(stderr, "\n");
  }
};

// A placement that may break the search space's rules or not fit (the relaxation's optimum)
// made into one that obeys them and fits, or nullopt: streaming in one semantics (the more
// common), unit 0 resident on GPU 0 when streaming, then, while the simulator finds a device
// over its limit, the last units resident on an over-full GPU computed in place from RAM
// (or resident on the next GPU when in-place is excluded), and the last units stored in RAM
// moved to disk when the host is over. At most 8 simulations.
std::optional<Placement> repair(const Tables& T, const OptimalOptions& options, Placement p) {
  const int N = T.units, G = T.gpus;
  if (static_cast<int>(p.choice.size()) != N) return std::nullopt;
  int acc = 0, pre = 0;
  for (int u = 0; u < N; ++u) {
    if (!is_stream(p.choice[u])) continue;
    (is_prefetch(p.choice[u]) ? pre : acc) += 1;
  }
  if (acc > 0 && pre > 0) {
    const bool to_prefetch = pre >= acc ? options.allow_prefetch : !options.allow_accelerate;
    for (UnitChoice& c : p.choice) {
      if (!is_stream(c) || is_prefetch(c) == to_prefetch) continue;
      const bool disk = from_disk(c);
      c = to_prefetch ? (disk ? UnitChoice::kStreamPrefetchDisk : UnitChoice::kStreamPrefetch)
                      : (disk ? UnitChoice::kStreamAccelerateDisk : UnitChoice::kStreamAccelerate);
    }
  }
  if (acc + pre > 0 && G > 0) {
    p.choice[0] = UnitChoice::kResident;
    p.gpu[0] = 0;
  }
  const bool in_place = options.allow_in_place || G == 0;
  for (int round = 0; round < 8; ++round) {
    DeviceMap map;
    std::vector<Semantics> sem;
    placement_map(T.cm.graph(), p, map, sem);
    const Prediction pr = simulate(T.cm, T.hw, map, sem);
    if (pr.feasible) return p;
    bool changed = false;
    for (size_t i = 0; i < pr.memory.size() && i < pr.capacity.size(); ++i) {
      const Device d = pr.memory[i].first;
      double over = static_cast<double>(pr.memory[i].second) - static_cast<double>(pr.capacity[i].second);
      if (!(over > 0)) continue;
      if (d.is_gpu()) {
        const int g = d.index;
        for (int u = N - 1; u >= 0 && over > 0; --u) {
          if (!on_gpu(p.choice[u]) || p.gpu[u] != g || !T.has_ops[u] || T.tie_source[u] >= 0) continue;
          if (u == 0 && acc + pre > 0) break;
          if (in_place) {
            p.choice[u] = UnitChoice::kInPlaceCpu;
            p.gpu[u] = -1;
          } else if (g + 1 < G) {
            p.gpu[u] = g + 1;
          } else {
            break;
          }
          over -= T.weights[u];
          changed = true;
          if (!in_place) break;  // one at a time: the next GPU may overflow in turn
        }
      } else if (d.kind == Device::Kind::kCpu && options.allow_disk) {
        for (int u = N - 1; u >= 0 && over > 0; --u) {
          UnitChoice& c = p.choice[u];
          if (T.free_unit[u] || from_disk(c) || c == UnitChoice::kResident) continue;
          over -= c == UnitChoice::kSplitExpertsCpu ? T.split_weights[u] : T.weights[u];
          c = c == UnitChoice::kInPlaceCpu        ? UnitChoice::kInPlaceDisk
              : c == UnitChoice::kSplitExpertsCpu ? UnitChoice::kSplitExpertsDisk
              : c == UnitChoice::kStreamPrefetch  ? UnitChoice::kStreamPrefetchDisk
                                                  : UnitChoice::kStreamAccelerateDisk;
          changed = true;
        }
      }
    }
    if (!changed) return std::nullopt;
  }
  return std::nullopt;
}

// The same placement with, among a GPU's interchangeable sparse layers (the same bytes, split
// bytes and KV cache), the split ones first (experts from disk, then from RAM) and the resident
// ones after: llama.cpp's --n-cpu-moe N names such a prefix. nullopt when nothing moves.
std::optional<Placement> experts_first(const Tables& T, const Placement& p) {
  Placement q = p;
  bool moved = false;
  std::vector<char> done(T.units, 0);
  for (int u = 0; u < T.units; ++u) {
    if (done[u] || T.split_node[u] < 0 || !on_gpu(p.choice[u])) continue;
    std::vector<int> group;  // chain order
    for (int v = u; v < T.units; ++v) {
      if (T.split_node[v] < 0 || !on_gpu(p.choice[v]) || p.gpu[v] != p.gpu[u]) continue;
      if (T.weights[v] != T.weights[u] || T.split_weights[v] != T.split_weights[u] || T.kv_p[v] != T.kv_p[u] ||
          T.kv_d[v] != T.kv_d[u])
        continue;
      group.push_back(v);
      done[v] = 1;
    }
    std::vector<UnitChoice> order;
    for (int v : group) order.push_back(p.choice[v]);
    auto rank = [](UnitChoice c) {
      return c == UnitChoice::kSplitExpertsDisk ? 0 : c == UnitChoice::kSplitExpertsCpu ? 1 : 2;
    };
    std::stable_sort(order.begin(), order.end(), [&](UnitChoice a, UnitChoice b) { return rank(a) < rank(b); });
    for (size_t i = 0; i < group.size(); ++i) {
      moved = moved || q.choice[group[i]] != order[i];
      q.choice[group[i]] = order[i];
    }
  }
  if (!moved) return std::nullopt;
  return q;
}

const char* mode_name(Mode m) { return m == Mode::kNone ? "none" : m == Mode::kAccelerate ? "accelerate" : "prefetch"; }

OptimalResult optimal_search(const CostModel& cm, const Hardware& hw, const OptimalOptions& options_in,
                             const std::vector<Placement>& seeds) {
  OptimalOptions options = options_in;
  // DMAP_MAX_WORK=<labels> overrides the work budget (diagnostics: how far an inexact result is
  // from the optimum).
  // (Only a positive number counts: 0 would mean no limit.)
  if (const char* w = std::getenv("DMAP_MAX_WORK"); w && std::atoll(w) > 0) options.max_work = std::atoll(w);
  const Trace trace;
  const Tables T(cm, hw);
  trace("tables: %d units, %d GPUs, host binding %d", T.units, T.gpus, static_cast<int>(T.host_binding));
  OptimalResult res;
  if (!T.unsupported.empty()) {
    res.why_not = "the search does not handle this model: " + T.unsupported;
    return res;
  }
  const int G = T.gpus;
  std::vector<Mode> modes = {Mode::kNone};
  if (G > 0 && options.allow_accelerate) modes.push_back(Mode::kAccelerate);
  if (G > 0 && options.allow_prefetch) modes.push_back(Mode::kPrefetch);
  // Disk only pays when RAM binds; then decode reads are warm or cold by the whole placement.
  const bool disk = options.allow_disk && T.host_binding;
  std::vector<bool> warm_runs = {false};
  if (disk && hw.page_cache) warm_runs.push_back(true);
  const int64_t states = static_cast<int64_t>(G + 1) * (G + 1) * (G + 3) * 2;
  // Passes per run: one quick, at most 12 deepening steps, the last at the incumbent, and one
  // when out of work.
  res.stats.bound = static_cast<int64_t>(modes.size() * warm_runs.size()) * 15 * T.units * states *
                    (std::max(2, options.max_labels) + 8) * (2 + 3 * G + 5);
  double best = kInf;
  // Every placement counts only re-simulated: simulate()'s objective, and it fits.
  auto consider = [&](const std::optional<Placement>& p) {
    if (!p) return;
    const double t = placement_objective(cm, hw, *p, options);
    if (t < best) {
      best = t;
      res.placement = *p;
    }
  };
  for (const Placement& p : seeds) consider(p);  // known placements (strategy rows) are incumbents
  // The relaxation's own optimum, repaired into a placement that obeys the rules and fits.
  auto consider_relaxed = [&](const RoomBound& b) {
    if (b.relaxed.choice.empty()) return;
    if (trace.on) {
      DeviceMap map;
      std::vector<Semantics> sem;
      placement_map(cm.graph(), b.relaxed, map, sem);
      const Prediction pr = simulate(cm, hw, map, sem);
      trace("relaxed placement: %s %.6g s %s", placement_rule_broken(cm.graph(), hw, b.relaxed, options).c_str(),
            pr.total_s, pr.oom.c_str());
    }
    const std::optional<Placement> fixed = repair(T, options, b.relaxed);
    const double before = best;
    consider(fixed);
    trace("relaxed placement repaired: %s, best %.6g s (was %.6g)", fixed ? "yes" : "no", best, before);
  };
  trace("%zu seeds, best %.6g s", seeds.size(), best);
  // One run per streaming mode and page-cache assumption, in the order of their lower bounds
  // (a coarse bound, 8 buckets per GPU, orders and skips runs; the fine one, 64, prunes).
  struct Run {
    Mode mode;
    bool warm;
    double coarse;
    std::shared_ptr<const RoomBound> bound;  // the run's own, or shared by the runs of one page-cache assumption
    double root = 0;
    bool fined = false;   // root is the fine bound's (the table itself is let go once the run is ruled out)
    bool shared = false;  // the bound is the union's, shared by the runs of its page-cache assumption
  };
  const double host_room = T.host_binding ? T.host_cap : 0.0;
  std::vector<Run> runs;
  // A bound table, its values counted.
  auto counted = [&](RoomBound b) {
    res.stats.bound_values += static_cast<int64_t>(b.N) * static_cast<int64_t>(b.unit_size());
    trace("bound table: %lld values", static_cast<long long>(b.N) * static_cast<long long>(b.unit_size()));
    return b;
  };

  // From 2 GPUs on, the fine bound is one table per page-cache assumption for the union of the
  // streaming modes (a bound for each), and runs get no coarse bound: on many GPUs a table costs
  // the same for one mode as for all, and the modes' own bounds agree (streaming goes to GPU 0
  // only while it is in use).
  constexpr int union_from = 2;
  // The coarse bound's buckets per GPU: enough that a decoder layer is at least one bucket on
  // the roomiest GPU (fewer would let layers in for free, and the bound say little), 8 to 32.
  int coarse_buckets = 8;
  if (G < union_from) {
    std::vector<double> layer_bytes;
    for (int u = 0; u < T.units; ++u) {
      if (T.has_ops[u]) layer_bytes.push_back(T.weights[u]);
    }
    const std::vector<double> common = by_frequency(layer_bytes);
    double max_room = 0;
    for (int g = 0; g < G; ++g) max_room = std::max(max_room, T.gpu_cap[g] - T.gpu_ctx[g]);
    if (!common.empty() && common.front() > 0) {
      coarse_buckets = static_cast<int>(std::clamp(std::ceil(max_room / common.front()), 8.0, 32.0));
    }
  }
  for (bool warm : warm_runs) {
    for (Mode m : modes) {
      // Warm decode reads need the page cache to hold every weight off the GPUs: at least the
      // weights the GPUs cannot hold.
      if (warm && T.read_weights - T.gpu_room > T.cache_cap) continue;
      if (!options.prune) {
        Search s{T, options, m, warm, res.stats, disk};
        s.max_labels = std::max(2, options.max_labels);
        ++res.stats.runs;
        consider(s.run());
        continue;
      }
      // (With the union's fine bound, a run's coarse one would only cost time: 0 says nothing.)
      const double coarse = G >= union_from
                                ? 0.0
                                : counted(make_room_bound(T, m, options, warm, disk, coarse_buckets, coarse_buckets))
                                      .root(host_room, T.cache_cap);
      trace("coarse bound %s%s: %.6g s", mode_name(m), warm ? " warm" : "", coarse);
      if (std::isfinite(coarse)) runs.push_back({m, warm, coarse, nullptr});
    }
  }
  std::stable_sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.coarse < b.coarse; });
  // Within options.gap of the best found is as good as found (the result is optimal within it).
  auto beatable = [&](double root) { return root < best * (1 - std::max(1e-9, options.gap)); };
  constexpr int fine_buckets = 64;    // per GPU (fewer made the bound much weaker on many GPUs)
  constexpr int fine_buckets0 = 256;  // on GPU 0, where streamed layers' KV caches add up
  std::shared_ptr<const RoomBound> union_bound[2];
  // A table no run needs any more goes back to the pool at once: the next one reuses its pages
  // (in a fresh process, backing and zeroing new pages cost as much as filling them).
  auto fine = [&](Run& run) {
    if (run.fined) return run.root;
    run.fined = true;
    if (!run.bound && G >= union_from) {
      std::shared_ptr<const RoomBound>& ub = union_bound[run.warm ? 1 : 0];
      if (!ub) {
        ub = std::make_shared<const RoomBound>(
            counted(make_room_bound(T, Mode::kAny, options, run.warm, disk, fine_buckets, fine_buckets0)));
        trace("fine bound, any mode%s: %.6g s", run.warm ? " warm" : "", ub->root(host_room, T.cache_cap));
        consider_relaxed(*ub);
      }
      run.bound = ub;
      run.shared = true;
      run.root = std::max(run.coarse, run.bound->root(host_room, T.cache_cap));
    }
    if (!run.bound) {
      run.bound = std::make_shared<const RoomBound>(
          counted(make_room_bound(T, run.mode, options, run.warm, disk, fine_buckets, fine_buckets0)));
      run.root = std::max(run.coarse, run.bound->root(host_room, T.cache_cap));
      trace("fine bound %s%s: %.6g s", mode_name(run.mode), run.warm ? " warm" : "", run.root);
      consider_relaxed(*run.bound);
    }
    return run.root;
  };
  // Quick passes (fronts of 2, then 8 labels, pruned against the best so far) give an incumbent, which
  // caps every deepening below and lets runs that cannot beat it be skipped.
  // The wider quick passes share half the work budget: past it they are dropped.
  int64_t quick_left = options.max_work > 0 ? options.max_work / 2 : std::numeric_limits<int64_t>::max();
  for (Run& run : runs) {
    if (!beatable(run.coarse)) break;
    if (!beatable(fine(run))) {
      run.bound.reset();
      continue;
    }
    for (int front : {2, 8, 32}) {  // a greedy pass, then wider ones under its result
      if (front > 2 && quick_left <= 0) continue;
      if (front > 8 && best <= run.root * 1.02) continue;  // the widest only far from the bound
      SearchStats quick;
      Search s{T, options, run.mode, run.warm, quick, disk};
      s.trace_path = trace.path;
      s.max_labels = std::min(front, std::max(2, options.max_labels));
      s.bound = run.bound.get();
      s.incumbent = best;
      s.strict = std::isfinite(best);
      // The greedy pass is bounded by its fronts (units x states x 2 labels).
      if (front > 2) s.label_limit = quick_left;
      consider(s.run());
      if (front > 2) quick_left -= quick.work();
      res.stats.labels += quick.labels;
      res.stats.compares += quick.compares;
      trace("quick pass %s%s (fronts of %d): %lld labels, %lld compares, %s, best %.6g s", mode_name(run.mode),
            run.warm ? " warm" : "", front, static_cast<long long>(quick.labels),
            static_cast<long long>(quick.compares), s.aborted ? "dropped" : "done", best);
    }
  }
  // The runs hold the shared tables they still need.
  for (auto& ub : union_bound) ub.reset();
  for (Run& run : runs) {
    if (run.fined && !beatable(run.root)) run.bound.reset();
  }
  // A shared bound is the weakest of the modes': where it leaves more than 2 % between the best
  // placement and the bound, a run gets its own (one mode's relaxation can be far weaker than
  // the others', and then it would hold every run's deepening back).
  // Once a run's own bound is no tighter than the shared one, the other runs of that page-cache
  // assumption keep the shared one (the modes' relaxations then agree: on several GPUs they
  // mostly do, and each own table costs as much as the shared one).
  // So does a mode whose own bound was no tighter under the other assumption.
  // Warm runs first: a warm run's own table also bounds the cold run of its mode (the columns
  // without the page-cache price, Tables::warm_bounds_cold), which then needs no table of its own
  // where that is at least as tight as the cold runs' shared one (on several GPUs, placements
  // that read nothing from disk decide both: the two tables agree).
  bool own_helps[2] = {true, true};
  std::vector<Mode> no_tighter;
  std::vector<Run*> own_order;
  for (Run& run : runs) {
    if (run.warm) own_order.push_back(&run);
  }
  for (Run& run : runs) {
    if (!run.warm) own_order.push_back(&run);
  }
  for (Run* rp : own_order) {
    Run& run = *rp;
    if (!run.bound || !run.shared || !beatable(run.root) || best <= run.root * 1.02) continue;
    if (!own_helps[run.warm ? 1 : 0] || std::find(no_tighter.begin(), no_tighter.end(), run.mode) != no_tighter.end())
      continue;
    const double shared = run.root;
    run.bound.reset();  // (the last run holding the shared table lets the own one reuse its pages)
    run.shared = false;
    run.bound = std::make_shared<const RoomBound>(
        counted(make_room_bound(T, run.mode, options, run.warm, disk, fine_buckets, fine_buckets0)));
    run.root = std::max(run.coarse, run.bound->root(host_room, T.cache_cap));
    trace("fine bound %s%s (own): %.6g s", mode_name(run.mode), run.warm ? " warm" : "", run.root);
    if (run.root <= shared * (1 + 1e-6)) {
      own_helps[run.warm ? 1 : 0] = false;
      no_tighter.push_back(run.mode);
    }
    for (Run& cold : runs) {
      if (!run.warm || !T.warm_bounds_cold || cold.warm || cold.mode != run.mode || !cold.bound || !cold.shared ||
          !beatable(cold.root))
        continue;
      const double r = std::max(cold.coarse, run.bound->root(host_room, T.cache_cap, true));
      if (r < cold.root) continue;  // the cold runs' shared table is tighter
      cold.bound = run.bound;
      cold.shared = false;
      cold.root = r;
      trace("fine bound %s (the warm run's own table): %.6g s", mode_name(cold.mode), cold.root);
      if (!beatable(cold.root)) cold.bound.reset();
    }
    if (!beatable(run.root)) run.bound.reset();
  }
  // The deepening, best first across runs: the run with the least lower bound so far takes its
  // next step (so the most promising run sets the incumbent the others must beat, and a run's
  // cheap steps near its bound come before another run's pass at the incumbent).
  for (Run& run : runs) {
    if (!run.fined) run.root = run.coarse;
  }
  std::stable_sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.root < b.root; });
  // Deepening passes share a work budget (options.max_work labels); once it is spent the
  // passes stop and what is left unexplored is covered by its lower bound.
  // With the quick passes before them, at most 1.5 x max_work in all (on many GPUs the greedy
  // passes, bounded by their fronts only, can take half of it: with split layers, 3 x GPUs + 7
  // choices a label).
  const int64_t limit = options.max_work > 0 ? std::min(res.stats.work() + options.max_work, options.max_work * 3 / 2)
                                             : std::numeric_limits<int64_t>::max();
  struct Deepening {
    double ruled_out = 0;  // nothing of the run is faster
    double slack = 0;      // the first threshold's distance to the run's bound
    int step = 0;
    bool started = false, done = false;
  };
  std::vector<Deepening> deep(runs.size());
  bool out_of_work = false;
  for (size_t i = 0; i < runs.size(); ++i) deep[i].ruled_out = runs[i].root;
  for (;;) {
    int pick = -1;
    for (size_t i = 0; i < runs.size(); ++i) {
      if (!deep[i].done && (pick < 0 || deep[i].ruled_out < deep[pick].ruled_out)) pick = static_cast<int>(i);
    }
    if (pick < 0) break;
    Run& run = runs[pick];
    Deepening& d = deep[pick];
    // Nothing of this run (or any other left) can beat the incumbent.
    if (!beatable(d.ruled_out)) break;
    if (!d.started) {
      d.started = true;
      d.ruled_out = fine(run);
      if (!beatable(d.ruled_out)) {
        d.done = true;
        run.bound.reset();
        continue;
      }
      // The first threshold: 1/256 above the bound, or a quarter of the way to the incumbent when
      // that is nearer (a pass at the incumbent keeps every label that can still beat it, and near
      // a tight bound those are many), but not within the gap of the bound.
      d.slack = std::max(run.root * options.gap, std::min(run.root / 256, (best - run.root) / 4));
    }
    // Search under a threshold just above what is ruled out, which prunes nearly every label: a
    // placement found under it is the run's optimum (nothing under the threshold was dropped),
    // else widen the threshold (at least to the least bound the last pass dropped), and end with
    // the incumbent itself.
    const double root = run.root;
    const double deeper = std::max(root + std::ldexp(d.slack, d.step), d.ruled_out);
    Search s{T, options, run.mode, run.warm, res.stats, disk};
    s.trace_path = trace.path;
    s.max_labels = std::max(2, options.max_labels);
    s.bound = run.bound.get();
    s.incumbent = d.step < 12 && deeper < root + (best - root) / 2 ? deeper : best;
    s.strict = s.incumbent == best && std::isfinite(best);
    s.label_limit = limit;
    ++res.stats.runs;
    const bool thinned_before = res.stats.thinned;
    const int64_t before = res.stats.labels, before_c = res.stats.compares;
    const std::optional<Placement> p = s.run();
    trace("deepening %s%s step %d at %.6g s (bound %.6g, best %.6g): %lld labels, %lld compares, %s",
          mode_name(run.mode), run.warm ? " warm" : "", d.step, s.incumbent, root, best,
          static_cast<long long>(res.stats.labels - before), static_cast<long long>(res.stats.compares - before_c),
          s.aborted ? "out of work"
          : p       ? "found"
                    : "none");
    if (s.aborted) {
      out_of_work = true;
      break;
    }
    consider(p);
    ++d.step;
    if (p || s.incumbent >= best) {
      d.done = true;
      run.bound.reset();
      continue;
    }
    // Nothing under the threshold: every label dropped had a bound over it, the least of them
    // bounds the run (a thinned front may have dropped one under it: then the threshold only).
    d.ruled_out = res.stats.thinned && !thinned_before ? s.incumbent : std::max(s.incumbent, s.min_beaten);
    if (!std::isfinite(d.ruled_out)) d.done = true;  // nothing dropped and nothing found: none fits
  }
  double unexplored = kInf;  // a lower bound on every placement not yet ruled out
  for (size_t i = 0; i < runs.size(); ++i) {
    if (!deep[i].done) unexplored = std::min(unexplored, deep[i].ruled_out);
  }
  if (out_of_work) {
    // Out of work: one more pass per run that may still beat the incumbent, with fronts of 16
    // labels (bounded: units x states x 16), to improve it before giving up exactness. Once
    // something is found, these passes share a fifth of the work budget: past it they stop.
    int64_t wide_left = options.max_work > 0 ? options.max_work / 5 : std::numeric_limits<int64_t>::max();
    for (size_t i = 0; i < runs.size(); ++i) {
      Run& run = runs[i];
      if (deep[i].done || !beatable(deep[i].ruled_out)) continue;
      if (std::isfinite(best) && wide_left <= 0) break;
      SearchStats wide;
      Search s{T, options, run.mode, run.warm, wide, disk};
      s.trace_path = trace.path;
      s.max_labels = std::min(16, std::max(2, options.max_labels));
      s.bound = run.bound ? run.bound.get() : nullptr;
      s.incumbent = best;
      s.strict = std::isfinite(best);
      if (std::isfinite(best)) s.label_limit = wide_left;  // (unless nothing was found)
      consider(s.run());
      wide_left -= wide.work();
      res.stats.labels += wide.labels;
      res.stats.compares += wide.compares;
      trace("wide pass %s%s: %lld labels, %lld compares, %s, best %.6g s", mode_name(run.mode), run.warm ? " warm" : "",
            static_cast<long long>(wide.labels), static_cast<long long>(wide.compares), s.aborted ? "dropped" : "done",
            best);
    }
  }
  res.stats.out_of_work = out_of_work;
  res.lower_bound_s = std::min(best * (1 - std::max(0.0, options.gap)), unexplored);
  if (res.stats.thinned) {  // a thinned pass may have dropped a label under its threshold: the roots only
    for (const Run& run : runs) res.lower_bound_s = std::min(res.lower_bound_s, run.root);
  }
  // Out of work, the result is still optimal within the gap when no placement left unexplored
  // can beat it by more.
  res.exact = !res.stats.thinned && (!out_of_work || unexplored >= best * (1 - std::max(0.0, options.gap)));
  if (!std::isfinite(best)) {
    res.why_not = "no placement of the search space fits in the memory of this hardware";
    return res;
  }
  res.found = true;
  // Interchangeable layers in a llama.cpp-friendly order: on each GPU, the split ones first (kept
  // when it simulates no slower; its simulation is then the objective, else the result's own).
  std::optional<double> objective;
  if (std::optional<Placement> q = experts_first(T, res.placement)) {
    const double t = placement_objective(cm, hw, *q, options);
    if (t <= best * (1 + 1e-9)) {
      best = std::min(best, t);
      res.placement = *q;
      objective = t;
    }
  }
  res.objective_s = objective ? *objective : placement_objective(cm, hw, res.placement, options);
  const ModelGraph& g = cm.graph();
  placement_map(g, res.placement, res.map, res.per_entry);
  bool any_gpu = false, any_acc = false, any_pre = false, any_inplace = false;
  for (size_t u = 0; u < g.chain.size(); ++u) {
    const UnitChoice c = res.placement.choice[u];
    if (!T.has_ops[u]) continue;  // stored somewhere, computes nowhere
    if (on_gpu(c)) any_gpu = true;
    if (is_stream(c)) (is_prefetch(c) ? any_pre : any_acc) = true;
    if (is_in_place(c) || is_split(c)) any_inplace = true;
    // (A split layer is on the GPU for llama.cpp's -ngl, its experts kept back by --n-cpu-moe.)
    if (g.chain[u].is_layer) (on_gpu(c) ? res.gpu_layers : res.cpu_layers) += 1;
  }
  // Merge same-device siblings as accelerate's clean_device_map does when the map runs under
  // one semantics per device kind (not prefetch, which double-buffers whole entries), and keep
  // the merged map only when it predicts the same.
  if (!any_pre && !(any_acc && any_inplace)) {
    DeviceMap merged = res.map;
    strategies::clean_device_map(merged);
    const Semantics res_sem = resident_semantics(mode_of(res.placement), any_inplace);
    const Semantics off_sem = any_inplace ? Semantics::kInPlace : Semantics::kAccelerate;
    std::vector<Semantics> sem;
    for (const auto& [n, d] : merged.items()) sem.push_back(d.is_gpu() ? res_sem : off_sem);
    const Prediction pr = simulate(cm, hw, merged, sem);
    if (pr.feasible && std::abs(pr.total_s - best) <= 1e-12 * best) {
      res.map = merged;
      res.per_entry = sem;
    }
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

}  // namespace dmap::sim
