// The CPU profiler and validation (see profile.h): whole-model runs of dmap's executor, the
// micro-benchmarks (weight streaming, products, attention, disk, dispatch), the fit of a typed
// calibration to them, and held-out validation of its predictions.
#include "profile/profile.h"

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

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

size_t elt_bytes(DType d) { return d == DType::kFloat32 ? 4 : 2; }

exec::cpu::WType wtype(DType d) {
  if (d == DType::kBFloat16) return exec::cpu::WType::kBF16;
  if (d == DType::kFloat16) return exec::cpu::WType::kF16;
  return exec::cpu::WType::kF32;
}

// A pool of weight copies larger than the caches: each timed product reads the next copy, so
// its weights come from DRAM as they do in a forward pass.
class WeightPool {
 public:
  WeightPool(DType d, int64_t n, int64_t k, size_t pool_bytes) : d_(d), n_(n), k_(k) {
    bytes_ = static_cast<size_t>(n * k) * elt_bytes(d);
    copies_ = std::max<size_t>(2, pool_bytes / std::max<size_t>(1, bytes_));
    data_.resize(copies_ * bytes_);
    // One random block repeated: the values do not matter for timing, only that they are
    // ordinary numbers (no denormals or NaNs).
    std::vector<uint8_t> block(std::min<size_t>(data_.size(), 1u << 20));
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-0.05f, 0.05f);
    for (size_t i = 0; i < block.size() / elt_bytes(d); ++i) {
      const float v = u(rng);
      if (d == DType::kFloat32) {
        std::memcpy(block.data() + i * 4, &v, 4);
      } else {
        const uint16_t h = d == DType::kBFloat16 ? exec::cpu::f32_to_bf16(v) : exec::cpu::f32_to_f16(v);
        std::memcpy(block.data() + i * 2, &h, 2);
      }
    }
    for (size_t o = 0; o < data_.size(); o += block.size()) {
      std::memcpy(data_.data() + o, block.data(), std::min(block.size(), data_.size() - o));
    }
  }
  exec::cpu::Weight next() {
    const uint8_t* p = data_.data() + (i_++ % copies_) * bytes_;
    return exec::cpu::Weight{p, wtype(d_), n_, k_};
  }
  size_t bytes() const { return bytes_; }

 private:
  DType d_;
  int64_t n_, k_;
  size_t bytes_ = 0, copies_ = 0, i_ = 0;
  std::vector<uint8_t> data_;
};

// Median seconds of `reps` products y = x W^T with M rows.
double time_linear(WeightPool& pool, int64_t M, int threads, int reps) {
  const exec::cpu::Weight w0 = pool.next();
  std::vector<float> x(static_cast<size_t>(M * w0.cols)), y(static_cast<size_t>(M * w0.rows));
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& v : x) v = exec::cpu::round_bf16(u(rng));
  exec::cpu::linear(x.data(), M, w0, nullptr, y.data(), threads);  // warm-up (thread team, buffers)
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const exec::cpu::Weight w = pool.next();
    const auto t0 = Clock::now();
    exec::cpu::linear(x.data(), M, w, nullptr, y.data(), threads);
    t.push_back(since(t0));
  }
  return median(t);
}

struct DiskFit {
  LineFit cold, warm;
  int samples = 0;
};

