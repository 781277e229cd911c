// Whole-model runs of dmap's executor under a placement, their traces, and the simulator's
// prediction of the same run (see profile.h).
#include "profile/probes.h"
#include "profile/run_trace.h"
#include "exec/run.h"

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
#include <cctype>
#include <thread>

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
#include "exec/cpu/kernels.h"
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

namespace {

std::string cpuinfo_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0 || line.rfind("Features", 0) == 0) return line.substr(line.find(':') + 1) + " ";
  }
  return "";
}

bool has_flag(const std::string& flags, const std::string& f) { return flags.find(" " + f + " ") != std::string::npos; }

}  // namespace

std::string cpu_isa() {
  const std::string f = cpuinfo_flags();
  std::string isa;
  if (has_flag(f, "avx512f")) {
    isa = "AVX-512";
  } else if (has_flag(f, "avx2")) {
    isa = "AVX2";
  } else if (has_flag(f, "sve")) {
    isa = "SVE";
  } else if (has_flag(f, "asimd")) {
    isa = "NEON";
  } else {
    isa = "no vector ISA dmap uses";
  }
  if (has_flag(f, "amx_tile")) isa += ", AMX";
  // DMAP_ISA caps the kernels (exec/cpu/kernels.h): the calibration describes the kernels that ran.
  const exec::cpu::Isa used = exec::cpu::best_isa();
  if (used != exec::cpu::detected_isa()) {
    const char* name = used == exec::cpu::Isa::kAvx2     ? "AVX2"
                       : used == exec::cpu::Isa::kAvx512 ? "AVX-512"
                                                         : "no vector ISA dmap uses";
    isa =
        std::string(name) + " (kernels capped by DMAP_ISA=" + exec::cpu::isa_name(used) + "; the CPU has " + isa + ")";
  }
  return isa;
}

std::string cpu_slug() {
  std::string model = cpu_description();
  model.resize(model.rfind(", "));  // the CPU count goes last
  // "Intel(R) Xeon(R) Platinum 8488C CPU @ 2.40GHz" -> "intel_xeon_platinum_8488c"
  for (const char* noise : {"(R)", "(r)", "(TM)", "(tm)"}) {
    for (size_t at; (at = model.find(noise)) != std::string::npos;) model.erase(at, std::strlen(noise));
  }
  if (const size_t at = model.find(" @ "); at != std::string::npos) model.resize(at);
  std::string slug;
  std::istringstream words(model);
  for (std::string w; words >> w;) {
    std::string lw;
    for (char ch : w) lw += std::isalnum(static_cast<unsigned char>(ch)) ? static_cast<char>(std::tolower(ch)) : '_';
    if (lw == "cpu" || lw == "processor" || lw.empty()) continue;
    slug += (slug.empty() ? "" : "_") + lw;
  }
  if (slug.empty()) slug = "cpu";
  std::string isa = cpu_isa();
  isa.resize(std::min(isa.size(), isa.find(" (")));  // what the kernels use, not what a cap hides
  std::string tag;
  if (isa.rfind("AVX-512", 0) == 0) tag = "avx512";
  if (isa.rfind("AVX2", 0) == 0) tag = "avx2";
  if (isa.rfind("SVE", 0) == 0) tag = "sve";
  if (isa.rfind("NEON", 0) == 0) tag = "neon";
  if (isa.find("AMX") != std::string::npos) tag += "_amx";
  const unsigned cpus = std::thread::hardware_concurrency();
  return slug + "_" + std::to_string(cpus ? cpus : 1) + "cpu" + (tag.empty() ? "" : "_" + tag);
}

std::string detected_host_yaml() {
  const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  long long mem_kb = 0;
  {
    std::ifstream in("/proc/meminfo");
    std::string key;
    long long v = 0;
    std::string unit;
    while (in >> key >> v >> unit) {
      if (key == "MemTotal:") {
        mem_kb = v;
        break;
      }
    }
  }
  const double ram_gib = mem_kb > 0 ? static_cast<double>(mem_kb) / (1024.0 * 1024.0) : 16.0;
  const std::string isa = cpu_isa();
  // FP32 lanes per core and cycle (two FMA units): AVX-512 32, AVX2 16, NEON/other 8.
  const double lanes = isa.rfind("AVX-512", 0) == 0 ? 32 : isa.rfind("AVX2", 0) == 0 ? 16 : 8;
  const double fp32 = static_cast<double>(cpus) * 2.5 * lanes * 2;  // GFLOP/s at an assumed 2.5 GHz
  std::ostringstream y;
  y << std::setprecision(4);
  std::string cpu;
  for (char ch : cpu_description()) {
    if (ch != '"' && ch != '\\' && static_cast<unsigned char>(ch) >= 0x20) cpu += ch;  // a plain YAML string
  }
  y << "name: \"" << cpu << ", " << isa << ", " << std::fixed << std::setprecision(1) << ram_gib
    << " GiB RAM (detected)\"\n";
  y << std::defaultfloat << std::setprecision(6);
  y << "cores: " << cpus << "\n";
  y << "memory_bandwidth_gbs: " << 10.0 * cpus << "\n";  // an estimate (a calibration measures it)
  y << "ram: " << std::fixed << std::setprecision(2) << ram_gib << "GiB\n";
  y << "reserved_ram: " << std::min(2.0, ram_gib / 4) << "GiB\n" << std::defaultfloat;
  y << "peak_gflops: {float32: " << fp32 << ", bfloat16: " << fp32 << ", float16: " << fp32 / 2 << "}\n";
  y << "dispatch_overhead_us: 5\n";
  y << "achievable: {memory: 1.0, compute: 0.35}\n";
  return y.str();
}

