// profile_cpu: the calibration of this machine's CPU and disk fitted from the micro-benchmarks
// and whole-model runs of dmap's executor (see profile.h).
#include "profile/load_guard.h"
#include "profile/probes.h"
#include "profile/reference_bracket.h"
#include "profile/run_trace.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

#include "core/error.h"
#include "core/interrupt.h"
#include "core/module_tree.h"
#include "core/yaml_io.h"
#include "profile/fit.h"
#include "profile/yaml_text.h"
#include "report/svg.h"
#include "sim/cost_model.h"
#include "sim/graph.h"
#include "strategies/plan.h"

#include "exec/backend.h"
#include "exec/config.h"
#include "exec/disk_reader.h"
#include "exec/map_placement.h"

namespace dmap::profile {

namespace {

std::string today() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[16];
  std::strftime(b, sizeof b, "%Y-%m-%d", &tm);
  return b;
}

constexpr double kMiB = 1024.0 * 1024.0;

// Bytes (at `d`) of each parameter under module `id`: what a disk-offloaded module re-reads.
void tensor_bytes_under(const ModuleTree& tree, int id, DType d, std::vector<double>& out) {
  const TreeNode& n = tree.node(id);
  const double elt = static_cast<double>(torch_bits_per_element(d)) / 8.0;
  for (int p : n.params) out.push_back(static_cast<double>(tree.node(p).numel) * elt);
  for (int ch : n.children) tensor_bytes_under(tree, ch, d, out);
}

// What disk layers add: over the repetitions, the median of (the median over layers first_disk..
// layers-1 - the median over the layers before) of `time_of(run, layer)` (nullopt: no figure for
// that layer in that run). nullopt when no repetition has figures on both sides.
std::optional<double> disk_layer_extra(
    const std::vector<PlacementRun>& reps, int64_t layers, int64_t first_disk,
    const std::function<std::optional<double>(const PlacementRun&, int64_t)>& time_of) {
  std::vector<double> extras;
  for (const PlacementRun& r : reps) {
    std::vector<double> on_disk, resident;
    for (int64_t l = 0; l < layers; ++l) {
      if (const std::optional<double> t = time_of(r, l)) (l >= first_disk ? on_disk : resident).push_back(*t);
    }
    if (!on_disk.empty() && !resident.empty()) extras.push_back(median(on_disk) - median(resident));
  }
  if (extras.empty()) return std::nullopt;
  return median(extras);
}

}  // namespace

// (probes.h)
std::vector<double> disk_tensor_bytes(const ModuleTree& tree, DType d, int64_t first, int64_t last) {
  std::vector<double> out;
  for (int64_t l = first; l < last; ++l) {
    const int id = tree.find("model.layers." + std::to_string(l));
    if (id >= 0) tensor_bytes_under(tree, id, d, out);
  }
  return out;
}

// (probes.h)
WarmSizes warm_by_tensor_size(const ModuleTree& tree, const exec::ExecConfig& c, DType d,
                              const std::vector<PlacementRun>& reps, int64_t disk_layers) {
  struct Point {
    double mib, rate, extra;
    std::string module;
  };
  std::vector<Point> pts;
  const int64_t L = c.layers;
  for (const std::string& m : exec::layer_modules(c)) {
    std::vector<double> bytes;
    const int id = tree.find("model.layers." + std::to_string(L - disk_layers) + "." + m);
    if (id < 0) continue;
    tensor_bytes_under(tree, id, d, bytes);
    double total = 0, sq = 0;
    for (double b : bytes) {
      total += b;
      sq += b * b;
    }
    if (total < kMiB) continue;
    const std::optional<double> e =
        disk_layer_extra(reps, L, L - disk_layers, [&](const PlacementRun& r, int64_t l) -> std::optional<double> {
          const std::string name = "model.layers." + std::to_string(l) + "." + m;
          for (const auto& mt : r.modules) {
            if (mt.module == name && !mt.decode_s.empty()) return median(mt.decode_s);
          }
          return std::nullopt;
        });
    if (e && *e > 0) pts.push_back({sq / total / kMiB, total / *e, *e, m});
  }
  std::sort(pts.begin(), pts.end(), [](const Point& a, const Point& b) { return a.mib < b.mib; });
  WarmSizes out;
  for (const Point& p : pts) {
    // (a curve's sizes must increase: of two modules of about one size, the first kept)
    if (!out.points.empty() && p.mib < out.points.back().first * 1.1) continue;
    out.points.push_back({p.mib, p.rate});
    out.modules.push_back(p.module);
    out.extra_s.push_back(p.extra);
  }
  return out;
}

// (probes.h)
WarmSizes warm_by_tensor(const exec::ExecConfig& c, DType d, const std::vector<PlacementRun>& reps,
                         int64_t disk_layers) {
  struct Kind {
    double bytes = 0, extra = 0;
    std::string name;
  };
  std::vector<Kind> kinds;
  const int64_t L = c.layers, first_disk = L - disk_layers;
  const std::string layer0 = "model.layers.0.";
  for (const auto& [name, shape] : exec::ModelWeights::expected(c)) {
    if (name.rfind(layer0, 0) != 0) continue;
    double numel = 1;
    for (int64_t n : shape) numel *= static_cast<double>(n);
    const double bytes = numel * static_cast<double>(torch_bits_per_element(d)) / 8.0;
    if (bytes < 256.0 * 1024.0) continue;
    const std::string kind = name.substr(layer0.size());
    const std::optional<double> e =
        disk_layer_extra(reps, L, first_disk, [&](const PlacementRun& r, int64_t l) -> std::optional<double> {
          const auto it = r.decode_weight_s.find("model.layers." + std::to_string(l) + "." + kind);
          if (it == r.decode_weight_s.end()) return std::nullopt;
          return it->second;
        });
    if (e && *e > 0) kinds.push_back({bytes, *e, kind});
  }
  std::sort(kinds.begin(), kinds.end(), [](const Kind& a, const Kind& b) { return a.bytes < b.bytes; });
  WarmSizes out;
  for (size_t i = 0; i < kinds.size();) {
    double bytes = 0, extra = 0;
    std::string names;
    const double size = kinds[i].bytes;
    size_t j = i;
    for (; j < kinds.size() && kinds[j].bytes <= size * 1.1; ++j) {
      bytes += kinds[j].bytes;
      extra += kinds[j].extra;
      names += (names.empty() ? "" : "+") + kinds[j].name;
    }
    out.points.push_back({bytes / static_cast<double>(j - i) / kMiB, bytes / extra});
    out.modules.push_back(names);
    out.extra_s.push_back(extra);
    i = j;
  }
  return out;
}