// Reads of 0.25..64 MiB tensors from scratch files: cold (evicted from the page cache first) and warm.
DiskFit measure_disk(const std::string& dir, bool quick, const ProgressFn& progress) {
  namespace fs = std::filesystem;
  const fs::path folder = fs::path(dir) / ("dmap_profile_disk_" + std::to_string(getpid()));
  const RemoveOnInterrupt guard(folder.string());
  fs::create_directories(folder);
  struct Cleanup {
    fs::path d;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  } cleanup{folder};
  // Sizes of the tensors a layer holds (0.25 .. 64 MiB), each read several times: a cold read's
  // time varies by tens of percent on network-backed disks. One file per read, written and
  // flushed first, read as the executor reads a disk-offloaded tensor's file (exec::DiskReader:
  // a copy out of the file's memory map; cold: its pages unmapped and evicted first).
  const std::vector<size_t> sizes =
      quick ? std::vector<size_t>{1u << 20, 4u << 20, 16u << 20}
            : std::vector<size_t>{1u << 18, 1u << 20, 2u << 20, 4u << 20, 8u << 20, 16u << 20, 32u << 20, 64u << 20};
  const int reps = quick ? 2 : 5;
  std::vector<char> block(1 << 20);
  std::mt19937 rng(11);
  for (auto& c : block) c = static_cast<char>(rng());
  std::vector<exec::WeightRef> files;
  for (size_t s : sizes) {
    for (int r = 0; r < reps; ++r) {
      exec::WeightRef ref;
      ref.name = "disk probe";
      ref.file = (folder / (std::to_string(files.size()) + ".dat")).string();
      ref.w.type = exec::cpu::WType::kF32;
      ref.w.rows = 1;
      ref.w.cols = static_cast<int64_t>(s / 4);
      const int fd = ::open(ref.file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) throw RuntimeFailure("cannot write the disk probe file " + ref.file + ": " + std::strerror(errno));
      bool ok = true;
      for (size_t w = 0; w < s && ok; w += block.size()) {
        const size_t n = std::min(block.size(), s - w);
        ok = ::write(fd, block.data(), n) == static_cast<ssize_t>(n);
      }
      ok = ::fdatasync(fd) == 0 && ok;
      if (::close(fd) != 0 || !ok) throw RuntimeFailure("cannot write the disk probe file " + ref.file);
      files.push_back(ref);
    }
  }
  exec::DiskReader reader;
  std::vector<char> buf(sizes.back());
  std::vector<double> xb, cold, wb, warm;
  int step = 0;
  for (const auto& ref : files) {
    if (progress) progress("disk reads", ++step, static_cast<int>(files.size()));
    const double bytes = static_cast<double>(exec::weight_bytes(ref.w));
    auto t0 = Clock::now();
    reader.read(ref, buf.data(), true);
    cold.push_back(since(t0));
    xb.push_back(bytes);
    std::vector<double> again;  // now from the page cache: the median of three re-reads
    for (int k = 0; k < 3; ++k) {
      t0 = Clock::now();
      reader.read(ref, buf.data(), false);
      again.push_back(since(t0));
    }
    warm.push_back(median(again));
    wb.push_back(bytes);
  }
  DiskFit f;
  f.cold = fit_line(xb, cold);
  f.warm = fit_line(wb, warm);
  f.samples = static_cast<int>(xb.size());
  return f;
}

// Attention alone (exec::CpuModel::attention_only) over context lengths, on a one-layer model
// with the model's attention shapes (heads, KV heads, head size, window) and nothing else of
// size: decode steps (one query) at growing contexts and prefills of growing prompts.
struct AttentionProbe {
  std::vector<std::pair<double, double>> decode;   // (context, seconds)
  std::vector<std::pair<double, double>> prefill;  // (prompt, seconds)
  LineFit decode_fit;                              // seconds = intercept + slope x context
  double overhead_s = 0;                           // the intercept, >= 0
  std::vector<std::pair<double, double>> curve;    // (query rows M, FLOP/s)
};

AttentionProbe measure_attention(const exec::ExecConfig& full, DType d, int threads, bool quick,
                                 const std::function<void(const std::string&)>& tick) {
  exec::ExecConfig c = full;
  c.layers = 1;
  c.inter = 16;
  c.vocab = 16;
  const std::vector<int64_t> contexts =
      quick ? std::vector<int64_t>{64, 512, 2048} : std::vector<int64_t>{64, 256, 1024, 2048, 4096};
  const std::vector<int64_t> prompts =
      quick ? std::vector<int64_t>{16, 64, 256} : std::vector<int64_t>{16, 64, 256, 512};
  const exec::ModelWeights w = exec::ModelWeights::random(c, d, 5);
  exec::RunOptions opt;
  opt.max_seq = std::max(contexts.back(), prompts.back());
  opt.threads = threads;
  exec::CpuModel m(c, w, opt);
  auto time_at = [&](int64_t T, int64_t start, int reps) {
    m.prepare(T, start);
    m.attention_only(0);  // warm-up: scratch buffers, cache pages
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = Clock::now();
      m.attention_only(0);
      t.push_back(since(t0));
    }
    return median(t);
  };
  AttentionProbe p;
  for (int64_t ctx : contexts) {
    tick("attention " + std::string(dtype_name(d)) + " decode, context " + std::to_string(ctx));
    const double t = time_at(1, ctx - 1, quick ? 9 : 25);
    p.decode.push_back({static_cast<double>(ctx), t});
  }
  for (int64_t T : prompts) {
    tick("attention " + std::string(dtype_name(d)) + " prefill, " + std::to_string(T) + " tokens");
    p.prefill.push_back({static_cast<double>(T), time_at(T, 0, quick ? 3 : 5)});
  }
  const AttentionFit f = fit_attention(c.heads, c.head_dim, p.decode, p.prefill);
  p.decode_fit = f.decode;
  p.overhead_s = f.overhead_s;
  p.curve = f.curve;
  return p;
}

