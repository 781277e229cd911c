// Google Benchmark for the planner (issue: "each strategy for Llama-2-70B (80 layers) and
// gpt2-xl, with and without no-split classes. Target: under 1 ms per map"; Qwen3-32B for the
// 2025-2026 families).
//
// Benchmarks (all single-threaded, times per call):
//   sizes/<model>                          baseline: compute_module_sizes alone (one tree walk)
//   plan/<model>/<case>/<memory>           one whole plan_device_map call: sizes + balancing +
//                                          planner + clean_device_map (tree built once, outside)
//   tree/<model>                           build_module_tree from a parsed ModelSpec
//   end_to_end/<model>/v5:auto/<memory>    YAML text -> ModelSpec -> ModuleTree -> device map
//
// Cases: infer_auto_device_map with no_split None and with the model's no-split class;
// from_pretrained (transformers v5) auto, balanced, balanced_low_0, sequential; from_pretrained
// in transformers 4.x (== accelerate's load_checkpoint_and_dispatch) auto. All in float16.
// Memory: caps are fractions of the model's float16 size, so the maps cross device boundaries
// and (without no-split classes) split a layer:
//   gpu_cpu       GPU 0 and 1 at 35 % each, cpu 200 %    (GPUs cannot hold it; rest on cpu)
//   gpu_cpu_disk  GPU 0 and 1 at 30 % each, cpu 20 %     (about 20 % goes to disk)
//
// Every run reports, besides time:
//   x_sizes      its time / the sizes/<model> baseline time of the same run (same statistic:
//                median to median, mean to mean); absent when the baseline was filtered out
//   entries      device-map entries; disk_entries: those on disk
//   split_layers entries that lie strictly inside a no-split-class module (a split layer)
// The ratio is added by a reporter wrapper, so it appears on the console and in
// --benchmark_out files (json or console format) alike.
//
// Run: build/tests/bench/planner_bench [--benchmark_filter=llama] [--benchmark_repetitions=5]
//      or tests/bench/run_planner_bench.sh (waits for a quiet machine, prints medians).
#include <benchmark/benchmark.h>
#include <yaml-cpp/yaml.h>

#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/device_map.h"
#include "core/dtype.h"
#include "core/model_spec.h"
#include "core/module_sizes.h"
#include "core/module_tree.h"
#include "core/units.h"
#include "strategies/plan.h"

namespace {

using dmap::Bits;
using dmap::Device;
using dmap::DType;
using dmap::MaxMemory;
using dmap::ModuleTree;
using dmap::strategies::Entry;
using dmap::strategies::Pipeline;
using dmap::strategies::PlanRequest;
using dmap::strategies::PlanResult;
using dmap::strategies::Strategy;

// ---------------------------------------------------------------------------------------
// Models: the public config.json values (meta-llama/Llama-2-70b-hf, openai-community/gpt2-xl,
// Qwen/Qwen3-32B: configs/models/qwen3_32b.yaml, its architecture keys).

constexpr const char* kLlama2_70b = R"(
name: Llama-2-70b-hf
model_type: llama
vocab_size: 32000
hidden_size: 8192
intermediate_size: 28672
num_hidden_layers: 80
num_attention_heads: 64
num_key_value_heads: 8
max_position_embeddings: 4096
rms_norm_eps: 1.0e-5
tie_word_embeddings: false
torch_dtype: float16
)";

constexpr const char* kGpt2Xl = R"(
name: gpt2-xl
model_type: gpt2
vocab_size: 50257
n_embd: 1600
n_layer: 48
n_head: 25
n_positions: 1024
n_ctx: 1024
layer_norm_epsilon: 1.0e-5
tie_word_embeddings: true
torch_dtype: float32
)";

constexpr const char* kQwen3_32b = R"(
name: Qwen3-32B
model_type: qwen3
vocab_size: 151936
hidden_size: 5120
intermediate_size: 25600
num_hidden_layers: 64
num_attention_heads: 64
num_key_value_heads: 8
head_dim: 128
max_position_embeddings: 40960
rms_norm_eps: 1.0e-6
tie_word_embeddings: false
torch_dtype: bfloat16
)";