// (probes.h)
double resident_ratio(const PlacementRun& cpu, const PlacementRun& disk, int64_t first_disk_layer) {
  // A module under a disk layer: "model.layers.N" itself or below it, N >= first_disk_layer.
  auto on_disk = [&](const std::string& name) {
    const std::string prefix = "model.layers.";
    if (name.rfind(prefix, 0) != 0) return false;
    size_t end = prefix.size();
    while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
    if (end == prefix.size() || (end < name.size() && name[end] != '.')) return false;
    return std::stoll(name.substr(prefix.size(), end - prefix.size())) >= first_disk_layer;
  };
  auto resident = [&](const PlacementRun& r) {
    std::map<std::string, double> t;
    for (const auto& mt : r.modules) {
      if (!mt.decode_s.empty() && !on_disk(mt.module)) t[mt.module] = median(mt.decode_s);
    }
    return t;
  };
  const std::map<std::string, double> a = resident(cpu), b = resident(disk);
  double sa = 0, sb = 0;
  for (const auto& [name, s] : a) {
    const auto it = b.find(name);
    if (it == b.end()) continue;
    sa += s;
    sb += it->second;
  }
  const double rho = sa > 0 && sb > 0 ? sb / sa : 1.0;
  return std::isfinite(rho) ? rho : 1.0;
}