// Per-operator overhead seen directly: decode steps of a model with the real one's layers and
// operators but tiny shapes (hidden 64), whose arithmetic and weight traffic are negligible.
struct DispatchProbe {
  double decode_s = 0;      // median forward
  double weight_bytes = 0;  // of the tiny model
  exec::ExecConfig config;
};

DispatchProbe measure_dispatch(const exec::ExecConfig& full, DType d, int threads) {
  DispatchProbe p;
  exec::ExecConfig& c = p.config;
  c = full;
  c.hidden = 64;
  c.head_dim = 16;
  c.heads = 4;
  c.kv_heads = std::max<int64_t>(1, std::min<int64_t>(full.kv_heads, 2));
  c.inter = 128;
  c.vocab = 256;
  const exec::ModelWeights w = exec::ModelWeights::random(c, d, 9);
  p.weight_bytes = static_cast<double>(w.bytes());
  exec::RunOptions opt;
  opt.max_seq = 64;
  opt.threads = threads;
  exec::CpuModel m(c, w, opt);
  std::vector<int32_t> ids(16, 1);
  std::vector<float> logits(static_cast<size_t>(c.vocab));
  m.forward(ids.data(), 16, 0, logits.data());
  std::vector<double> t;
  int32_t next = 1;
  for (int64_t step = 0; step < 40; ++step) {
    const auto t0 = Clock::now();
    m.forward(&next, 1, 16 + step, logits.data());
    t.push_back(since(t0));
  }
  p.decode_s = median(t);
  return p;
}

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

std::string today() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[16];
  std::strftime(b, sizeof b, "%Y-%m-%d", &tm);
  return b;
}

// Traces keep the prefill and the first decode steps: enough to see every module in both
// phases, small enough to commit (a whole run of a 24-layer model is ~0.7 MB of JSON).
constexpr int kTraceDecodeSteps = 2;

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

// The first case's measured timeline, and the predicted one as the simulator lays it out (each
// op on the device it executes on, disk reads and copies on their own lanes), placed at the
// measured phase starts.
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

}  // namespace