// google/gemma-3-12b-it (configs/models/gemma3_12b.yaml): the multimodal tree, a SigLIP tower
// before the 48-layer text model.
constexpr const char* kGemma3_12b = R"(
name: gemma-3-12b-it
model_type: gemma3
text_config: {hidden_size: 3840, intermediate_size: 15360, num_attention_heads: 16, num_hidden_layers: 48,
  num_key_value_heads: 8, head_dim: 256, vocab_size: 262208, sliding_window: 1024,
  rope_scaling: {factor: 8.0, rope_type: linear}}
vision_config: {hidden_size: 1152, image_size: 896, intermediate_size: 4304, num_attention_heads: 16,
  num_hidden_layers: 27, patch_size: 14, vision_use_head: false}
torch_dtype: bfloat16
)";

struct Model {
  std::string id;    // benchmark name component
  const char* yaml;  // config text
  std::unique_ptr<ModuleTree> tree;
  Bits total_fp16 = 0;  // accelerate size of the whole model in float16 (cap reference)
};

dmap::ModelSpec parse_spec(const char* yaml, const std::string& id) {
  return dmap::model_spec_from_node(YAML::Load(yaml), "<planner_bench:" + id + ">");
}

dmap::SizingOptions fp16_sizing() {
  dmap::SizingOptions so;
  so.rule = dmap::SizingRule::kAccelerate;
  so.dtype = DType::kFloat16;
  return so;
}

Model& model(const std::string& id) {
  static std::map<std::string, Model> models;
  auto it = models.find(id);
  if (it != models.end()) return it->second;
  Model m;
  m.id = id;
  m.yaml = id == "llama2_70b"   ? kLlama2_70b
           : id == "qwen3_32b"  ? kQwen3_32b
           : id == "gemma3_12b" ? kGemma3_12b
                                : kGpt2Xl;
  m.tree = std::make_unique<ModuleTree>(dmap::build_module_tree(parse_spec(m.yaml, id)));
  m.total_fp16 = dmap::compute_module_sizes(*m.tree, fp16_sizing()).total();
  return models.emplace(id, std::move(m)).first->second;
}

// ---------------------------------------------------------------------------------------
// Cases.

struct MemorySetting {
  const char* id;
  double gpu_fraction;  // each of GPU 0 and 1
  double cpu_fraction;
};
constexpr MemorySetting kMemory[] = {
    {"gpu_cpu", 0.35, 2.00},
    {"gpu_cpu_disk", 0.30, 0.20},
};

struct Case {
  const char* id;
  Entry entry;
  Pipeline pipeline;
  Strategy strategy;
  bool model_no_split;  // infer_auto_device_map: pass the model's no-split classes (else None)
};
constexpr Case kCases[] = {
    {"infer_auto:no_split=None", Entry::kInferAutoDeviceMap, Pipeline::kTransformersV5, Strategy::kAuto, false},
    {"infer_auto:no_split=model", Entry::kInferAutoDeviceMap, Pipeline::kTransformersV5, Strategy::kAuto, true},
    {"v5:auto", Entry::kFromPretrained, Pipeline::kTransformersV5, Strategy::kAuto, true},
    {"v5:balanced", Entry::kFromPretrained, Pipeline::kTransformersV5, Strategy::kBalanced, true},
    {"v5:balanced_low_0", Entry::kFromPretrained, Pipeline::kTransformersV5, Strategy::kBalancedLow0, true},
    {"v5:sequential", Entry::kFromPretrained, Pipeline::kTransformersV5, Strategy::kSequential, true},
    {"v4:auto", Entry::kFromPretrained, Pipeline::kTransformersV4, Strategy::kAuto, true},
};

MaxMemory caps_for(Bits total, const MemorySetting& mem) {
  // Whole bytes, as a user would write them.
  auto frac = [total](double f) {
    return dmap::bytes_to_bits(static_cast<dmap::Bytes>(static_cast<double>(total) / dmap::kBitsPerByte * f));
  };
  MaxMemory mm;
  mm.set(Device::gpu(0), frac(mem.gpu_fraction));
  mm.set(Device::gpu(1), frac(mem.gpu_fraction));
  mm.set(Device::cpu(), frac(mem.cpu_fraction));
  return mm;
}

