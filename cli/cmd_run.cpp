// `dmap run`: runs a model for real — prefill, greedy decode — under a placement, and reports
// tokens, times and the per-module breakdown. A map without GPUs runs on the CPU executor
// (disk-mapped modules re-read from their file every forward); a map with GPUs runs the GPU
// orchestration under the chosen semantics (accelerate, prefetch, in-place) on CUDA when this
// build and this machine have it, else on the CPU executor with a note — or, asked for, on the
// emulated device (exec/backend.h).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/placement.h"
#include "cli/prompt.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "core/output.h"
#include "core/stats.h"
#include "exec/backend.h"
#include "exec/map_placement.h"
#include "exec/model.h"
#include "exec/run.h"
#include "report/run_report.h"
#include "sim/cost_model.h"
#include "strategies/plan.h"
#include "trace/run_trace.h"

namespace dmap::cli {

namespace {

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
  --cold-start         evict them before the prefill only (a fresh start; decode then reads them
                       warm from the page cache): how `dmap profile` runs disk placements
  --offload-dir DIR    where random weights mapped to disk are written (default: a temp folder)
  --mmap               compute on a checkpoint's weights where they lie in its memory-mapped file
                       (default: read into memory first, as llama.cpp's --no-mmap; faster to stream)

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

// A progress line on standard error for runs longer than a couple of seconds (terminals only).
std::function<void(int64_t, int64_t)> progress_line() {
  const auto started = std::chrono::steady_clock::now();
  auto shown = std::make_shared<bool>(false);
  return [started, shown](int64_t done, int64_t total) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (!isatty(2) || (s < 2.0 && !*shown)) return;
    *shown = true;
    std::fprintf(stderr, "\rdmap run: %lld/%lld tokens, %.1f s", static_cast<long long>(done),
                 static_cast<long long>(total), s);
    if (done == total) std::fprintf(stderr, "\n");
  };
}

}  // namespace

int cmd_run(const std::vector<std::string>& argv) {
  const Args args(
      argv, {"device-map",    "strategy",   "max-memory",   "scenario",  "offload-dir", "prompt-ids", "prompt-file",
             "prompt-tokens", "new-tokens", "batch",        "threads",   "dtype",       "seed",       "format",
             "no-split",      "pipeline",   "prefill-reps", "semantics", "backend",     "trace"},
      {"help", "drop-page-cache", "cold-start", "random-weights", "mmap"});
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
  const std::vector<int32_t> prompt = read_prompt(args, cfg.vocab, seed);
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
  const auto items = dm.items();
  const bool map_has_gpu = std::any_of(items.begin(), items.end(), [](const auto& e) { return e.second.is_gpu(); });
  std::string backend_note;
  const exec::Backend backend = exec::choose_backend(args.get("backend").value_or("auto"), map_has_gpu, &backend_note);
  if (!backend_note.empty()) std::cerr << "dmap run: " << backend_note << "\n";
  const bool gpu_backend = backend != exec::Backend::kCpu;
  const std::optional<std::string> trace_path = args.get("trace");
  if (trace_path) check_output_file(*trace_path, "--trace");
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
  if (checkpoint && !args.has("mmap")) weights.read_in();

  // The GPU executor runs whole units (each layer on one device); the CPU one takes any map.
  exec::Placement exec_plan;
  if (gpu_backend) exec_plan = exec::map_placement(tree, dm, weights, cfg, *semantics);

  exec::RunOptions opt;
  opt.batch = batch;
  opt.max_seq = P + new_tokens;
  opt.threads = threads;
  opt.drop_page_cache = args.has("drop-page-cache");
  opt.record_events = trace_path.has_value();
  // The run (exec/run.h): optional warm-up and repeated prefills on a scratch executor, then the
  // measured prefill and decode.
  exec::RunPlan plan;
  plan.ids = ids;
  plan.prompt_len = P;
  plan.new_tokens = new_tokens;
  plan.cold_prefill = args.has("cold-start");
  if (args.get("prefill-reps")) {
    plan.prefill_reps = static_cast<int>(integer_flag(args, "prefill-reps", 1, 1, 1000));
    plan.warm_up = true;
  }
  plan.progress = progress_line();
  std::optional<trace::RunTracer> tracer;
  if (trace_path) {
    tracer.emplace(*trace_path, backend);
    tracer->attach(plan);
  }
  const exec::RunOutcome outcome = exec::run_placement(cfg, weights, exec_plan, backend, opt, plan);
  const exec::Executor& model = *outcome.executor;
  if (tracer) {
    tracer->write(model);
    std::cerr << "dmap run: trace written to " << *trace_path << "\n";
  }

  // The report.
  report::RunReport rep;
  rep.model = sc.model.name;
  rep.family = cfg.family;
  rep.weights = checkpoint ? "checkpoint" : "random";
  rep.dtype = dtype_name(dtype);
  rep.placement = how;
  rep.backend = exec::backend_name(backend);
  rep.semantics = gpu_backend ? exec::semantics_name(*semantics) : "cpu";
  rep.executor = backend == exec::Backend::kCuda
                     ? std::string("CUDA, ") + exec::semantics_name(*semantics) + " semantics"
                 : backend == exec::Backend::kEmulated
                     ? std::string("emulated GPU, ") + exec::semantics_name(*semantics) +
                           " semantics (GPU modules timed on the emulator's model clock, not measured)"
                     : std::string("CPU");
  rep.batch = batch;
  rep.prompt_tokens = P;
  rep.new_tokens = new_tokens;
  rep.threads = threads;
  rep.isa = exec::cpu::isa_name(exec::cpu::best_isa());
  rep.tokens = outcome.result.tokens;
  rep.prefill_s = outcome.result.prefill_s;
  rep.decode_s = outcome.result.decode_s;
  rep.disk_bytes_read = static_cast<int64_t>(model.disk_bytes_read());
  rep.decode_disk_read_s = outcome.decode_disk_read_s;
  rep.experts = cfg.experts;
  rep.top_k = cfg.top_k;
  const exec::ExpertCounts counts = model.expert_counts();
  auto experts = [&](int64_t forwards, int64_t touched, int64_t rows) {
    report::RunExperts e;
    e.forwards = forwards;
    if (forwards == 0) return e;
    e.touched = static_cast<double>(touched) / static_cast<double>(forwards);
    e.rows = static_cast<double>(rows) / static_cast<double>(forwards);
    e.uniform = sim::touched_experts(cfg.experts, cfg.top_k, e.rows);
    // (The batch repeats one prompt: its sequences route alike, and their counts say nothing of
    // the router's spread — only a single sequence's prefill does.)
    if (batch == 1) e.spread = sim::sequence_spread_of(cfg.experts, cfg.top_k, e.rows, e.touched);
    return e;
  };
  rep.prefill_experts = experts(counts.prefill_forwards, counts.prefill_touched, counts.prefill_rows);
  rep.decode_experts = experts(counts.decode_forwards, counts.decode_touched, counts.decode_rows);
  rep.device_map_json = device_map_to_json(dm);
  // Per module: the device of its weights (the module's first tensor), prefill and median decode.
  for (const auto& m : model.module_times()) {
    std::string device = "cpu";
    for (const auto& [name, d] : tensor_device) {
      if (name.rfind(m.module + ".", 0) == 0) {
        device = d.str();
        break;
      }
    }
    rep.modules.push_back({m.module, device, m.prefill_s, median(m.decode_s)});
  }
  std::cout << (format == "json" ? report::run_report_json(rep) + "\n" : report::run_report_table(rep));
  return 0;
}

}  // namespace dmap::cli