AttentionFit fit_attention(int64_t heads, int64_t head_dim, const std::vector<std::pair<double, double>>& decode,
                           const std::vector<std::pair<double, double>>& prefill) {
  DMAP_CHECK(!decode.empty(), "fit_attention needs decode timings");
  std::vector<double> xs, ys;
  for (const auto& [ctx, t] : decode) {
    xs.push_back(ctx);
    ys.push_back(t);
  }
  AttentionFit f;
  f.decode = fit_line(xs, ys);
  f.overhead_s = std::max(0.0, f.decode.intercept);
  const double per_pair = 4.0 * static_cast<double>(heads * head_dim);
  const double slope = f.decode.slope > 0 ? f.decode.slope : ys.back() / xs.back();
  f.curve.push_back({1.0, per_pair / slope});
  for (const auto& [T, t] : prefill)
    f.curve.push_back({T, per_pair * T * (T + 1) / 2 / std::max(t - f.overhead_s, 0.1 * t)});
  return f;
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

ProfileResult profile_cpu(const ProfileOptions& opt, const sim::Hardware& hw) {
  const exec::ExecConfig c = exec::exec_config(opt.model);
  const int threads = opt.run.threads;
  const int64_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  // The model's weight shapes (N x K), largest last.
  std::vector<std::pair<int64_t, int64_t>> shapes = {{kv, c.hidden},      {q, c.hidden},       {c.hidden, q},
                                                     {c.inter, c.hidden}, {c.hidden, c.inter}, {c.vocab, c.hidden}};
  const size_t pool_bytes = opt.quick ? (64u << 20) : (512u << 20);
  const int reps = opt.quick ? 3 : 7;
  const std::vector<int64_t> rows =
      opt.quick ? std::vector<int64_t>{16, 64} : std::vector<int64_t>{16, 32, 64, 128, 256};
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
  for (DType d : opt.dtypes) {
    PerDtype& p = per[d];
    // One-row products at the model's shapes and at other row lengths: short rows stream
    // slower (measured: Qwen2.5-0.5B's 896-wide rows at ~21-23 GB/s, TinyLlama's 2048-wide at
    // ~27), so time = intercept + bytes / bandwidth + rows x per-row cost.
    std::vector<double> xb, xr, ts;
    for (const auto& [n, k] : mv_shapes) {
      tick("matrix-vector " + std::string(dtype_name(d)));
      WeightPool pool(d, n, k, pool_bytes);
      xb.push_back(static_cast<double>(pool.bytes()));
      xr.push_back(static_cast<double>(n));
      ts.push_back(time_linear(pool, 1, threads, reps));
    }
    Eigen::MatrixXd A(static_cast<Eigen::Index>(ts.size()), 3);
    Eigen::VectorXd y(static_cast<Eigen::Index>(ts.size()));
    for (size_t i = 0; i < ts.size(); ++i) {
      const auto r = static_cast<Eigen::Index>(i);
      A(r, 0) = 1;
      A(r, 1) = xb[i];
      A(r, 2) = xr[i];
      y(r) = ts[i];
    }
    const RobustFit f3 = robust_fit(A, y);
    if (f3.coef(1) > 0 && f3.coef(2) >= 0) {
      p.stream.intercept = f3.coef(0);
      p.stream.slope = f3.coef(1);
      p.stream.fit = f3;
      p.row_s = f3.coef(2);
    } else {
      p.stream = fit_line(xb, ts);  // no per-row cost to be seen
    }
    p.bw = p.stream.slope > 0 ? 1.0 / p.stream.slope : xb.back() / ts.back();
    p.samples = static_cast<int>(xb.size());
    // M = 1: the streaming rate, 2 FLOPs per weight element.
    p.curve.push_back({1.0, 2.0 * p.bw / static_cast<double>(elt_bytes(d))});
    // Products of several rows at M = 64 over the model's shapes and narrower ones: the rate
    // and the cost per input element (fit_products), which narrow products feel most.
    {
      std::vector<ProductSample> ps;
      std::vector<std::pair<int64_t, int64_t>> pshapes(shapes.begin(), shapes.end() - 1);  // not the LM head
      for (int64_t n : {128, 256, 512}) pshapes.push_back({n, c.hidden});
      for (const auto& [n, k] : pshapes) {
        tick("matrix products " + std::string(dtype_name(d)) + " shapes");
        WeightPool pool(d, n, k, pool_bytes);
        ps.push_back({64.0, static_cast<double>(n), static_cast<double>(k),
                      time_linear(pool, 64, threads, std::max(3, reps / 2))});
      }
      p.products = fit_products(ps);
    }
    for (int64_t m : rows) {
      std::vector<double> rates;
      for (const auto& [n, k] : {shapes[1], shapes[3]}) {  // q_proj and gate_proj
        tick("matrix products " + std::string(dtype_name(d)) + " M=" + std::to_string(m));
        WeightPool pool(d, n, k, pool_bytes);
        const double t = time_linear(pool, m, threads, std::max(3, reps / 2));
        // The rate net of the per-input-element cost (charged separately by the cost model).
        const double net = std::max(0.2 * t, t - static_cast<double>(m * k) * p.products.input_cost);
        rates.push_back(2.0 * static_cast<double>(m * n * k) / net);
      }
      p.curve.push_back({static_cast<double>(m), median(rates)});
    }
    p.attention = measure_attention(c, d, threads, opt.quick, tick);
  }
  const DiskFit disk =
      measure_disk(opt.run.scratch_dir.empty() ? std::filesystem::temp_directory_path().string() : opt.run.scratch_dir,
                   opt.quick, opt.progress);

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
  std::map<DType, double> warm_by_dtype;  // page-cache rate per dtype, from whole-model runs
  // The calibration as fitted so far (the fit loops below predict with it directly).
  auto calibration_with = [&](double dispatch_us) {
    sim::Calibration cal;
    cal.name = opt.name;
    cal.comment =
        "Calibration of this machine's CPU and disk for dmap's cost model, fitted from timed runs\nof dmap's own "
        "executor (`" +
        opt.command + "`). Units as in sim/calibration.h.";
    cal.provenance["cpu"] = cpu_description();
    cal.provenance["gpu"] = opt.gpu ? opt.gpu->gpu_name : std::string("none");
    cal.provenance["driver"] = opt.gpu ? opt.gpu->driver : std::string("none");
    cal.provenance["dmap_version"] = std::string(DMAP_VERSION);
    cal.provenance["date"] = today();
    cal.provenance["method"] = opt.command;
    cal.provenance["threads"] = threads;
    cal.provenance["model"] = opt.model_id;
    sim::HostCalibration& h = cal.host;
    h.memory_bandwidth_gbs = bw * bw_scale / 1e9;
    if (warm_by_dtype.size() > 1) {
      for (const auto& [d, w] : warm_by_dtype) h.page_cache_read_gbs_by_dtype[d] = w / 1e9;
    } else {
      h.page_cache_read_gbs = warm_bw / 1e9;
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
    h.attention_overhead_us = att_overhead_s * 1e6;
    if (opt.gpu) {
      h.offload_tensor_overhead_us = opt.gpu->offload_tensor_overhead_us;
      cal.gpus = opt.gpu->gpus;
      cal.link = opt.gpu->link;
    }
    cal.disk.read_gbs = cold_bw / 1e9;
    cal.disk.read_latency_us = cold_lat * 1e6;
    return cal;
  };

  // Whole-model runs (CPU only) for the terms the micro-benchmarks cannot see: attention and
  // the per-operator overhead.
  ProfileResult out;
  std::vector<std::pair<DType, PlacementRun>> runs;
  const DeviceMap cpu_map = layers_on_disk_map(opt.model, 0);
  // A third of the layers on disk: re-reading offloaded weights as the executor does (pread of
  // whole tensors into a reused buffer), cold in prefill and from the page cache in decode.
  const int64_t disk_layers = std::max<int64_t>(1, c.layers / 3);
  const DeviceMap disk_map = layers_on_disk_map(opt.model, disk_layers);
  int pid = 1;
  std::vector<double> cold_rates;
  std::map<DType, double> direct_warm;  // bytes over the measured read time alone, for the record
  // Each placement run `whole_reps` times, the medians kept: one decode step's figure varied by
  // up to 8 % between runs on the 2-vCPU VM, and every figure fitted below rests on these.
  const int whole_reps = opt.quick ? 1 : 3;
  auto run_repeated = [&](const DeviceMap& dm, DType d, const std::string& what) {
    std::vector<PlacementRun> rs;
    for (int k = 0; k < whole_reps; ++k) {
      if (opt.progress) opt.progress("whole-model run " + std::string(dtype_name(d)) + " " + what, k, whole_reps);
      rs.push_back(run_placement(opt.model, d, dm, opt.run));
    }
    std::vector<double> pre, dec, rd;
    for (const auto& r : rs) {
      pre.push_back(r.prefill_s);
      dec.push_back(r.decode_token_s);
      rd.push_back(r.decode_disk_read_s);
    }
    PlacementRun out = std::move(rs.front());
    out.prefill_s = median(pre);
    out.decode_token_s = median(dec);
    out.decode_disk_read_s = median(rd);
    return out;
  };
  for (DType d : opt.dtypes) {
    runs.push_back({d, run_repeated(cpu_map, d, "cpu-only")});
    add_run_to_trace(out.trace, pid++, opt.model_id + " " + std::string(dtype_name(d)) + " cpu-only",
                     runs.back().second);
    const PlacementRun disk_run = run_repeated(disk_map, d, "disk");
    const PlacementRun& cpu_run = runs.back().second;
    const double per_forward = static_cast<double>(disk_run.disk_bytes_read) / static_cast<double>(disk_run.forwards);
    // What the layers on disk add to a step: the page-cache copy, less what the product that
    // follows saves by finding the just-copied weights in cache (measured: the copy alone runs
    // at ~9 GB/s, the step grows as if at 9.5-11).
    const double warm_extra = disk_run.decode_token_s - cpu_run.decode_token_s;
    const double cold_extra = disk_run.prefill_s - cpu_run.prefill_s;
    if (warm_extra > 0) warm_by_dtype[d] = per_forward / warm_extra;
    if (cold_extra > 0) cold_rates.push_back(per_forward / cold_extra);
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
  const DispatchProbe probe = measure_dispatch(c, opt.dtypes.front(), threads);
  const double dispatch_us =
      kernels > 0 ? std::max(0.0, probe.decode_s - probe.weight_bytes / bw) / kernels * 1e6 : 0.0;

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
       << ", warm_gbs: " << fmt(probe_warm_bw / 1e9) << "}\n";
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
    fitb << (first ? "" : ", ") << dtype_name(d) << ": {step_gbs: " << fmt(w / 1e9)
         << ", copy_alone_gbs: " << fmt(direct_warm.count(d) ? direct_warm[d] / 1e9 : 0.0) << "}";
    first = false;
  }
  fitb << "}\n  whole_model_repetitions: " << whole_reps << "\n";
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
  out.calibration = calibration_with(dispatch_us);
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
    std::string pc = "disk cold " + fmt(cold_bw / 1e9) + " GB/s + " + fmt(cold_lat * 1e6) + " us, page cache";
    if (warm_by_dtype.size() > 1) {
      for (const auto& [d, w] : warm_by_dtype)
        pc.append(" ").append(dtype_name(d)).append(" ").append(fmt(w / 1e9)).append(" GB/s");
    } else {
      pc.append(" ").append(fmt(warm_bw / 1e9)).append(" GB/s");
    }
    out.summary.push_back(pc);
  }
  for (const auto& [d, p] : per) {
    out.summary.push_back("attention " + std::string(dtype_name(d)) + ": " + fmt(p.attention.decode_fit.slope * 1e9) +
                          " ns per key (decode), + " + fmt(p.attention.overhead_s * 1e6) + " us per layer");
  }
  out.summary.push_back("dispatch overhead " + fmt(dispatch_us) + " us per operator kernel (tiny-model probe)");
  for (const auto& [d, sc] : stream_fit) {
    out.summary.push_back("weight streaming " + std::string(dtype_name(d)) + ": " + fmt(per[d].bw * sc / 1e9) +
                          " GB/s in whole-model decode (micro-benchmark " + fmt(per[d].bw / 1e9) + ")");
  }
  for (const auto& [d, sc] : prefill_scale) {
    out.summary.push_back("matrix products " + std::string(dtype_name(d)) + ": scaled by " + fmt(sc) +
                          " to the whole-model prefill");
  }
  return out;
}

// ---- validation ------------------------------------------------------------------------------

ValidationResult validate(const std::vector<ValidationCase>& cases, const sim::Hardware& hw,
                          const sim::Calibration& cal, const RunSettings& rs, const ValidationSettings& vs,
                          const ProgressFn& progress) {
  DMAP_CHECK(vs.rounds >= 1 && vs.retries >= 0, "validation needs at least one round");
  ValidationResult v;
  v.run = rs;
  v.settings = vs;
  // Predictions first: an infeasible case is an input error before anything is measured.
  auto settings_of = [&](const ValidationCase& c) {
    RunSettings s = rs;
    s.backend = c.backend;
    s.semantics = c.semantics;
    return s;
  };
  for (const auto& c : cases) {
    const DeviceMap dm = c.device_map();
    const sim::Prediction p =
        predict(c.spec, c.dtype, dm, hw, &cal, rs.prompt, rs.new_tokens, sim_semantics(dm, settings_of(c)));
    if (!p.feasible) throw InputError("validation case " + c.model_id + " " + c.placement + " does not fit: " + p.oom);
    ValidationRow row;
    row.c = c;
    row.predicted_prefill_s = p.prefill_s;
    row.predicted_decode_s = p.decode_token_s;
    row.predicted_decode_disk_s = p.decode[sim::Resource::kDisk];
    v.rows.push_back(row);
  }
  // Placements the calibration's whole-model runs used (its fit block names them).
  const YAML::Node fit = cal.fit;
  const YAML::Node runs = fit.IsDefined() && fit.IsMap() ? fit["whole_model_runs"] : YAML::Node();
  if (runs.IsDefined() && runs.IsSequence()) {
    for (const auto& run : runs) {
      if (!run.IsMap() || !run["model"] || !run["dtype"] || !run["placement"]) continue;
      for (auto& row : v.rows) {
        if (row.c.model_id == run["model"].Scalar() && dtype_name(row.c.dtype) == run["dtype"].Scalar() &&
            row.c.placement == run["placement"].Scalar() && row.c.backend == "cpu") {
          row.in_fit = true;
        }
      }
    }
  }
  // The trace shows one case: the first that moves weights (disk or GPU), else the first.
  size_t traced = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    if (cases[i].disk_layers > 0 || cases[i].map) {
      traced = i;
      break;
    }
  }
  std::mt19937_64 order_rng(vs.order_seed);
  const int total = static_cast<int>(cases.size()) * vs.rounds;
  int done = 0;
  for (int round = 0; round < vs.rounds; ++round) {
    std::vector<size_t> order(cases.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), order_rng);
    for (size_t i : order) {
      const ValidationCase& c = cases[i];
      ValidationRow& row = v.rows[i];
      if (progress) {
        progress("round " + std::to_string(round + 1) + ": " + c.model_id + " " + std::string(dtype_name(c.dtype)) +
                     " " + c.placement,
                 done, total);
      }
      ++done;
      const DeviceMap dm = c.device_map();
      PlacementRun r;
      double foreign = 0;
      for (int attempt = 0;; ++attempt) {
        if (vs.quiet.max_wait_s > 0 && !wait_quiet(vs.quiet).quiet) ++v.not_quiet;
        const LoadProbe probe;
        r = run_placement(c.spec, c.dtype, dm, settings_of(c));
        foreign = probe.foreign_cores();
        if (foreign <= vs.spoiled_cores || attempt >= vs.retries) break;
        ++row.remeasured;
      }
      row.foreign_cores = std::max(row.foreign_cores, foreign);
      row.decode_device_read_bytes = std::max(row.decode_device_read_bytes, r.decode_device_read_bytes);
      row.prefill_rounds.push_back(r.prefill_s);
      row.decode_rounds.push_back(r.decode_token_s);
      row.decode_disk_rounds.push_back(r.decode_disk_read_s);
      if (i == traced && round == 0) add_predicted_and_measured_trace(v.trace, c, r, hw, cal, settings_of(c));
    }
  }
  for (auto& row : v.rows) {
    row.measured_prefill_s = median(row.prefill_rounds);
    row.measured_decode_s = median(row.decode_rounds);
  }
  if (progress) progress("done", total, total);
  std::vector<double> de, pe;
  for (const auto& r : v.rows) {
    if (r.in_fit) continue;
    de.push_back(std::fabs(r.decode_error()));
    pe.push_back(std::fabs(r.prefill_error()));
  }
  v.decode_median_abs = median(de);
  v.decode_p90_abs = percentile(de, 0.9);
  v.prefill_median_abs = median(pe);
  v.prefill_p90_abs = percentile(pe, 0.9);
  // Regret per model and dtype: the placement predicted fastest (whole run) vs the measured fastest.
  std::map<std::string, std::vector<const ValidationRow*>> groups;
  for (const auto& r : v.rows) groups[r.c.model_id + " " + std::string(dtype_name(r.c.dtype))].push_back(&r);
  for (const auto& [name, rows] : groups) {
    const int64_t n = rs.new_tokens;
    const ValidationRow* pred = *std::min_element(
        rows.begin(), rows.end(), [&](auto a, auto b) { return a->predicted_total(n) < b->predicted_total(n); });
    const ValidationRow* meas = *std::min_element(
        rows.begin(), rows.end(), [&](auto a, auto b) { return a->measured_total(n) < b->measured_total(n); });
    Regret g{name, pred->c.placement, meas->c.placement, pred->measured_total(n) / meas->measured_total(n) - 1};
    v.max_regret = std::max(v.max_regret, g.regret);
    v.regrets.push_back(g);
  }
  return v;
}

