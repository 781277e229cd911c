// Whole-model runs of dmap's executor under a placement, their traces, and the simulator's
// prediction of the same run (see profile.h).
#include "profile/probes.h"
#include "profile/run_trace.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <random>
#include <sstream>

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
#include "exec/map_placement.h"

namespace dmap::profile {

namespace {

// A counter of /proc/vmstat (pgpgin, pgpgout: kilobytes); -1 where unreadable.
double vmstat_kb(const std::string& key) {
  std::ifstream in("/proc/vmstat");
  std::string k;
  double v = 0;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return -1;
}

}  // namespace

void add_run_to_trace(Trace& t, int pid, const std::string& label, const PlacementRun& r) {
  t.name_process(pid, label);
  t.name_thread(pid, 1, "CPU executor (module ranges)");
  for (const auto& e : r.events) {
    if (e.step >= kTraceDecodeSteps) continue;
    t.add({r.modules[static_cast<size_t>(e.module)].module,
           e.step < 0 ? "prefill" : "decode",
           pid,
           1,
           e.start_s * 1e6,
           e.dur_s * 1e6,
           {{"step", e.step < 0 ? std::string("prefill") : std::to_string(e.step)}}});
  }
}

void add_predicted_and_measured_trace(Trace& trace, const ValidationCase& c, const PlacementRun& r,
                                      const sim::Hardware& hw, const sim::Calibration& cal, const RunSettings& rs) {
  const std::string label = c.model_id + " " + std::string(dtype_name(c.dtype)) + " " + c.placement;
  add_run_to_trace(trace, 1, "measured: " + label, r);
  const int pid = 2;
  trace.name_process(pid, "predicted: " + label);
  const ModuleTree tree = build_module_tree(c.spec);
  const sim::ModelGraph g = sim::build_graph(tree, c.dtype);
  const sim::Rates rates = sim::make_rates(hw, &cal);
  sim::Workload w;
  w.prompt = rs.prompt;
  w.new_tokens = rs.new_tokens;
  w.dtype = c.dtype;
  const sim::CostModel cm(g, rates, w);
  const DeviceMap dm = c.device_map();
  sim::Timeline tl;
  sim::simulate(cm, hw, dm, sim_semantics(dm, rs), &tl);
  std::map<std::string, int> lanes;  // lane -> thread id, in order of appearance
  auto tid_of = [&](const std::string& lane) {
    auto it = lanes.find(lane);
    if (it != lanes.end()) return it->second;
    const int tid = static_cast<int>(lanes.size()) + 1;
    lanes.emplace(lane, tid);
    trace.name_thread(pid, tid,
                      lane == "disk"   ? "disk reads (cost model)"
                      : lane == "link" ? "copies to the executing device (cost model)"
                                       : lane + " (cost model)");
    return tid;
  };
  std::vector<double> starts(static_cast<size_t>(std::min<int64_t>(rs.new_tokens, kTraceDecodeSteps + 1)), -1);
  for (const auto& e : r.events) {
    const size_t k = static_cast<size_t>(e.step + 1);
    if (k < starts.size() && (starts[k] < 0 || e.start_s < starts[k])) starts[k] = e.start_s;
  }
  for (size_t k = 0; k < starts.size(); ++k) {
    if (starts[k] < 0) continue;
    for (const auto& sp : k == 0 ? tl.prefill : tl.decode) {
      const sim::Op& op = g.ops[static_cast<size_t>(sp.op)];
      std::string name = tree.node(op.node).name + " (" + sim::op_kind_name(op.kind) + ")";
      if (sp.what != "compute") name = sp.what + ": " + name;
      trace.add({name,
                 k == 0 ? "prefill" : "decode",
                 pid,
                 tid_of(sp.lane),
                 (starts[k] + sp.start_s) * 1e6,
                 sp.dur_s * 1e6,
                 {}});
    }
  }
}

std::string cpu_description() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model;
  int cpus = 0;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0 && model.empty()) model = line.substr(line.find(':') + 2);
    if (line.rfind("processor", 0) == 0) ++cpus;
  }
  return (model.empty() ? std::string("unknown CPU") : model) + ", " + std::to_string(cpus) + " CPUs";
}

GpuTrace host_trace(const std::vector<exec::ModuleEvent>& events, const std::vector<exec::ModuleTime>& modules,
                    const std::string& source) {
  GpuTrace t;
  t.provenance.source = source;
  t.provenance.dmap_version = DMAP_VERSION;
  for (const auto& e : events) {
    HostRange r;
    r.module = modules.at(static_cast<size_t>(e.module)).module;
    r.step = e.step;
    r.start_ns = static_cast<int64_t>(std::llround(e.start_s * 1e9));
    r.end_ns = r.start_ns + static_cast<int64_t>(std::llround(e.dur_s * 1e9));
    r.thread_id = 1;
    t.host_ranges.push_back(std::move(r));
  }
  return t;
}

DeviceMap layers_on_disk_map(const ModelSpec& spec, int64_t disk_layers) {
  const exec::ExecConfig c = exec::exec_config(spec);
  DMAP_CHECK(disk_layers >= 0 && disk_layers <= c.layers, "disk_layers out of range");
  DeviceMap dm;
  dm.assign("model.embed_tokens", Device::cpu());
  for (int64_t l = 0; l < c.layers; ++l) {
    dm.assign("model.layers." + std::to_string(l), l >= c.layers - disk_layers ? Device::disk() : Device::cpu());
  }
  dm.assign("model.norm", Device::cpu());
  if (!c.tie) dm.assign("lm_head", Device::cpu());
  return dm;
}