ProfileResult profile_cpu(const ProfileOptions& opt, const sim::Hardware& hw) {
  const exec::ExecConfig c = exec::exec_config(opt.model);
  const int threads = opt.run.threads;
  const int64_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  // The model's weight shapes (N x K), largest last.
  std::vector<std::pair<int64_t, int64_t>> shapes = {{kv, c.hidden},      {q, c.hidden},       {c.hidden, q},
                                                     {c.inter, c.hidden}, {c.hidden, c.inter}, {c.vocab, c.hidden}};
  // Past the last-level cache (dram_pool_bytes); the quick smoke test keeps 64 MiB.
  const size_t pool_bytes = opt.quick ? (64u << 20) : dram_pool_bytes(512u << 20);
  const int reps = opt.quick ? 3 : 7;
  // Product rows: a few-row product (a batch's decode) runs row by row, not like a 16-row one (the
  // AMD EPYC VM: bf16 at 4 rows ~1.4 weight passes; interpolated from M = 1 and 16, ~4).
  const std::vector<int64_t> rows =
      opt.quick ? std::vector<int64_t>{16, 64} : std::vector<int64_t>{2, 4, 8, 16, 32, 64, 128, 256};
  int step = 0;
  const int attention_points = opt.quick ? 6 : 9;
  const int mv_extra = opt.quick ? 4 : 9;
  const int steps = static_cast<int>(
      opt.dtypes.size() * (shapes.size() + mv_extra + (shapes.size() + 2) + 2 * rows.size() + attention_points));
  auto tick = [&](const std::string& what) {
    if (opt.progress) opt.progress(what, ++step, steps);
  };

  struct PerDtype {
    LineFit stream;                                // matrix-vector time vs weight bytes
    double bw = 0;                                 // bytes/s from the slope
    std::vector<std::pair<double, double>> curve;  // (M, FLOP/s)
    int samples = 0;
    double row_s = 0;     // per output row of a one-row product
    ProductFit products;  // M = 64 over shapes: rate and cost per input element
    AttentionProbe attention;
  };
  std::vector<std::pair<int64_t, int64_t>> mv_shapes = shapes;
  for (int64_t k : {512, 896, 1024, 4096}) mv_shapes.push_back({opt.quick ? 1024 : 4096, k});
  // The same 8 M weights as 1,024 to 16,384 rows: only the rows differ, which pins the per-row
  // cost apart from the streaming rate (with the shapes above alone, rows and bytes grow
  // together and the per-row figure moved 11 <-> 21 ns between calibrations).
  if (!opt.quick) {
    for (int64_t n : {1024, 2048, 4096, 8192, 16384}) mv_shapes.push_back({n, (int64_t{8} << 20) / n});
  }
  std::map<DType, PerDtype> per;
  WeightStore store;  // the pools' memory (GiBs past a large L3), freed before the disk and whole-model runs
  LoadGuard guard(opt.guard);
  for (DType d : opt.dtypes) {
    per[d] = guard.run("micro-benchmarks of " + std::string(dtype_name(d)), [&] {
      PerDtype p;
      // One-row products at the model's shapes and at other row lengths: short rows stream
      // slower (measured: Qwen2.5-0.5B's 896-wide rows at ~21-23 GB/s, TinyLlama's 2048-wide at
      // ~27), so time = intercept + bytes / bandwidth + rows x per-row cost.
      std::vector<double> xb, xr, ts;
      for (const auto& [n, k] : mv_shapes) {
        tick("matrix-vector " + std::string(dtype_name(d)));
        WeightPool pool(store, d, n, k, pool_bytes);
        xb.push_back(static_cast<double>(pool.bytes()));
        xr.push_back(static_cast<double>(n));
        ts.push_back(time_linear(pool, 1, threads, reps));
      }
      const StreamFit sf = fit_stream(xb, xr, ts);
      p.stream = sf.stream;
      p.row_s = sf.row_cost;
      p.bw = p.stream.slope > 0 ? 1.0 / p.stream.slope : xb.back() / ts.back();
      p.samples = static_cast<int>(xb.size());
      // M = 1: the streaming rate, 2 FLOPs per weight element.
      p.curve.push_back({1.0, 2.0 * p.bw / static_cast<double>(exec::elt_size(d))});
      // Products of several rows at M = 64 over the model's shapes and narrower ones: the rate
      // and the cost per input element (fit_products), which narrow products feel most.
      {
        std::vector<ProductSample> ps;
        std::vector<std::pair<int64_t, int64_t>> pshapes(shapes.begin(), shapes.end() - 1);  // not the LM head
        for (int64_t n : {128, 256, 512}) pshapes.push_back({n, c.hidden});
        for (const auto& [n, k] : pshapes) {
          tick("matrix products " + std::string(dtype_name(d)) + " shapes");
          WeightPool pool(store, d, n, k, pool_bytes);
          ps.push_back({64.0, static_cast<double>(n), static_cast<double>(k),
                        time_linear(pool, 64, threads, std::max(3, reps / 2))});
        }
        p.products = fit_products(ps);
      }
      for (int64_t m : rows) {
        std::vector<double> rates;
        for (const auto& [n, k] : {shapes[1], shapes[3]}) {  // q_proj and gate_proj
          tick("matrix products " + std::string(dtype_name(d)) + " M=" + std::to_string(m));
          WeightPool pool(store, d, n, k, pool_bytes);
          const double t = time_linear(pool, m, threads, std::max(3, reps / 2));
          // The rate net of the per-input-element cost (charged separately by the cost model).
          const double net = std::max(0.2 * t, t - static_cast<double>(m * k) * p.products.input_cost);
          rates.push_back(2.0 * static_cast<double>(m * n * k) / net);
        }
        p.curve.push_back({static_cast<double>(m), median(rates)});
      }
      p.attention = measure_attention(c, d, threads, opt.quick, tick);
      return p;
    });
  }
  store.clear();  // the page cache and the whole-model runs get that memory back
  const DiskFit disk = guard.run("disk probe", [&] {
    return measure_disk(
        opt.run.scratch_dir.empty() ? std::filesystem::temp_directory_path().string() : opt.run.scratch_dir, opt.quick,
        opt.run.threads, opt.progress);
  });

  // Memory bandwidth: the fastest weight streaming (the other dtypes' M = 1 rates hold their
  // conversion cost).
  double bw = 0;
  for (const auto& [d, p] : per) bw = std::max(bw, p.bw);
  double cold_bw = disk.cold.slope > 0 ? 1.0 / disk.cold.slope : 1e9;
  double warm_bw = disk.warm.slope > 0 ? 1.0 / disk.warm.slope : bw / 2;
  double cold_lat = std::max(0.0, disk.cold.intercept);

  // Attention from its micro-benchmark: the rate curve by query rows, and the fixed cost per
  // attention op (the intercept over context length; the median over dtypes).
  std::vector<double> att_overheads;
  for (const auto& [d, p] : per) att_overheads.push_back(p.attention.overhead_s);
  const double att_overhead_s = median(att_overheads);

  // Weight streaming as whole-model decode achieves it, and matrix products as whole-model
  // prefill achieves them (fitted below; 1 = the micro-benchmark's).
  std::map<DType, double> stream_scale, prefill_scale;
  double bw_scale = 1;
  // The LM head's streaming rate in whole-model decode, per dtype (measured below).
  std::map<DType, double> head_gbs;
  std::map<DType, double> warm_by_dtype;  // page-cache rate per dtype, from whole-model runs
  // ... and by tensor size ([MiB, bytes/s], measured within the disk runs), where measured.
  std::map<DType, sim::CurvePoints> warm_curve_by_dtype;
  std::map<DType, WarmSizes> warm_size_fits;  // what each curve's shape came from, for the fit block
  std::map<DType, std::pair<WarmSizes, double>> warm_tensor_fits;  // ... by tensor, and its extra over the modules'
  const ModuleTree tree = build_module_tree(opt.model);
  std::map<DType, double> cold_by_dtype;  // cold disk rate per dtype, from whole-model runs
  // The page-cache probe's readings around the disk runs (whose decode copies from the page cache).
  std::vector<double> page_cache_probes;
  // Large tensors warm: the disk probe's ratio to the page-cache probe times the probes' median
  // over the calibration (probes.h: DiskFit::large_probe_ratio); its own reads' rate without probes.
  auto large_warm_gbs = [&] {
    return disk.large_probe_ratio > 0 && !page_cache_probes.empty() ? disk.large_probe_ratio * median(page_cache_probes)
                                                                    : disk.large_gbs;
  };
  // The calibration as fitted so far (the fit loops below predict with it directly).
  auto calibration_with = [&](double dispatch_us) {
    sim::Calibration cal;
    cal.name = opt.name;
    cal.comment =
        "Calibration of this machine's CPU and disk for dmap's cost model, fitted from timed runs\nof dmap's own "
        "executor (`" +
        opt.command + "`). Units as in sim/calibration.h.";
    cal.provenance["cpu"] = cpu_description();
    cal.provenance["isa"] = cpu_isa();
    cal.provenance["gpu"] = opt.gpu ? opt.gpu->gpu_name : std::string("none");
    cal.provenance["driver"] = opt.gpu ? opt.gpu->driver : std::string("none");
    cal.provenance["dmap_version"] = std::string(DMAP_VERSION);
    cal.provenance["date"] = today();
    cal.provenance["method"] = opt.command;
    cal.provenance["threads"] = threads;
    cal.provenance["model"] = opt.model_id;
    sim::HostCalibration& h = cal.host;
    h.memory_bandwidth_gbs = bw * bw_scale / 1e9;
    if (warm_by_dtype.size() > 1 || !warm_curve_by_dtype.empty()) {
      for (const auto& [d, w] : warm_by_dtype) {
        sim::CurvePoints& c = h.page_cache_read_gbs_by_dtype[d];
        const auto it = warm_curve_by_dtype.find(d);
        if (it == warm_curve_by_dtype.end()) {
          c = {{1.0, w / 1e9}};
        } else {
          for (const auto& [mib, r] : it->second) c.push_back({mib, r / 1e9});
        }
      }
    } else {
      h.page_cache_read_gbs = warm_bw / 1e9;
    }
    if (disk.large_gbs > 0) {  // tensors the executor copies out of the file's map (exec::kMapCopyBytes on)
      h.page_cache_large_gbs = large_warm_gbs();
      h.page_cache_large_from_mib = static_cast<double>(exec::kMapCopyBytes) / (1024.0 * 1024.0);
    }
    h.dispatch_overhead_us = dispatch_us;
    for (const auto& [d, p] : per) {
      const auto it = stream_scale.find(d);
      const auto pit = prefill_scale.find(d);
      sim::CurvePoints& g = h.matmul_gflops[d];
      for (const auto& [m, r] : p.curve) {
        const double sc =
            m == 1.0 ? (it != stream_scale.end() ? it->second : 1.0) : (pit != prefill_scale.end() ? pit->second : 1.0);
        g.push_back({m, r / 1e9 * sc});
      }
      for (const auto& [m, r] : p.attention.curve) h.attention_gflops[d].push_back({m, r / 1e9});
      h.matvec_row_ns[d] = p.row_s * 1e9;
      h.matmul_input_ns[d] = p.products.input_cost * 1e9;
    }
    for (const auto& [d, g] : head_gbs) h.head_matvec_gbs[d] = g / 1e9;
    h.attention_overhead_us = att_overhead_s * 1e6;
    if (opt.gpu) {
      h.offload_tensor_overhead_us = opt.gpu->offload_tensor_overhead_us;
      cal.gpus = opt.gpu->gpus;
      cal.link = opt.gpu->link;
    }
    if (cold_by_dtype.size() > 1) {
      for (const auto& [d, r] : cold_by_dtype) cal.disk.read_gbs_by_dtype[d] = r / 1e9;
    } else {
      cal.disk.read_gbs = cold_bw / 1e9;
    }
    cal.disk.read_latency_us = cold_lat * 1e6;
    if (disk.large_cold_gbs > 0) {  // long cold streams (MoE fused experts, large heads)
      cal.disk.read_large_gbs = disk.large_cold_gbs;
      cal.disk.read_large_from_mib = static_cast<double>(kColdStreamBytes) / (1024.0 * 1024.0);
    }
    return cal;
  };

  // Whole-model runs (CPU only) for the terms the micro-benchmarks cannot see: attention and
  // the per-operator overhead.
  ProfileResult out;
  std::vector<std::pair<DType, PlacementRun>> runs, disk_runs;
  const DeviceMap cpu_map = layers_on_disk_map(opt.model, 0);
  // A third of the layers on disk: re-reading offloaded weights as the executor does, cold in
  // prefill (whole tensors into a reused buffer) and from the page cache in decode (each thread's
  // chunks of rows into its own buffer, multiplied as they arrive: CpuModel::linear_streamed).
  const int64_t disk_layers = std::max<int64_t>(1, c.layers / 3);
  const DeviceMap disk_map = layers_on_disk_map(opt.model, disk_layers);
  int pid = 1;
  std::vector<double> cold_rates;
  std::map<DType, double> direct_warm;  // bytes over the measured read time alone, for the record
  std::map<DType, double> pair_warm;    // bytes over the pairs' median step extra, for the record
  // Each placement run at least `whole_reps` times, the medians kept: one decode step's figure
  // varied by up to 8 % between runs on the 2-vCPU VM, and every figure fitted below rests on these.
  const int whole_reps = opt.quick ? 1 : 3;
  // The reference probe (profile.h) bracketing each CPU-only run's decode: the machine's speed
  // while the runs every streaming and product scale is fitted to were measured. Runs in a 16-bit
  // dtype are bracketed by the probe in their dtype too (dtype_probes), which their decode follows.
  std::vector<double> reference_probes;
  std::map<DType, std::vector<double>> dtype_probes;     // per 16-bit dtype: its own probes around its runs
  std::map<DType, std::vector<double>> decode_probe_ms;  // per CPU-only run: the mean of its decode's two
  // One whole-model run, its decode bracketed by the reference probe (CPU-only) or the page-cache
  // probe (disk), just before the first step and just after the last (RunSettings::before_decode).
  auto measure = [&](const DeviceMap& dm, DType d, const std::string& what, bool probed) {
    const int threads = opt.run.threads;
    auto in_dtype = [&] { return reference_probe_ms(threads, kReferenceProbeReads, d); };
    // (float32 probes before and after, the same in the run's dtype, the run): the probes of a
    // spoiled try are dropped with it.
    auto kept = guard.run("whole-model run " + std::string(dtype_name(d)) + " " + what, [&] {
      double before = 0, after = 0, before_d = 0, after_d = 0;
      RunSettings rs = opt.run;
      rs.time_steps = !probed;  // disk runs: each tensor's read and product (warm_by_tensor)
      rs.before_decode = [&] {
        if (!probed) {
          before = page_cache_probe_gbs(threads);
          return;
        }
        // (a 16-bit dtype's own probe the nearer to the decode, on both sides)
        before = reference_probe_ms(threads);
        before_d = d == DType::kFloat32 ? before : in_dtype();
      };
      rs.after_decode = [&] {
        if (!probed) {
          after = page_cache_probe_gbs(threads);
          return;
        }
        if (d != DType::kFloat32) after_d = in_dtype();
        after = reference_probe_ms(threads);
        if (d == DType::kFloat32) after_d = after;
      };
      PlacementRun r = run_placement(opt.model, d, dm, rs);
      return std::make_tuple(before, after, before_d, after_d, std::move(r));
    });
    auto& [before, after, before_d, after_d, run] = kept;
    std::vector<double>& probes = probed ? reference_probes : page_cache_probes;
    probes.push_back(before);
    probes.push_back(after);
    if (probed && d != DType::kFloat32) {
      dtype_probes[d].push_back(before_d);
      dtype_probes[d].push_back(after_d);
    }
    if (probed) decode_probe_ms[d].push_back((before_d + after_d) / 2);
    return std::move(run);
  };
  // The medians of a placement's repetitions (the first repetition's module times and trace).
  auto combined = [](const std::vector<PlacementRun>& rs) {
    std::vector<double> pre, dec, rd;
    for (const auto& r : rs) {
      pre.push_back(r.prefill_s);
      dec.push_back(r.decode_token_s);
      rd.push_back(r.decode_disk_read_s);
    }
    PlacementRun out = rs.front();
    out.prefill_s = median(pre);
    out.decode_token_s = median(dec);
    out.decode_disk_read_s = median(rd);
    return out;
  };
  // CPU-only and disk runs alternate, pair by pair, and what the disk layers add is the median over
  // the pairs of each disk run less its own CPU-only partner: on the EPYC VM the page cache's cost
  // moved 6.65 -> 11.1 GB/s per step between two calibrations minutes apart, and a pair is
  // measured within a minute. At least `whole_reps` pairs; more, up to kMaxPairs, while the pairs'
  // decode extras spread by more than kPairSpread of their median. The dtypes take turns, pair by
  // pair, so that each one's runs spread over the whole stretch rather than a few minutes of it
  // (the EPYC VM streams memory 20-30 % slower for minutes at a time).
  // Within a pair the two runs can still meet the machine in different states: the modules resident
  // in both runs measure it (resident_ratio), and the CPU-only run is scaled by their ratio before
  // it is subtracted (on 2026-12-05 a calibration's bfloat16 pairs put the page cache at 17.2 GB/s
  // per step against 12.6 for the copies alone: its CPU-only runs were in the slow state).
  constexpr int kMaxPairs = 6;
  constexpr double kPairSpread = 0.25;
  std::map<DType, std::vector<double>> pair_extras, pair_ratios;  // per dtype, for the fit block
  std::map<DType, std::vector<PlacementRun>> cpu_reps_of, disk_reps_of;
  std::map<DType, std::vector<double>> cold_pairs_of;
  {
    std::set<DType> settled;
    const int most = opt.quick ? whole_reps : kMaxPairs;
    for (int k = 0; k < most && settled.size() < opt.dtypes.size(); ++k) {
      for (DType d : opt.dtypes) {
        if (settled.count(d)) continue;
        if (opt.progress) {
          opt.progress("whole-model runs " + std::string(dtype_name(d)) + ", pair", k, std::max(whole_reps, k + 1));
        }
        std::vector<double>& warm_pairs = pair_extras[d];
        const PlacementRun& cpu = cpu_reps_of[d].emplace_back(measure(cpu_map, d, "cpu-only", true));
        const PlacementRun& disk = disk_reps_of[d].emplace_back(measure(disk_map, d, "disk", false));
        const double rho = resident_ratio(cpu, disk, c.layers - disk_layers);
        pair_ratios[d].push_back(rho);
        warm_pairs.push_back(disk.decode_token_s - rho * cpu.decode_token_s);
        cold_pairs_of[d].push_back(disk.prefill_s - cpu.prefill_s);
        if (k + 1 < whole_reps) continue;
        const double mid = median(warm_pairs);
        const auto [lo, hi] = std::minmax_element(warm_pairs.begin(), warm_pairs.end());
        if (!(mid > 0) || (*hi - *lo) <= kPairSpread * mid) settled.insert(d);
      }
    }
  }
  // Each CPU-only run's decode referred to the calibration's reference time (the median of the
  // probes bracketing those decodes, host.reference_probe_ms): divided by its own probes' mean over
  // that (refer_decode). Measured on the AVX2 EPYC (2026-12-07, `drift_bench tinyllama_1b float32
  // 14`): decode tracked the probes just around it at r = 0.94 (decode / probe spread 1.16, decode
  // alone 1.61), so the medians every streaming scale and the head are fitted to describe the
  // machine in one state — the state the validation waits for before each decode — rather than
  // wherever the median of three to six runs fell (the last calibration's six float32 runs read
  // 91-134 ms/token, their median 116 between the machine's two states). The pairs' disk extras
  // above were taken from the runs as measured (each disk run against its own partner).
  // A 16-bit dtype's runs are referred by the probe in their dtype, to its median over them: on the
  // same machine a bfloat16 decode moved with the float32 probe at an elasticity of 0.3 only
  // (drift_bench, 14 runs: referred by it, its spread doubled) and with its own probe at ~1.
  const double reference_ms = median(reference_probes);
  std::map<DType, double> reference_of;                 // per dtype: the time its runs are referred to
  std::map<DType, std::vector<double>> raw_cpu_decode;  // as measured, for the fit block
  for (auto& [d, reps] : cpu_reps_of) {
    const double ref = d == DType::kFloat32 ? reference_ms : median(dtype_probes[d]);
    reference_of[d] = ref;
    for (size_t i = 0; i < reps.size(); ++i) {
      raw_cpu_decode[d].push_back(reps[i].decode_token_s);
      const double q = i < decode_probe_ms[d].size() ? decode_probe_ms[d][i] : 0.0;
      if (ref > 0 && q > 0) refer_decode(reps[i], q / ref);
    }
  }
  for (DType d : opt.dtypes) {
    const std::vector<PlacementRun>& cpu_reps = cpu_reps_of[d];
    const std::vector<PlacementRun>& disk_reps = disk_reps_of[d];
    const std::vector<double>& warm_pairs = pair_extras[d];
    const std::vector<double>& cold_pairs = cold_pairs_of[d];
    runs.push_back({d, combined(cpu_reps)});
    add_run_to_trace(out.trace, pid++, opt.model_id + " " + std::string(dtype_name(d)) + " cpu-only",
                     runs.back().second);
    disk_runs.push_back({d, combined(disk_reps)});
    const PlacementRun& disk_run = disk_runs.back().second;
    const double per_forward = static_cast<double>(disk_run.disk_bytes_read) / static_cast<double>(disk_run.forwards);
    // What the layers on disk add to a step: the page-cache copy, less what the product that
    // follows saves by finding the just-copied weights in cache. Measured within the disk runs
    // themselves, each disk layer's module against the same module resident in the same run
    // (warm_by_tensor_size), by tensor size: a pair's two runs can meet the machine in different
    // states, a run's modules cannot. On 2026-12-05 a calibration's bfloat16 pairs put the page
    // cache at 17.2 GB/s per step, its modules at 13.6 and its copies alone at 12.6; the
    // validation then measured 10-13 GB/s. The pairs' step extra stays the level where fewer than
    // two module sizes were measured.
    const double warm_extra = median(warm_pairs);
    const double cold_extra = median(cold_pairs);
    const WarmSizes sizes = warm_by_tensor_size(tree, c, d, disk_reps, disk_layers);
    if (!sizes.points.empty()) warm_size_fits[d] = sizes;
    // The same tensor by tensor (warm_by_tensor), recorded in the fit block but not the curve:
    // measured on 2026-12-07 (eighteenth session) TinyLlama's tensors added about one rate at every
    // size (float32 2 / 16 / 44 MiB: 40.3 / 38.0 / 39.3 GB/s), while Qwen3-0.6B's 4-12 MiB tensors
    // added far less per byte in the validation (their products read the copies from cache): the
    // size alone does not tell the two apart, so the modules' curve stays.
    const sim::CurvePoints curve = sizes.points;
    const WarmSizes by_tensor = warm_by_tensor(c, d, disk_reps, disk_layers);
    if (!by_tensor.points.empty()) {
      double ten = 0, mod = 0;
      for (double e : by_tensor.extra_s) ten += e;
      for (double e : sizes.extra_s) mod += e;
      warm_tensor_fits[d] = {by_tensor, mod > 0 ? ten / mod : 0.0};
    }
    double module_extra = 0;  // the disk layers' tensors at the curve's rates
    if (curve.size() >= 2) {
      sim::RateCurve shape;
      shape.points = curve;
      for (double b : disk_tensor_bytes(tree, d, c.layers - disk_layers, c.layers))
        module_extra += b / shape.at(b / kMiB);
    }
    if (module_extra > 0) {
      warm_by_dtype[d] = per_forward / module_extra;
      warm_curve_by_dtype[d] = curve;
    } else if (warm_extra > 0) {
      warm_by_dtype[d] = per_forward / warm_extra;
    }
    if (warm_extra > 0) pair_warm[d] = per_forward / warm_extra;
    if (cold_extra > 0) {
      cold_rates.push_back(per_forward / cold_extra);
      cold_by_dtype[d] = per_forward / cold_extra;
    }
    if (disk_run.decode_disk_read_s > 0) direct_warm[d] = per_forward / disk_run.decode_disk_read_s;
  }
  // The whole-model figures replace the probe's where they exist: they are what the executor sees.
  const double probe_warm_bw = warm_bw, probe_cold_bw = cold_bw;
  std::vector<double> warm_rates;
  for (const auto& [d, w] : warm_by_dtype) warm_rates.push_back(w);
  if (!warm_rates.empty()) warm_bw = median(warm_rates);
  if (!cold_rates.empty()) {
    cold_bw = median(cold_rates);
    cold_lat = 0;  // folded into the whole-tensor rate
  }
  // Dispatch: the probe, a model with the real one's layers and operators at tiny shapes, whose
  // decode step is almost all per-operator overhead: its time (less its weight traffic) over
  // the operator kernel count the cost model charges.
  double kernels = 0;  // operator kernels per decode step (the same for the probe's model)
  {
    const sim::Calibration zero = calibration_with(0.0);
    const sim::Calibration one = calibration_with(1.0);
    const DType d = runs.front().first;
    const double p0 = predict(opt.model, d, cpu_map, hw, &zero, opt.run.prompt, opt.run.new_tokens).decode_token_s;
    const double p1 = predict(opt.model, d, cpu_map, hw, &one, opt.run.prompt, opt.run.new_tokens).decode_token_s;
    kernels = (p1 - p0) / 1e-6;  // seconds per microsecond of dispatch overhead: the kernel count
  }
  if (opt.progress) opt.progress("dispatch probe", 0, 1);
  const DispatchProbe probe =
      guard.run("dispatch probe", [&] { return measure_dispatch(c, opt.dtypes.front(), threads); });
  const double dispatch_us =
      kernels > 0 ? std::max(0.0, probe.decode_s - probe.weight_bytes / bw) / kernels * 1e6 : 0.0;

  // The LM head: one product over the vocabulary after the layers, which whole-model decode
  // streams faster than the layers' products (measured on the AMD EPYC VM, 2026-12-06, with
  // `drift_bench steps`: bfloat16 heads at 44-47 GB/s, the layers' products at 25-47; one rate for
  // both over-predicted the validation's models with large heads — Qwen3-0.6B, Gemma-3-1B — by
  // 10-15 % in bfloat16, and fitting those rows gave the heads the micro-benchmark's rate). Its
  // rate is measured in the CPU-only runs themselves (the lm_head module's decode steps, the
  // median of each run, then over the runs), net of the row cost and dispatch the cost model
  // also charges it; the layers' streaming scale is then fitted with the head at that rate.
  std::map<DType, std::vector<double>> head_runs_s;  // per CPU-only run, for the fit block
  for (const auto& [d, reps] : cpu_reps_of) {
    std::vector<double>& ts = head_runs_s[d];
    for (const PlacementRun& r : reps) {
      for (const auto& mt : r.modules) {
        if (mt.module == "lm_head" && !mt.decode_s.empty()) ts.push_back(median(mt.decode_s));
      }
    }
    if (ts.empty()) continue;
    const double net = median(ts) - static_cast<double>(c.vocab) * per[d].row_s - dispatch_us * 1e-6;
    const double bytes = static_cast<double>(c.vocab * c.hidden * exec::elt_size(d));
    if (net > 0) head_gbs[d] = bytes / net;
  }

  // Weight streaming: the rate at which whole-model decode steps stream the weights differs from
  // one product's in the micro-benchmark (measured here: whole-model decode faster by up to
  // ~10 %), so the M = 1 rate of each dtype (and the memory bandwidth with the fastest) is
  // scaled until the predicted decode step of the CPU-only run equals the measured one.
  // Both fits: the scale `set` applies, iterated until the CPU-only run's predicted phase time
  // (`phase` picks decode or prefill) equals the measured one.
  auto fit_scale = [&](DType d, double measured, const std::function<void(double)>& set,
                       double (*phase)(const sim::Prediction&)) {
    double sc = 1;
    for (int it = 0; it < 8; ++it) {
      set(sc);
      const sim::Calibration cal = calibration_with(dispatch_us);
      const double pred = phase(predict(opt.model, d, cpu_map, hw, &cal, opt.run.prompt, opt.run.new_tokens));
      sc = std::clamp(sc * pred / measured, 0.5, 2.0);
    }
    return sc;
  };
  std::map<DType, double> stream_fit;
  for (const auto& [d, r] : runs) {
    stream_fit[d] = fit_scale(
        d, r.decode_token_s,
        [&, d = d](double sc) {
          stream_scale[d] = sc;
          bw_scale = sc;
        },
        [](const sim::Prediction& p) { return p.decode_token_s; });
  }
  bw_scale = 1;
  for (const auto& [d, sc] : stream_fit) {
    stream_scale[d] = sc;
    bw_scale = std::max(bw_scale, sc);
  }
  // Matrix products: the same for prefill. The micro-benchmark times one product shape at a time
  // on warm weights, and whole-model prefill measured 10-12 % slower than its products predict;
  // each dtype's curve above M = 1 is scaled until the CPU-only prefill is predicted exactly.
  for (const auto& [d, r] : runs) {
    prefill_scale[d] = fit_scale(
        d, r.prefill_s, [&, d = d](double sc) { prefill_scale[d] = sc; },
        [](const sim::Prediction& p) { return p.prefill_s; });
  }

  // The residuals, reported in the file.
  std::ostringstream fitb;
  fitb << "fit:\n";
  fitb << "  method: \"Huber-weighted least squares on relative residuals (Eigen QR)\"\n";
  for (const auto& [d, p] : per) {
    fitb << "  stream_" << dtype_name(d) << ": {samples: " << p.samples << ", bandwidth_gbs: " << fmt(p.bw / 1e9)
         << ", row_ns: " << fmt(p.row_s * 1e9) << ", intercept_us: " << fmt(p.stream.intercept * 1e6)
         << ", median_abs_residual: " << fmt(p.stream.fit.median_abs_residual, 3)
         << ", max_abs_residual: " << fmt(p.stream.fit.max_abs_residual, 3)
         << ", outliers: " << p.stream.fit.downweighted << "}\n";
  }
  fitb << "  disk_probe: {cold_gbs: " << fmt(probe_cold_bw / 1e9)
       << ", cold_latency_us: " << fmt(std::max(0.0, disk.cold.intercept) * 1e6)
       << ", warm_gbs: " << fmt(probe_warm_bw / 1e9) << ", large_warm: {mib: " << disk.large_bytes / (1024 * 1024)
       << ", gbs: " << fmt(disk.large_gbs) << ", page_cache_probe_ratio: " << fmt(disk.large_probe_ratio)
       << ", referred_gbs: " << fmt(large_warm_gbs()) << "}, large_cold: {mib: " << disk.large_bytes / (1024 * 1024)
       << ", gbs: " << fmt(disk.large_cold_gbs) << "}}\n";
  fitb << "  disk_whole_model: {layers_on_disk: " << disk_layers << ", cold_gbs: [";
  for (size_t i = 0; i < cold_rates.size(); ++i) fitb << (i ? ", " : "") << fmt(cold_rates[i] / 1e9);
  fitb << "], warm_gbs: [";
  for (size_t i = 0; i < warm_rates.size(); ++i) fitb << (i ? ", " : "") << fmt(warm_rates[i] / 1e9);
  fitb << "]}\n";
  fitb << "  disk_cold: {samples: " << disk.samples
       << ", median_abs_residual: " << fmt(disk.cold.fit.median_abs_residual, 3)
       << ", max_abs_residual: " << fmt(disk.cold.fit.max_abs_residual, 3) << "}\n";
  fitb << "  disk_warm: {samples: " << disk.samples
       << ", median_abs_residual: " << fmt(disk.warm.fit.median_abs_residual, 3)
       << ", max_abs_residual: " << fmt(disk.warm.fit.max_abs_residual, 3) << "}\n";
  for (const auto& [d, p] : per) {
    fitb << "  attention_" << dtype_name(d) << ": {decode_context_s: " << curve_yaml(p.attention.decode)
         << ", prefill_tokens_s: " << curve_yaml(p.attention.prefill)
         << ", per_key_ns: " << fmt(p.attention.decode_fit.slope * 1e9)
         << ", intercept_us: " << fmt(p.attention.decode_fit.intercept * 1e6)
         << ", median_abs_residual: " << fmt(p.attention.decode_fit.fit.median_abs_residual, 3) << "}\n";
  }
  fitb << "  dispatch: {kernels_per_decode_step: " << fmt(kernels) << ", tiny_model_probe_us: " << fmt(dispatch_us)
       << ", probe_decode_s: " << fmt(probe.decode_s) << "}\n";
  for (const auto& [d, sc] : stream_fit) {
    fitb << "  streaming_" << dtype_name(d) << ": {micro_benchmark_gbs: " << fmt(per[d].bw / 1e9)
         << ", whole_model_decode_gbs: " << fmt(per[d].bw * sc / 1e9) << ", scale: " << fmt(sc) << "}\n";
  }
  for (const auto& [d, ts] : head_runs_s) {
    fitb << "  head_" << dtype_name(d) << ": {vocab: " << c.vocab << ", hidden: " << c.hidden << ", decode_ms: [";
    for (size_t i = 0; i < ts.size(); ++i) fitb << (i ? ", " : "") << fmt(ts[i] * 1e3, 4);
    fitb << "], gbs: " << fmt(head_gbs.count(d) ? head_gbs[d] / 1e9 : 0.0)
         << ", layers_gbs: " << fmt(per[d].bw * stream_fit[d] / 1e9) << "}\n";
  }
  for (const auto& [d, p] : per) {
    fitb << "  products_" << dtype_name(d) << ": {m: 64, samples: " << p.products.fit.residuals.size()
         << ", gflops: " << fmt(p.products.rate / 1e9) << ", input_ns: " << fmt(p.products.input_cost * 1e9)
         << ", median_abs_residual: " << fmt(p.products.fit.median_abs_residual, 3)
         << ", max_abs_residual: " << fmt(p.products.fit.max_abs_residual, 3)
         << ", outliers: " << p.products.fit.downweighted << "}\n";
  }
  for (const auto& [d, sc] : prefill_scale) {
    fitb << "  prefill_" << dtype_name(d) << ": {matmul_scale: " << fmt(sc) << "}\n";
  }
  fitb << "  page_cache_by_dtype: {";
  bool first = true;
  for (const auto& [d, w] : warm_by_dtype) {
    fitb << (first ? "" : ", ") << dtype_name(d) << ": {fitted_gbs: " << fmt(w / 1e9)
         << ", pairs_step_gbs: " << fmt(pair_warm.count(d) ? pair_warm[d] / 1e9 : 0.0)
         << ", copy_alone_gbs: " << fmt(direct_warm.count(d) ? direct_warm[d] / 1e9 : 0.0) << "}";
    first = false;
  }
  fitb << "}\n";
  // The page cache by tensor size: each disk-run module's extra against itself resident (the
  // curve the calibration keeps).
  for (const auto& [d, ws] : warm_size_fits) {
    fitb << "  page_cache_by_size_" << dtype_name(d) << ": {modules: [";
    for (size_t i = 0; i < ws.points.size(); ++i) {
      fitb << (i ? ", " : "") << "{module: " << ws.modules[i] << ", mean_tensor_mib: " << fmt(ws.points[i].first)
           << ", extra_ms: " << fmt(ws.extra_s[i] * 1e3) << ", gbs: " << fmt(ws.points[i].second / 1e9) << "}";
    }
    fitb << "], curve: "
         << (warm_curve_by_dtype.count(d) ? "these rates (the disk runs' modules against themselves resident)"
                                          : "none (fewer than 2 sizes): the pairs' step extra")
         << "}\n";
  }
  // ... and tensor by tensor (each layer weight's read and product against itself resident), for
  // the record: the tensors' summed extra over the modules'.
  for (const auto& [d, fit] : warm_tensor_fits) {
    const WarmSizes& ws = fit.first;
    fitb << "  page_cache_by_tensor_" << dtype_name(d) << ": {tensors: [";
    for (size_t i = 0; i < ws.points.size(); ++i) {
      fitb << (i ? ", " : "") << "{tensors: " << ws.modules[i] << ", mib: " << fmt(ws.points[i].first)
           << ", extra_ms: " << fmt(ws.extra_s[i] * 1e3) << ", gbs: " << fmt(ws.points[i].second / 1e9) << "}";
    }
    fitb << "], of_the_modules_extra: " << fmt(fit.second) << ", curve: no (the modules')}\n";
  }
  fitb << "  whole_model_repetitions: " << whole_reps << "\n";
  // The CPU-only / disk pairs: how many were run; each one's decode extra, the resident modules'
  // ratio (disk run over CPU-only run) its CPU-only run was scaled by, and both runs' decode (ms).
  auto list = [&](const std::vector<double>& xs, double unit, int digits) {
    std::string t = "[";
    for (size_t i = 0; i < xs.size(); ++i) t += (i ? ", " : "") + fmt(xs[i] * unit, digits);
    return t + "]";
  };
  for (const auto& [d, e] : pair_extras) {
    const std::vector<double>& cpu_dec = raw_cpu_decode[d];
    std::vector<double> disk_dec;
    for (const PlacementRun& r : disk_reps_of[d]) disk_dec.push_back(r.decode_token_s);
    fitb << "  disk_pairs_" << dtype_name(d) << ": {pairs: " << e.size() << ", decode_extra_ms: " << list(e, 1e3, 4)
         << ", resident_ratio: " << list(pair_ratios[d], 1, 4) << ", cpu_decode_ms: " << list(cpu_dec, 1e3, 4)
         << ", disk_decode_ms: " << list(disk_dec, 1e3, 4) << "}\n";
  }
  fitb << "  load_guard: {enabled: " << (guard.settings().enabled ? "true" : "false")
       << ", spoiled_cores: " << fmt(guard.settings().spoiled_cores) << ", remeasured: " << guard.remeasured()
       << ", max_foreign_cores: " << fmt(guard.max_foreign_cores(), 3) << "}\n";
  {
    std::vector<double> sorted = reference_probes;
    std::sort(sorted.begin(), sorted.end());
    fitb << "  reference_probe: {probes: " << sorted.size() << ", median_ms: " << fmt(median(sorted))
         << ", min_ms: " << fmt(sorted.front()) << ", max_ms: " << fmt(sorted.back())
         << ", reads: " << kReferenceProbeReads << "}\n";
    if (!page_cache_probes.empty()) {
      sorted = page_cache_probes;
      std::sort(sorted.begin(), sorted.end());
      fitb << "  page_cache_probe: {probes: " << sorted.size() << ", median_gbs: " << fmt(median(sorted))
           << ", min_gbs: " << fmt(sorted.front()) << ", max_gbs: " << fmt(sorted.back()) << "}\n";
    }
  }
  for (const auto& [d, reps] : cpu_reps_of) {
    std::vector<double> referred;
    for (const PlacementRun& r : reps) referred.push_back(r.decode_token_s);
    fitb << "  decode_referral_" << dtype_name(d) << ": {probe_dtype: " << dtype_name(d)
         << ", reference_probe_ms: " << fmt(reference_of[d]) << ", probe_ms: " << list(decode_probe_ms[d], 1, 4)
         << ", measured_decode_ms: " << list(raw_cpu_decode[d], 1e3, 4)
         << ", referred_decode_ms: " << list(referred, 1e3, 4) << "}\n";
  }
  if (opt.gpu) fitb << opt.gpu->fit_yaml;
  const sim::Calibration final_cal = calibration_with(dispatch_us);
  fitb << "  whole_model_runs:\n";
  for (const auto& [d, r] : runs) {
    const sim::Prediction p = predict(opt.model, d, cpu_map, hw, &final_cal, opt.run.prompt, opt.run.new_tokens);
    fitb << "    - {model: " << opt.model_id << ", dtype: " << dtype_name(d)
         << ", placement: cpu, prompt: " << opt.run.prompt << ", measured_prefill_s: " << fmt(r.prefill_s)
         << ", fitted_prefill_s: " << fmt(p.prefill_s) << ", measured_decode_s: " << fmt(r.decode_token_s)
         << ", fitted_decode_s: " << fmt(p.decode_token_s) << "}\n";
  }
  // The self-check: the finished calibration predicts every whole-model run it was fitted on.
  const std::string disk_placement = "disk " + std::to_string(disk_layers) + "/" + std::to_string(c.layers) + " layers";
  for (const auto* set : {&runs, &disk_runs}) {
    for (const auto& [d, r] : *set) {
      const bool on_disk = set == &disk_runs;
      const sim::Prediction p =
          predict(opt.model, d, on_disk ? disk_map : cpu_map, hw, &final_cal, opt.run.prompt, opt.run.new_tokens);
      SelfCheckRow row{
          d, on_disk ? disk_placement : "cpu", r.prefill_s, p.prefill_s, r.decode_token_s, p.decode_token_s};
      // A disk run is compared at the machine state of the CPU-only runs, which the fit describes:
      // the CPU-only runs' median plus the median over the pairs of what each disk run added to
      // its own CPU-only partner (scaled by their resident ratio) — as the fit measures it. (The
      // median disk run over the median resident ratio took the two from different pairs: on the
      // AVX2 EPYC, 2026-12-07, pairs of bfloat16 extras 12.1, 12.0 and 10.5 ms then read as 82.5
      // ms/token at the CPU-only state, 1.0 ms below the CPU-only runs themselves.)
      if (on_disk) {
        const auto cpu = std::find_if(runs.begin(), runs.end(), [&](const auto& x) { return x.first == d; });
        if (cpu != runs.end())
          row.state_ratio = disk_state_ratio(r.decode_token_s, cpu->second.decode_token_s, pair_extras[d]);
      }
      out.self_check.push_back(row);
    }
  }
  out.calibration = calibration_with(dispatch_us);
  out.calibration.host.reference_probe_ms = reference_ms;
  for (const auto& [d, ref] : reference_of) {
    if (d != DType::kFloat32 && ref > 0) out.calibration.host.dtype_reference_probe_ms[d] = ref;
  }
  if (!page_cache_probes.empty()) out.calibration.host.page_cache_probe_gbs = median(page_cache_probes);
  out.calibration.fit = load_yaml_string(fitb.str(), "the profiler's fit block")["fit"];
  out.yaml = sim::calibration_yaml(out.calibration);
  sim::parse_calibration(out.yaml, "profile");  // validates what is about to be written

  out.summary.push_back("memory bandwidth " + fmt(bw * bw_scale / 1e9) + " GB/s (micro-benchmark " + fmt(bw / 1e9) +
                        ")");
  for (const auto& [d, p] : per) {
    std::string s = std::string(dtype_name(d)) + ": streaming " + fmt(p.bw / 1e9) + " GB/s + " + fmt(p.row_s * 1e9) +
                    " ns per row; products + " + fmt(p.products.input_cost * 1e9) +
                    " ns per input element; GFLOP/s by M:";
    for (const auto& [m, r] : p.curve) s.append(" ").append(fmt(m)).append(":").append(fmt(r / 1e9));
    out.summary.push_back(s);
  }
  {
    std::string pc = "disk cold";
    if (cold_by_dtype.size() > 1) {
      for (const auto& [d, r] : cold_by_dtype)
        pc.append(" ").append(dtype_name(d)).append(" ").append(fmt(r / 1e9)).append(" GB/s");
    } else {
      pc.append(" ").append(fmt(cold_bw / 1e9)).append(" GB/s + ").append(fmt(cold_lat * 1e6)).append(" us");
    }
    pc.append(", page cache");
    if (warm_by_dtype.size() > 1 || !warm_curve_by_dtype.empty()) {
      for (const auto& [d, w] : warm_by_dtype) {
        pc.append(" ").append(dtype_name(d)).append(" ").append(fmt(w / 1e9)).append(" GB/s");
        if (const auto it = warm_curve_by_dtype.find(d); it != warm_curve_by_dtype.end()) {
          pc.append(" (by tensor size:");
          for (const auto& [mib, r] : it->second) pc.append(" ").append(fmt(mib)).append(" MiB ").append(fmt(r / 1e9));
          pc.append(")");
        }
      }
    } else {
      pc.append(" ").append(fmt(warm_bw / 1e9)).append(" GB/s");
    }
    out.summary.push_back(pc);
  }
  for (const auto& [d, p] : per) {
    out.summary.push_back("attention " + std::string(dtype_name(d)) + ": " + fmt(p.attention.decode_fit.slope * 1e9) +
                          " ns per key (decode), + " + fmt(p.attention.overhead_s * 1e6) + " us per layer");
  }
  for (const auto& [d, cpu_reps] : cpu_reps_of) {
    std::string w = "whole-model runs " + std::string(dtype_name(d)) + ": CPU-only decode";
    for (double t : raw_cpu_decode[d]) w.append(" ").append(fmt(t * 1e3, 4));
    w.append(" ms/token (at the " + std::string(dtype_name(d)) + " probe's median, " + fmt(reference_of[d]) + " ms:");
    for (const PlacementRun& r : cpu_reps) w.append(" ").append(fmt(r.decode_token_s * 1e3, 4));
    w.append("); " + disk_placement + " decode");
    for (size_t i = 0; i < disk_reps_of[d].size(); ++i) {
      w.append(" ").append(fmt(disk_reps_of[d][i].decode_token_s * 1e3, 4));
      w.append(" (resident ratio ").append(fmt(pair_ratios[d][i], 3)).append(")");
    }
    out.summary.push_back(w);
  }
  out.summary.push_back("dispatch overhead " + fmt(dispatch_us) + " us per operator kernel (tiny-model probe)");
  for (const auto& [d, sc] : stream_fit) {
    out.summary.push_back("weight streaming " + std::string(dtype_name(d)) + ": " + fmt(per[d].bw * sc / 1e9) +
                          " GB/s in whole-model decode (micro-benchmark " + fmt(per[d].bw / 1e9) + ")");
  }
  for (const auto& [d, g] : head_gbs) {
    out.summary.push_back("LM head " + std::string(dtype_name(d)) + ": " + fmt(g / 1e9) +
                          " GB/s in whole-model decode (measured in the CPU-only runs)");
  }
  for (const auto& [d, sc] : prefill_scale) {
    out.summary.push_back("matrix products " + std::string(dtype_name(d)) + ": scaled by " + fmt(sc) +
                          " to the whole-model prefill");
  }
  return out;
}

}  // namespace dmap::profile