std::string validation_svg(const ValidationResult& r, const std::string& machine) {
  report::StackedBarChart c;
  c.title = "Predicted vs measured time per output token, " + machine;
  c.y_label = "ms per token";
  report::Series pred{"predicted", "#0072B2", {}}, meas{"measured", "#D55E00", {}};
  for (const auto& row : r.rows) {
    c.categories.push_back(row.c.model_id + " " + std::string(dtype_name(row.c.dtype)) + " " + row.c.placement);
    pred.values.push_back(row.predicted_decode_s * 1e3);
    meas.values.push_back(row.measured_decode_s * 1e3);
    c.bar_notes.push_back((row.decode_error() >= 0 ? "+" : "") + fmt(row.decode_error() * 100, 2) + "%");
  }
  c.series = {pred, meas};
  c.horizontal = true;
  return report::render_grouped_svg(c);
}

std::string validation_markdown(const ValidationResult& r, const std::string& machine,
                                const std::string& calibration_file, const std::string& svg_name,
                                const std::string& trace_name) {
  auto pct = [](double v) { return (v >= 0 ? "+" : "") + fmt(v * 100, 2) + " %"; };
  std::ostringstream m;
  m << "# Validation: predicted vs measured, " << machine << "\n\n";
  m << "Written by `dmap profile --validate`. Calibration: `" << calibration_file
    << "`. Each placement was predicted by\n"
    << "`dmap`'s cost model with that calibration, then run for real on dmap's CPU executor (random weights, batch 1,\n"
    << "prompt " << r.run.prompt << ", " << r.run.new_tokens << " new tokens, " << r.run.threads
    << " threads). None of these runs was used in the\n"
    << "fit. Disk placements put the last layers on disk: their tensors are read from their files every forward,\n"
    << "evicted from the page cache before the prefill (cold) and served from it during decode.\n\n"
    << "Each placement was measured in " << r.settings.rounds
    << " rounds, each round in a fresh random order, each measurement\n"
    << "after waiting for the machine to be quiet (other processes under " << fmt(r.settings.quiet.threshold_cores, 2)
    << " cores); measured figures are the medians over the rounds. A measurement during which other processes used "
       "more\n"
    << "than " << fmt(r.settings.spoiled_cores, 2) << " cores was measured again (up to " << r.settings.retries
    << " times); \"others' load\" is the most they used during a kept one. \"Read from disk in decode\" is what the "
       "machine\n"
    << "read from block devices during a run's decode steps (the most over the rounds, /proc/vmstat): decode re-reads\n"
    << "disk-offloaded weights from the page cache, so anything there is page-cache misses. \"Of which disk reads\" is "
       "the\n"
    << "part of a decode step spent reading disk-offloaded tensors: predicted, then measured per round.\n";
  if (r.not_quiet > 0)
    m << "**" << r.not_quiet << " measurement(s) started without the machine having become quiet.**\n";
  m << "\n";
  m << "| model | dtype | placement | predicted prefill | measured prefill | error | predicted ms/token | measured "
       "ms/token | error | "
       "rounds: ms/token | of which disk reads, ms | others' load | read from disk in decode |\n";
  m << "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|\n";
  for (const auto& row : r.rows) {
    std::string rounds;
    for (double d : row.decode_rounds) rounds.append(rounds.empty() ? "" : ", ").append(fmt(d * 1e3, 3));
    std::string reads = "—";
    if (row.predicted_decode_disk_s > 0 ||
        std::any_of(row.decode_disk_rounds.begin(), row.decode_disk_rounds.end(), [](double d) { return d > 0; })) {
      reads = fmt(row.predicted_decode_disk_s * 1e3, 3) + " / ";
      for (size_t k = 0; k < row.decode_disk_rounds.size(); ++k)
        reads.append(k ? ", " : "").append(fmt(row.decode_disk_rounds[k] * 1e3, 3));
    }
    m << "| " << row.c.model_id << " | " << dtype_name(row.c.dtype) << " | " << row.c.placement
      << (row.in_fit ? " (in the fit)" : "") << " | " << fmt(row.predicted_prefill_s * 1e3) << " ms | "
      << fmt(row.measured_prefill_s * 1e3) << " ms | " << pct(row.prefill_error()) << " | "
      << fmt(row.predicted_decode_s * 1e3) << " | " << fmt(row.measured_decode_s * 1e3) << " | "
      << pct(row.decode_error()) << " | " << rounds << " | " << reads << " | " << fmt(row.foreign_cores, 2)
      << (row.remeasured ? " (" + std::to_string(row.remeasured) + " re-measured)" : "") << " | "
      << fmt(row.decode_device_read_bytes / 1e6, 3) << " MB |\n";
  }
  int held_out = 0;
  for (const auto& row : r.rows) held_out += row.in_fit ? 0 : 1;
  m << "\nError figures over the " << held_out
    << " placements the calibration was not fitted on (rows marked \"in the fit\" are\n"
    << "the calibration's own whole-model runs, shown for reference):\n";
  m << "\n| | median abs error | 90th percentile | target |\n|---|---:|---:|---|\n";
  m << "| time per output token | " << fmt(r.decode_median_abs * 100, 2) << " % | " << fmt(r.decode_p90_abs * 100, 2)
    << " % | median ≤ 5 %, p90 ≤ 10 % |\n";
  m << "| prefill | " << fmt(r.prefill_median_abs * 100, 2) << " % | " << fmt(r.prefill_p90_abs * 100, 2)
    << " % | median ≤ 10 % |\n\n";
  m << "Placement regret (measured time of the placement predicted fastest, whole run, vs the measured fastest):\n\n";
  m << "| model, dtype | predicted fastest | measured fastest | regret |\n|---|---|---|---:|\n";
  for (const auto& g : r.regrets)
    m << "| " << g.group << " | " << g.recommended << " | " << g.fastest << " | " << fmt(g.regret * 100, 2) << " % |\n";
  m << "\n![predicted vs measured](" << svg_name << ")\n\n";
  m << "Timeline: [`" << trace_name << "`](" << trace_name
    << ") (open in ui.perfetto.dev or chrome://tracing) holds the\n"
    << "measured module ranges of one placement (the first that reads disk or uses a GPU) next to the cost model's\n"
    << "predicted timeline: each op on the device it runs on, disk reads and copies on lanes of their own.\n";
  return m.str();
}

}  // namespace dmap::profile