PlanRequest request_for(const ModuleTree& tree, Bits total, const Case& c, const MemorySetting& mem) {
  PlanRequest req;
  req.tree = &tree;
  req.entry = c.entry;
  req.pipeline = c.pipeline;
  req.strategy = c.strategy;
  req.dtype = DType::kFloat16;
  req.max_memory = caps_for(total, mem);
  req.user_gave_max_memory = true;
  req.host_available_bytes = dmap::Bytes{64} << 30;  // never read /proc/meminfo (cpu is capped anyway)
  if (c.entry == Entry::kInferAutoDeviceMap) {
    if (c.model_no_split) req.no_split = tree.no_split_modules;  // else None
  }  // from_pretrained: nullopt = the model's own _no_split_modules
  return req;
}

// Counters describing the map (computed once, after the timed loop).
void describe_map(benchmark::State& state, const ModuleTree& tree, const PlanResult& r) {
  int64_t disk = 0, split = 0;
  for (const auto& [name, dev] : r.device_map.items()) {
    if (dev == Device::disk()) ++disk;
    const int id = tree.find(name);
    for (int a = id >= 0 ? tree.node(id).parent : -1; a >= 0; a = tree.node(a).parent) {
      const auto& cls = tree.node(a).class_name;
      bool hit = false;
      for (const auto& ns : tree.no_split_modules) hit = hit || ns == cls;
      if (hit) {
        ++split;
        break;
      }
    }
  }
  state.counters["entries"] = static_cast<double>(r.device_map.size());
  state.counters["disk_entries"] = static_cast<double>(disk);
  state.counters["split_layers"] = static_cast<double>(split);
}

void zero_map_counters(benchmark::State& state) {
  state.counters["entries"] = 0;
  state.counters["disk_entries"] = 0;
  state.counters["split_layers"] = 0;
}

// ---------------------------------------------------------------------------------------
// Benchmarks.

void BM_Sizes(benchmark::State& state, std::string id) {
  const Model& m = model(id);
  const dmap::SizingOptions so = fp16_sizing();
  for (auto _ : state) {
    dmap::ModuleSizes s = dmap::compute_module_sizes(*m.tree, so);
    benchmark::DoNotOptimize(s);
  }
  zero_map_counters(state);
}