int64_t layers_of_fraction(double fraction, int64_t layers) {
  return static_cast<int64_t>(fraction * static_cast<double>(layers) + 0.5);
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

DeviceMap experts_on_disk_map(const ModelSpec& spec, int64_t disk_layers) {
  const ModuleTree tree = build_module_tree(spec);
  std::vector<int> experts;  // the routed experts module of each sparse layer, in order
  for (int id = 0; id < tree.size(); ++id) {
    if (!tree.node(id).is_tensor && is_routed_experts(tree, id)) experts.push_back(id);
  }
  DMAP_CHECK(disk_layers >= 0 && disk_layers <= static_cast<int64_t>(experts.size()), "disk_layers out of range");
  DeviceMap dm = layers_on_disk_map(spec, 0);
  for (size_t i = experts.size() - static_cast<size_t>(disk_layers); i < experts.size(); ++i)
    dm.assign(tree.node(experts[i]).name, Device::disk());
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
  opt.batch = rs.batch;
  opt.max_seq = rs.prompt + rs.new_tokens;
  opt.threads = rs.threads;
  opt.record_events = true;
  exec::RunPlan plan;
  std::mt19937_64 rng(rs.prompt_seed != 0 ? rs.prompt_seed : rs.seed + 1);
  // (Each sequence its own prompt: repeated prompts would route every sequence alike.)
  for (int64_t i = 0; i < rs.batch * rs.prompt; ++i)
    plan.ids.push_back(static_cast<int32_t>(rng() % static_cast<uint64_t>(cfg.vocab)));
  plan.prompt_len = rs.prompt;
  plan.new_tokens = rs.new_tokens;
  // A warm-up prefill on a scratch executor: thread teams, kernel buffers, first-touch page
  // faults (and on a GPU the CUDA context and cuBLAS's workspaces) would otherwise land in the
  // measured prefill (measured: up to 30 % of a 64-token prefill of a 0.5B model).
  plan.prefill_reps = std::max(1, rs.prefill_reps);
  plan.warm_up = true;
  plan.cold_prefill = true;  // cold start: nothing offloaded is cached yet
  plan.time_steps = rs.time_steps;
  double r_weights_gbs = 0;
  if (rs.read_weights) plan.before_run = [&] { r_weights_gbs = read_weights(weights, rs.threads).gbs(); };
  double pgpgin0 = -1;
  plan.after_prefill = [&] {
    if (rs.before_decode) rs.before_decode();
    pgpgin0 = vmstat_kb("pgpgin");
  };
  const exec::Backend backend = rs.backend == "cuda" ? exec::Backend::kCuda : exec::Backend::kCpu;
  exec::RunOutcome run = exec::run_placement(cfg, weights, placement, backend, opt, plan);
  const double pgpgin1 = vmstat_kb("pgpgin");
  if (rs.after_decode) rs.after_decode();
  PlacementRun r;
  r.weights_gbs = r_weights_gbs;
  r.forwards = rs.new_tokens;
  r.prefill_s = run.result.prefill_s;
  r.decode_s = run.result.decode_s;
  r.decode_token_s = median(r.decode_s);
  r.decode_disk_read_s = run.decode_disk_read_s;
  r.decode_weight_s = std::move(run.decode_weight_s);
  if (pgpgin0 >= 0 && pgpgin1 >= 0) r.decode_device_read_bytes = (pgpgin1 - pgpgin0) * 1024.0;
  r.modules = run.executor->module_times();
  r.events = run.executor->events();
  r.disk_bytes_read = run.executor->disk_bytes_read();
  r.experts = run.executor->expert_counts();
  return r;
}

sim::Prediction predict(const ModelSpec& spec, DType dtype, const DeviceMap& dm, const sim::Hardware& hw,
                        const sim::Calibration* cal, int64_t prompt, int64_t new_tokens, sim::Semantics semantics,
                        sim::Runtime runtime, int64_t batch) {
  const ModuleTree tree = build_module_tree(spec);
  const sim::ModelGraph graph = sim::build_graph(tree, dtype);
  const sim::Rates rates = sim::runtime_rates(sim::make_rates(hw, cal), runtime, sim::profile_for(cal, runtime));
  sim::Workload w;
  w.batch = batch;
  w.prompt = prompt;
  w.new_tokens = new_tokens;
  w.dtype = dtype;
  const sim::CostModel cm(graph, rates, w);
  return sim::simulate(cm, hw, dm, semantics);
}

double predicted_touched_experts(const ModelSpec& spec, const sim::Calibration* cal, double tokens, double sequences) {
  const ModuleTree tree = build_module_tree(spec);
  if (tree.dims.num_experts <= 0) return 0;
  const double spread = cal && cal->moe_routing_spread ? *cal->moe_routing_spread : 1.0;
  const double seq = cal && cal->moe_sequence_spread ? *cal->moe_sequence_spread : 1.0;
  const double b = std::max(1.0, sequences);
  return sim::touched_experts(tree.dims.num_experts, tree.dims.experts_per_token, b, tokens / b, spread, seq);
}

}  // namespace dmap::profile