std::unique_ptr<exec::Executor> make_executor(const exec::ExecConfig& cfg, const exec::ModelWeights& weights,
                                              const exec::Placement& p, const std::string& backend,
                                              const exec::RunOptions& opt) {
  const auto b = exec::parse_backend(backend);
  DMAP_CHECK(b.has_value(), "unknown backend " + backend);
  return exec::make_executor(cfg, weights, p, *b, opt);
}

sim::Semantics sim_semantics(const DeviceMap& dm, const RunSettings& rs) {
  bool gpu = false;
  for (const auto& [name, d] : dm.items()) gpu = gpu || d.is_gpu();
  if (!gpu || rs.backend != "cuda") return Semantics::kCpu;
  return rs.semantics;  // one vocabulary (core/semantics.h)
}

PlacementRun run_placement(const ModelSpec& spec, DType dtype, const DeviceMap& dm, const RunSettings& rs) {
  namespace fs = std::filesystem;
  const exec::ExecConfig cfg = exec::exec_config(spec);
  const ModuleTree tree = build_module_tree(spec);
  exec::ModelWeights weights = exec::ModelWeights::random(cfg, dtype, rs.seed);
  std::vector<std::string> on_disk;
  for (const auto& [name, d] : exec::tensor_devices(tree, dm, weights)) {
    if (d.kind == Device::Kind::kDisk) on_disk.push_back(name);
    if (d.is_gpu() && rs.backend != "cuda") throw InputError("the CPU executor cannot run " + name + " on " + d.str());
  }
  const exec::Placement placement =
      rs.backend == "cuda" ? exec::map_placement(tree, dm, weights, cfg, rs.semantics) : exec::Placement{};
  const std::string dir = (fs::path(rs.scratch_dir.empty() ? fs::temp_directory_path().string() : rs.scratch_dir) /
                           ("dmap_profile_offload_" + std::to_string(getpid())))
                              .string();
  const RemoveOnInterrupt guard(dir);
  if (!on_disk.empty()) weights.offload_to_disk(on_disk, dir);
  struct Cleanup {
    std::string d;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  } cleanup{on_disk.empty() ? std::string() : dir};

  exec::RunOptions opt;
  opt.batch = 1;
  opt.max_seq = rs.prompt + rs.new_tokens;
  opt.threads = rs.threads;
  opt.record_events = true;
  std::mt19937_64 rng(rs.seed + 1);
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < rs.prompt; ++i) ids.push_back(static_cast<int32_t>(rng() % static_cast<uint64_t>(cfg.vocab)));
  std::vector<float> logits(static_cast<size_t>(cfg.vocab));
  std::vector<double> prefills;
  {
    // A warm-up prefill on a scratch model: thread teams, kernel buffers, first-touch page
    // faults (and on a GPU the CUDA context and cuBLAS's workspaces) would otherwise land in
    // the measured prefill (measured: up to 30 % of a 64-token prefill of a 0.5B model). Then
    // all but one of the timed cold prefills. The scratch model is gone before the measured one
    // is built, so the two never share a GPU's memory.
    exec::RunOptions wopt = opt;
    wopt.record_events = false;
    wopt.drop_page_cache = true;
    std::unique_ptr<exec::Executor> scratch = make_executor(cfg, weights, placement, rs.backend, wopt);
    std::vector<float> wl(static_cast<size_t>(cfg.vocab));
    for (int rep = 0; rep < std::max(1, rs.prefill_reps); ++rep) {
      const auto t0 = Clock::now();
      scratch->forward(ids.data(), rs.prompt, 0, wl.data());
      if (rep > 0) prefills.push_back(since(t0));
    }
  }
  std::unique_ptr<exec::Executor> executor = make_executor(cfg, weights, placement, rs.backend, opt);
  exec::Executor& model = *executor;
  PlacementRun r;
  r.forwards = rs.new_tokens;
  model.set_drop_page_cache(true);  // cold start: nothing offloaded is cached yet
  model.begin_phase(true);
  auto t0 = Clock::now();
  model.forward(ids.data(), rs.prompt, 0, logits.data());
  prefills.push_back(since(t0));
  r.prefill_s = median(prefills);
  model.set_drop_page_cache(false);
  const double pgpgin0 = vmstat_kb("pgpgin");
  const double read_s0 = model.disk_read_seconds();
  int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  for (int64_t step = 1; step < rs.new_tokens; ++step) {
    model.begin_phase(false);
    t0 = Clock::now();
    model.forward(&next, 1, rs.prompt + step - 1, logits.data());
    r.decode_s.push_back(since(t0));
    next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  r.decode_token_s = median(r.decode_s);
  if (rs.new_tokens > 1)
    r.decode_disk_read_s = (model.disk_read_seconds() - read_s0) / static_cast<double>(rs.new_tokens - 1);
  const double pgpgin1 = vmstat_kb("pgpgin");
  if (pgpgin0 >= 0 && pgpgin1 >= 0) r.decode_device_read_bytes = (pgpgin1 - pgpgin0) * 1024.0;
  r.modules = model.module_times();
  r.events = model.events();
  r.disk_bytes_read = model.disk_bytes_read();
  return r;
}

sim::Prediction predict(const ModelSpec& spec, DType dtype, const DeviceMap& dm, const sim::Hardware& hw,
                        const sim::Calibration* cal, int64_t prompt, int64_t new_tokens, sim::Semantics semantics) {
  const ModuleTree tree = build_module_tree(spec);
  const sim::ModelGraph graph = sim::build_graph(tree, dtype);
  const sim::Rates rates = sim::make_rates(hw, cal);
  sim::Workload w;
  w.batch = 1;
  w.prompt = prompt;
  w.new_tokens = new_tokens;
  w.dtype = dtype;
  const sim::CostModel cm(graph, rates, w);
  return sim::simulate(cm, hw, dm, semantics);
}

}  // namespace dmap::profile
