// `dmap run`: runs a model for real — prefill, greedy decode — under a placement, and reports
// tokens, times and the per-module breakdown. A map without GPUs runs on the CPU executor
// (disk-mapped modules re-read from their file every forward); a map with GPUs runs the GPU
// orchestration under the chosen semantics (accelerate, prefetch, in-place) on CUDA when this
// build and this machine have it, else on the CPU executor with a note — or, asked for, on the
// emulated device (exec/backend.h).
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <tuple>
#include <filesystem>
#include <iostream>
#include <random>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/placement.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "core/json.h"
#include "core/output.h"
#include "core/yaml_io.h"
#include "exec/backend.h"
#include "exec/device/device_model.h"
#include "exec/device/emulated.h"
#include "exec/map_placement.h"
#include "exec/model.h"
#include "exec/run.h"
#ifdef DMAP_HAVE_CUPTI
#include "trace/cupti_tracer.h"
#endif
#include "strategies/plan.h"
#include "trace/executor_trace.h"
#include "trace/gpu_trace.h"
#include "trace/trace.h"

namespace dmap::cli {

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Distinct experts `rows` tokens touch when each picks k of E uniformly: E (1 - (1 - k/E)^rows).
double uniform_touched(const exec::ExecConfig& cfg, double rows) {
  const double E = static_cast<double>(cfg.experts), k = static_cast<double>(cfg.top_k);
  return std::max(k, E * (1.0 - std::pow(1.0 - k / E, rows)));
}

const char* kRunHelp = R"(usage: dmap run MODEL_OR_CHECKPOINT [options]

Runs the model on dmap's CPU executor: prefill of the prompt, then greedy decode.
MODEL_OR_CHECKPOINT is a checkpoint folder (config.json + model.safetensors or an index of
shards; its weights are used), or a model YAML / config.json / preset name (seeded random
weights at the real shapes, for timing). A folder without weights is an error unless
--random-weights is given.

placement (default: everything on the CPU):
  --device-map FILE    a hand-written map {"model.layers.20": "disk", ...}
  --strategy S         auto | balanced | balanced_low_0 | sequential | infer_auto_device_map (needs
                       --max-memory or a scenario), cpu | disk, or a map under the scenario's device_maps
  --max-memory M       caps, e.g. 0=4GiB,cpu=2GiB,disk=100GiB
  --scenario FILE      take max_memory, strategy and device_maps from a scenario
  --semantics S        how cpu/disk-mapped modules run when the map has GPUs: accelerate (default:
                       weights copied to the first GPU per leaf module, pageable, blocking),
                       prefetch (pinned, next unit copied during this one's compute) or in-place
                       (computed by the CPU backend; only activations cross)
  --backend B          auto (default: CUDA when the map has GPUs and a CUDA device is usable, else
                       the CPU executor, GPU-mapped modules then computing on the CPU) | cpu | cuda |
                       emulated (the GPU orchestration on an emulated device on the host: CUDA's
                       stream ordering checked, GPU modules timed on its model clock, not measured)
  disk-mapped modules are re-read from their file on every forward, as accelerate does.
  --drop-page-cache    evict disk-mapped weights from the page cache before every read (cold disk)
  --offload-dir DIR    where random weights mapped to disk are written (default: a temp folder)

workload:
  --prompt-ids 1,2,3   the prompt as token ids
  --prompt-file F      a JSON list of ids, or a reference.json with "prompt_ids"
  --prompt-tokens P    P seeded random ids (default 16)
  --new-tokens N       tokens to generate (default 16)
  --batch B            sequences (the prompt is repeated; default 1)
  --threads T          threads (default: all cores)
  --prefill-reps R     time R prefills after one warm-up and report the median (default: one cold prefill)
  --dtype D            random weights: float32 | float16 | bfloat16 (default: the config's)
  --seed S             random weights and random prompt (default 0)
  --random-weights     seeded random weights at the model's shapes, even for a checkpoint folder
  --trace FILE         write a Chrome/Perfetto trace of the run (open in ui.perfetto.dev): CUDA runs
                       are traced with CUPTI (kernels and copies on their streams, launches linked
                       to kernels, CPU-backend modules on host threads; the raw records go to
                       FILE's stem + .gpu.json), emulated runs from the emulator's timeline (same
                       files), CPU runs with the executor's module timers
  --format F           table (default) | json
  --help               this text

json: {"tokens": [[...], ...], "prefill_s", "decode_token_s" (median), "tokens_per_s",
       "modules": [{"module", "device", "prefill_s", "decode_s" (median per step)}], ...}
exit codes: 0 ok, 1 runtime failure, 2 bad input
)";

std::vector<int32_t> parse_ids(const std::string& text, const std::string& origin) {
  std::vector<int32_t> out;
  if (text.find(",,") != std::string::npos || (!text.empty() && (text.front() == ',' || text.back() == ','))) {
    throw InputError(origin + ": an empty token id in '" + text.substr(0, 60) + "'");
  }
  for (const auto& part : split_commas(text)) {
    if (!is_int_literal(part)) throw InputError(origin + ": not a token id: '" + part.substr(0, 60) + "'");
    int64_t v = -1;
    const auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (ec != std::errc() || ptr != part.data() + part.size() || v < 0 || v > 0x7fffffff) {
      throw InputError(origin + ": token id out of range (0 to 2147483647): " + part.substr(0, 60));
    }
    out.push_back(static_cast<int32_t>(v));
  }
  if (out.empty()) throw InputError(origin + ": no token ids");
  return out;
}

#ifdef DMAP_HAVE_CUPTI
// Tags the GPU work each module issues (CUPTI external correlation) and records CPU-backend modules.
class TracerObserver : public exec::ModuleObserver {
 public:
  explicit TracerObserver(trace::CuptiTracer& t) : t_(t) {}
  void begin(const std::string& module, int step) override { t_.push_module(module, step); }
  void end() override { t_.pop_module(); }
  void host_range(const std::string& module, int step, std::chrono::steady_clock::time_point a,
                  std::chrono::steady_clock::time_point b) override {
    t_.add_host_range(module, step, a, b);
  }

 private:
  trace::CuptiTracer& t_;
};
#endif

// The backend for this placement and --backend.
exec::Backend choose_backend(const std::string& flag, bool map_has_gpu) {
  if (flag == "cpu") return exec::Backend::kCpu;
  if (flag == "emulated") {
    if (!map_has_gpu) throw InputError("--backend emulated: the placement maps nothing to a GPU");
    return exec::Backend::kEmulated;
  }
  const int gpus = exec::cuda_device_count();
  if (flag == "cuda") {
    if (!map_has_gpu) throw InputError("--backend cuda: the placement maps nothing to a GPU");
    if (!exec::cuda_compiled())
      throw RuntimeFailure(
          "--backend cuda: this dmap was built without CUDA (nvcc was not found when it was configured)");
    if (gpus == 0) throw RuntimeFailure("--backend cuda: no usable CUDA device on this machine");
    return exec::Backend::kCuda;
  }
  if (!map_has_gpu) return exec::Backend::kCpu;
  if (gpus > 0) return exec::Backend::kCuda;
  std::cerr << "dmap run: no usable CUDA device" << (exec::cuda_compiled() ? "" : " (built without CUDA)")
            << ": GPU-mapped modules compute on the CPU executor (--backend emulated runs the GPU orchestration on an "
               "emulated device)\n";
  return exec::Backend::kCpu;
}

}  // namespace

int cmd_run(const std::vector<std::string>& argv) {
  const Args args(
      argv, {"device-map",    "strategy",   "max-memory",   "scenario",  "offload-dir", "prompt-ids", "prompt-file",
             "prompt-tokens", "new-tokens", "batch",        "threads",   "dtype",       "seed",       "format",
             "no-split",      "pipeline",   "prefill-reps", "semantics", "backend",     "trace"},
      {"help", "drop-page-cache", "random-weights"});
  if (args.has("help")) {
    std::cout << kRunHelp;
    return 0;
  }
  const std::string format = args.get("format").value_or("table");
  if (format != "table" && format != "json") throw InputError("--format must be table or json, not '" + format + "'");
  if (args.positional().size() != 1) throw InputError("dmap run: expected one MODEL_OR_CHECKPOINT (see --help)");
  const std::string model_ref = args.positional()[0];

  // The model: a checkpoint folder brings weights; anything else gets random weights.
  Scenario sc;
  if (auto f = args.get("scenario")) {
    sc = load_scenario(*f, models_dir());
  } else {
    sc.file = "command line";
  }
  sc.model = resolve_model(model_ref, "", models_dir());
  namespace fs = std::filesystem;
  std::error_code ec;
  // Weights present (a dangling link counts: it is an error below, never random weights).
  auto present = [&](const fs::path& p) { return fs::exists(fs::symlink_status(p, ec)); };
  const bool folder = fs::is_directory(model_ref, ec);
  const bool has_weights = folder && (present(fs::path(model_ref) / "model.safetensors") ||
                                      present(fs::path(model_ref) / "model.safetensors.index.json"));
  if (folder && !has_weights && !args.has("random-weights")) {
    throw InputError(model_ref +
                     ": no model.safetensors or model.safetensors.index.json in this checkpoint folder; "
                     "pass --random-weights to run on seeded random weights at its shapes");
  }
  const bool checkpoint = has_weights && !args.has("random-weights");
  const exec::ExecConfig cfg = exec::exec_config(sc.model);
  const int64_t seed = args.get("seed") ? positive_flag(args, "seed", 0) : 0;

  DType dtype = sc.model.checkpoint_dtype.value_or(DType::kFloat32);
  if (auto d = args.get("dtype")) {
    auto dt = parse_dtype(*d);
    if (!dt || (*dt != DType::kFloat32 && *dt != DType::kFloat16 && *dt != DType::kBFloat16)) {
      throw InputError("--dtype must be float32, float16 or bfloat16, not '" + *d + "'");
    }
    if (checkpoint) throw InputError("--dtype applies to random weights; a checkpoint runs in its own dtype");
    dtype = *dt;
  }
  if (!sc.dtype) sc.dtype = dtype;

  // Placement.
  const ModuleTree tree = build_module_tree(sc.model);
  DeviceMap dm = strategies::whole_model_map(Device::cpu());
  std::string how = "all on the CPU";
  if (args.get("device-map") || args.get("strategy") || args.get("scenario")) {
    if (auto mm = args.get("max-memory")) sc.max_memory = parse_max_memory_flag(*mm, "--max-memory");
    MapOutcome out = compute_map(args, sc, tree);
    dm = std::move(out.device_map);
    how = out.how;
  }

  // Workload.
  const int64_t batch = integer_flag(args, "batch", 1, 1, kMaxBatchFlag);
  const int64_t new_tokens = integer_flag(args, "new-tokens", 16, 1, kMaxTokensFlag);
  const int threads = threads_flag(args);
  std::vector<int32_t> prompt;
  if (auto ids = args.get("prompt-ids")) {
    prompt = parse_ids(*ids, "--prompt-ids");
  } else if (auto f = args.get("prompt-file")) {
    const YAML::Node n = load_yaml_file(*f);
    const YAML::Node list = n.IsMap() ? n["prompt_ids"] : n;
    if (!list.IsDefined() || !list.IsSequence() || list.size() == 0)
      fail_at(*f, n, "expected a JSON list of token ids (or {\"prompt_ids\": [...]})");
    for (const auto& v : list) {
      const int64_t id = yaml_int(*f, v, "token id");
      if (id < 0 || id >= cfg.vocab)
        fail_at(
            *f, v,
            "token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(cfg.vocab - 1) + ")");
      prompt.push_back(static_cast<int32_t>(id));
    }
  } else {
    const int64_t p = integer_flag(args, "prompt-tokens", 16, 1, kMaxTokensFlag);
    std::mt19937_64 rng(static_cast<uint64_t>(seed) + 1);
    for (int64_t i = 0; i < p; ++i) prompt.push_back(static_cast<int32_t>(rng() % static_cast<uint64_t>(cfg.vocab)));
  }
  for (int32_t id : prompt) {
    if (id >= cfg.vocab)
      throw InputError("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                       std::to_string(cfg.vocab - 1) + ")");
  }
  const int64_t P = static_cast<int64_t>(prompt.size());
  if (cfg.max_pos > 0 && P + new_tokens > cfg.max_pos) {
    throw InputError("prompt + new tokens = " + std::to_string(P + new_tokens) + " exceeds the model's " +
                     std::to_string(cfg.max_pos) + " positions");
  }
  std::vector<int32_t> ids;
  for (int64_t b = 0; b < batch; ++b) ids.insert(ids.end(), prompt.begin(), prompt.end());

  // Weights and disk offload.
  std::shared_ptr<const exec::Checkpoint> ck;
  exec::ModelWeights weights = [&] {
    if (checkpoint) {
      ck = std::make_shared<const exec::Checkpoint>(exec::Checkpoint::open(model_ref));
      return exec::ModelWeights::from_checkpoint(cfg, ck);
    }
    std::cerr << "dmap run: random " << dtype_name(dtype) << " weights (seed " << seed << ")\n";
    return exec::ModelWeights::random(cfg, dtype, static_cast<uint64_t>(seed));
  }();
  std::vector<std::string> on_disk;
  std::map<std::string, Device> tensor_device;
  for (const auto& [name, d] : exec::tensor_devices(tree, dm, weights)) {
    tensor_device[name] = d;
    if (d.kind == Device::Kind::kDisk) on_disk.push_back(name);
  }
  // Every remaining flag is checked before anything is written (offloaded weights, a trace).
  const std::string semantics_text = args.get("semantics").value_or("accelerate");
  const auto semantics = exec::parse_exec_semantics(semantics_text);
  if (!semantics)
    throw InputError("--semantics must be accelerate, prefetch or in-place, not '" + semantics_text + "'");
  const std::string backend_flag = args.get("backend").value_or("auto");
  if (backend_flag != "auto" && !exec::parse_backend(backend_flag)) {
    throw InputError("--backend must be auto, cpu, cuda or emulated, not '" + backend_flag + "'");
  }
  if (auto t = args.get("trace")) check_output_file(*t, "--trace");
  std::string offload_dir = args.get("offload-dir").value_or("");
  if (args.get("offload-dir")) check_output_folder(offload_dir, "--offload-dir");
  bool remove_offload = false;
  if (!on_disk.empty() && !checkpoint && offload_dir.empty()) {
    offload_dir = (fs::temp_directory_path() / ("dmap_offload_" + std::to_string(getpid()))).string();
    remove_offload = true;
  }
  // The scratch offload folder goes whatever happens next (an error included).
  struct RemoveOnExit {
    const std::string& dir;
    const bool& on;
    ~RemoveOnExit() {
      std::error_code ignored;
      if (on) fs::remove_all(dir, ignored);
    }
  } remove_scratch{offload_dir, remove_offload};
  std::optional<RemoveOnInterrupt> interrupt_guard;
  if (remove_offload) interrupt_guard.emplace(offload_dir);
  weights.offload_to_disk(on_disk, offload_dir);

  const auto items = dm.items();
  const bool map_has_gpu = std::any_of(items.begin(), items.end(), [](const auto& e) { return e.second.is_gpu(); });
  const exec::Backend backend = choose_backend(backend_flag, map_has_gpu);
  const bool gpu_backend = backend != exec::Backend::kCpu;
  // The GPU executor runs whole units (each layer on one device); the CPU one takes any map.
  exec::Placement exec_plan;
  if (gpu_backend) exec_plan = exec::map_placement(tree, dm, weights, cfg, *semantics);

  exec::RunOptions opt;
  opt.batch = batch;
  opt.max_seq = P + new_tokens;
  opt.threads = threads;
  opt.drop_page_cache = args.has("drop-page-cache");
  const std::optional<std::string> trace_path = args.get("trace");
  opt.record_events = trace_path.has_value();
  // The run (exec/run.h): optional warm-up and repeated prefills on a scratch executor, then the
  // measured prefill and decode.
  exec::RunPlan plan;
  plan.ids = ids;
  plan.prompt_len = P;
  plan.new_tokens = new_tokens;
  if (args.get("prefill-reps")) {
    plan.prefill_reps = static_cast<int>(integer_flag(args, "prefill-reps", 1, 1, 1000));
    plan.warm_up = true;
  }
  // A progress line on standard error for runs longer than a couple of seconds (terminals only).
  const auto started = std::chrono::steady_clock::now();
  bool shown = false;
  plan.progress = [&](int64_t done, int64_t total) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (!isatty(2) || (s < 2.0 && !shown)) return;
    shown = true;
    std::fprintf(stderr, "\rdmap run: %lld/%lld tokens, %.1f s", static_cast<long long>(done),
                 static_cast<long long>(total), s);
    if (done == total) std::fprintf(stderr, "\n");
  };
#ifdef DMAP_HAVE_CUPTI
  std::unique_ptr<trace::CuptiTracer> tracer;
  std::unique_ptr<TracerObserver> observer;
  if (trace_path && backend == exec::Backend::kCuda) {
    tracer = std::make_unique<trace::CuptiTracer>();
    observer = std::make_unique<TracerObserver>(*tracer);
    plan.observer = observer.get();
    plan.before_run = [&] { tracer->start(); };  // the scratch prefills stay out of the trace
  }
#endif
  exec::RunOutcome outcome = exec::run_placement(cfg, weights, exec_plan, backend, opt, plan);
  exec::GenerateResult& r = outcome.result;
  exec::Executor& model = *outcome.executor;
  if (trace_path) {
    trace::GpuTrace trace;
    const std::string raw = (std::filesystem::path(*trace_path).parent_path() /
                             (std::filesystem::path(*trace_path).stem().string() + ".gpu.json"))
                                .string();
#ifdef DMAP_HAVE_CUPTI
    if (tracer) {
      trace = tracer->stop();
      trace::write_text_file(raw, trace::gpu_trace_json(trace));
    }
#endif
    if (backend == exec::Backend::kEmulated) {
      const auto& dev = dynamic_cast<const exec::EmulatedDevice&>(dynamic_cast<exec::DeviceModel&>(model).runtime());
      trace = trace::emulated_trace(dev.timeline());
      trace::write_text_file(raw, trace::gpu_trace_json(trace));
    }
    if (backend == exec::Backend::kCpu)
      trace = trace::host_trace(model.events(), model.module_times(), "dmap run (CPU executor)");
    trace::write_text_file(*trace_path, trace::chrome_trace(trace).json());
    std::cerr << "dmap run: trace written to " << *trace_path << "\n";
  }
  if (backend == exec::Backend::kEmulated) {
    // The host's wall time says nothing of a GPU: report the modules' times (model clock).
    r.prefill_s = 0;
    std::fill(r.decode_s.begin(), r.decode_s.end(), 0.0);
    for (const auto& m : model.module_times()) {
      r.prefill_s += m.prefill_s;
      for (size_t i = 0; i < r.decode_s.size() && i < m.decode_s.size(); ++i) r.decode_s[i] += m.decode_s[i];
    }
  }

  const double decode_med = median(r.decode_s);
  const double tps = decode_med > 0 ? static_cast<double>(batch) / decode_med : 0;
  // Per module: the device of its weights (the module's first tensor), prefill and median decode.
  auto module_device = [&](const std::string& module) {
    for (const auto& [name, d] : tensor_device) {
      if (name.rfind(module + ".", 0) == 0) return d.str();
    }
    return std::string("cpu");
  };
  if (format == "json") {
    JsonWriter w;
    w.begin_object();
    w.key("tokens");
    w.begin_array();
    for (const auto& seq : r.tokens) {
      w.begin_array();
      for (int32_t t : seq) w.value(static_cast<int64_t>(t));
      w.end_array();
    }
    w.end_array();
    w.key("prompt_tokens");
    w.value(P);
    w.key("prefill_s");
    w.value(r.prefill_s);
    w.key("decode_token_s");
    w.value(decode_med);
    w.key("tokens_per_s");
    w.value(tps);
    w.key("threads");
    w.value(threads);
    w.key("isa");
    w.value(exec::cpu::isa_name(exec::cpu::best_isa()));
    w.key("disk_bytes_read");
    w.value(static_cast<int64_t>(model.disk_bytes_read()));
    if (const exec::ExpertCounts ec = model.expert_counts(); ec.prefill_forwards + ec.decode_forwards > 0) {
      w.key("experts_touched");  // per sparse-layer forward: measured, and uniform routing's E(1 - (1 - k/E)^rows)
      w.begin_object();
      for (const auto& [phase, f, t, rows] :
           {std::tuple{"prefill", ec.prefill_forwards, ec.prefill_touched, ec.prefill_rows},
            std::tuple{"decode", ec.decode_forwards, ec.decode_touched, ec.decode_rows}}) {
        if (f == 0) continue;
        w.key(phase);
        w.begin_object();
        w.key("measured");
        w.value(static_cast<double>(t) / static_cast<double>(f));
        w.key("uniform");
        w.value(uniform_touched(cfg, static_cast<double>(rows) / static_cast<double>(f)));
        w.end_object();
      }
      w.end_object();
    }
    w.key("backend");
    w.value(exec::backend_name(backend));
    w.key("semantics");
    w.value(gpu_backend ? std::string(exec::semantics_name(*semantics)) : std::string("cpu"));
    w.key("device_map");
    w.raw(device_map_to_json(dm));
    w.key("modules");
    w.begin_array();
    for (const auto& m : model.module_times()) {
      w.begin_object();
      w.key("module");
      w.value(m.module);
      w.key("device");
      w.value(module_device(m.module));
      w.key("prefill_s");
      w.value(m.prefill_s);
      w.key("decode_s");
      w.value(median(m.decode_s));
      w.end_object();
    }
    w.end_array();
    w.end_object();
    std::cout << w.str() << "\n";
    return 0;
  }
  std::printf("model:      %s (%s, %s weights, %s)\n", sc.model.name.c_str(), cfg.family.c_str(),
              checkpoint ? "checkpoint" : "random", std::string(dtype_name(dtype)).c_str());
  std::printf("placement:  %s\n", how.c_str());
  const std::string executor_text =
      backend == exec::Backend::kCuda ? std::string("CUDA, ") + exec::semantics_name(*semantics) + " semantics"
      : backend == exec::Backend::kEmulated
          ? std::string("emulated GPU, ") + exec::semantics_name(*semantics) +
                " semantics (GPU modules timed on the emulator's model clock, not measured)"
          : std::string("CPU");
  std::printf("executor:   %s\n", executor_text.c_str());
  std::printf("run:        batch %lld, prompt %lld tokens, %lld new tokens, %d threads, %s kernels\n",
              static_cast<long long>(batch), static_cast<long long>(P), static_cast<long long>(new_tokens), threads,
              exec::cpu::isa_name(exec::cpu::best_isa()).c_str());
  std::printf("prefill:    %.3f s\n", r.prefill_s);
  std::printf("decode:     %.2f ms/token (median of %zu steps), %.2f tokens/s\n", decode_med * 1e3, r.decode_s.size(),
              tps);
  if (model.disk_bytes_read())
    std::printf("disk:       %.2f MB read\n", static_cast<double>(model.disk_bytes_read()) / 1e6);
  if (const exec::ExpertCounts ec = model.expert_counts(); ec.prefill_forwards + ec.decode_forwards > 0) {
    // Measured distinct experts per sparse-layer forward, beside what uniform routing predicts
    // (the simulator's E(1 - (1 - k/E)^rows)).
    std::printf("experts:    %lld routed, %lld per token; touched per sparse layer:",
                static_cast<long long>(cfg.experts), static_cast<long long>(cfg.top_k));
    if (ec.prefill_forwards > 0) {
      const double rows = static_cast<double>(ec.prefill_rows) / static_cast<double>(ec.prefill_forwards);
      std::printf(" prefill %.2f (uniform routing: %.2f for %.0f tokens)",
                  static_cast<double>(ec.prefill_touched) / static_cast<double>(ec.prefill_forwards),
                  uniform_touched(cfg, rows), rows);
    }
    if (ec.decode_forwards > 0) {
      const double rows = static_cast<double>(ec.decode_rows) / static_cast<double>(ec.decode_forwards);
      std::printf("%s decode %.2f (uniform: %.2f)", ec.prefill_forwards > 0 ? "," : "",
                  static_cast<double>(ec.decode_touched) / static_cast<double>(ec.decode_forwards),
                  uniform_touched(cfg, rows));
    }
    std::printf("\n");
  }
  for (size_t b = 0; b < r.tokens.size(); ++b) {
    std::printf("tokens[%zu]:", b);
    for (int32_t t : r.tokens[b]) std::printf(" %d", t);
    std::printf("\n");
  }
  std::printf("\n%-44s %-6s %12s %14s\n", "module", "device", "prefill ms", "decode ms/tok");
  for (const auto& m : model.module_times()) {
    std::printf("%-44s %-6s %12.3f %14.4f\n", m.module.c_str(), module_device(m.module).c_str(), m.prefill_s * 1e3,
                median(m.decode_s) * 1e3);
  }
  return 0;
}

}  // namespace dmap::cli