void BM_Plan(benchmark::State& state, std::string id, Case c, MemorySetting mem) {
  const Model& m = model(id);
  const PlanRequest req = request_for(*m.tree, m.total_fp16, c, mem);
  PlanResult last;
  try {
    last = dmap::strategies::plan_device_map(req);  // also validates the request once
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  for (auto _ : state) {
    PlanResult r = dmap::strategies::plan_device_map(req);
    benchmark::DoNotOptimize(r);
  }
  describe_map(state, *m.tree, last);
}

void BM_Tree(benchmark::State& state, std::string id) {
  const Model& m = model(id);
  const dmap::ModelSpec spec = parse_spec(m.yaml, id);
  for (auto _ : state) {
    ModuleTree t = dmap::build_module_tree(spec);
    benchmark::DoNotOptimize(t);
  }
  zero_map_counters(state);
}

void BM_EndToEnd(benchmark::State& state, std::string id, Case c, MemorySetting mem) {
  const Model& m = model(id);
  auto run_once = [&](auto&& use) {
    ModuleTree tree = dmap::build_module_tree(parse_spec(m.yaml, id));
    PlanResult r = dmap::strategies::plan_device_map(request_for(tree, m.total_fp16, c, mem));
    use(tree, r);
  };
  try {
    run_once([&](const ModuleTree& tree, const PlanResult& r) { describe_map(state, tree, r); });
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  for (auto _ : state) {
    run_once([](const ModuleTree& tree, PlanResult& r) {
      benchmark::DoNotOptimize(tree);
      benchmark::DoNotOptimize(r);
    });
  }
}

// ---------------------------------------------------------------------------------------
// Ratio against the baseline: a reporter wrapper that adds `x_sizes` to every run.

std::string model_of(const std::string& function_name) {  // "plan/llama2_70b/..." -> "llama2_70b"
  const auto a = function_name.find('/');
  if (a == std::string::npos) return "";
  const auto b = function_name.find('/', a + 1);
  return function_name.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
}

class RatioReporter : public benchmark::BenchmarkReporter {
 public:
  explicit RatioReporter(benchmark::BenchmarkReporter* inner) : inner_(inner) {}

  bool ReportContext(const Context& context) override {
    // The library sets the streams on this wrapper (e.g. --benchmark_out); pass them on.
    inner_->SetOutputStream(&GetOutputStream());
    inner_->SetErrorStream(&GetErrorStream());
    return inner_->ReportContext(context);
  }

  void ReportRuns(const std::vector<Run>& runs) override {
    std::vector<Run> out = runs;
    for (Run& r : out) {
      if (r.error_occurred || r.report_big_o || r.report_rms) continue;
      const std::string& agg = r.aggregate_name;  // "" for a single repetition
      if (r.run_type == Run::RT_Aggregate && agg != "mean" && agg != "median") {
        // stddev / cv of the map counters (constant per benchmark) is 0 or 0/0: drop them.
        r.counters.clear();
        continue;
      }
      const std::string& fn = r.run_name.function_name;
      const std::string key = model_of(fn) + "|" + agg;
      const double secs = r.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(r.time_unit);
      if (fn.rfind("sizes/", 0) == 0) baseline_[key] = secs;
      auto it = baseline_.find(key);
      if (it != baseline_.end() && it->second > 0) r.counters["x_sizes"] = secs / it->second;
    }
    inner_->ReportRuns(out);
  }

  void Finalize() override { inner_->Finalize(); }

 private:
  benchmark::BenchmarkReporter* inner_;
  std::map<std::string, double> baseline_;
};

void register_all() {
  const char* models[] = {"llama2_70b", "gpt2_xl", "qwen3_32b", "gemma3_12b"};
  // Baselines first: the ratio reporter needs them before the runs they divide.
  for (const char* id : models) {
    benchmark::RegisterBenchmark((std::string("sizes/") + id).c_str(), BM_Sizes, std::string(id))
        ->Unit(benchmark::kMicrosecond);
  }
  for (const char* id : models) {
    for (const MemorySetting& mem : kMemory) {
      for (const Case& c : kCases) {
        const std::string name = std::string("plan/") + id + "/" + c.id + "/" + mem.id;
        benchmark::RegisterBenchmark(name.c_str(), BM_Plan, std::string(id), c, mem)->Unit(benchmark::kMicrosecond);
      }
    }
    benchmark::RegisterBenchmark((std::string("tree/") + id).c_str(), BM_Tree, std::string(id))
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark((std::string("end_to_end/") + id + "/v5:auto/gpu_cpu_disk").c_str(), BM_EndToEnd,
                                 std::string(id), kCases[2], kMemory[1])
        ->Unit(benchmark::kMicrosecond);
  }
}

// --benchmark_out_format as given (Initialize() strips the flags from argv).
std::string out_format(int argc, char** argv, bool& has_out) {
  std::string fmt = "json";
  has_out = false;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (std::strncmp(a, "--benchmark_out=", 16) == 0) has_out = true;
    if (std::strncmp(a, "--benchmark_out_format=", 23) == 0) fmt = a + 23;
  }
  return fmt;
}

}  // namespace

int main(int argc, char** argv) {
  bool has_out = false;
  const std::string fmt = out_format(argc, argv, has_out);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();

  // The default display reporter (honours --benchmark_format) is owned by the library.
  RatioReporter display(benchmark::CreateDefaultDisplayReporter());
  std::unique_ptr<benchmark::BenchmarkReporter> file_inner;
  if (has_out && fmt == "json") file_inner = std::make_unique<benchmark::JSONReporter>();
  if (has_out && fmt == "console")
    file_inner = std::make_unique<benchmark::ConsoleReporter>(benchmark::ConsoleReporter::OO_None);
  std::unique_ptr<RatioReporter> file;
  if (file_inner) file = std::make_unique<RatioReporter>(file_inner.get());
  // csv (deprecated): no wrapper, the library writes it without the ratio.
  benchmark::RunSpecifiedBenchmarks(&display, file.get());
  benchmark::Shutdown();
  return 0;
}
