// `dmap memory`: what `accelerate estimate-memory` prints (largest layer, total size per dtype),
// plus the KV cache per 1,000 tokens of context and a per-module breakdown.
#include <cstdio>
#include <iomanip>
#include <iostream>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/placement.h"
#include "core/error.h"
#include "core/gguf.h"
#include "core/json.h"
#include "core/module_sizes.h"
#include "core/scenario.h"
#include "strategies/infer_auto_device_map.h"

namespace dmap::cli {

namespace {

const char* kMemoryHelp =
    R"(usage: dmap memory MODEL [--dtypes float32,float16,int8,int4] [--format table|json|markdown] [--depth N]
                         [--quantization JSON|FILE] [--gguf Q4_K_M]

MODEL: a model YAML, an HF config.json, a checkpoint folder, or a preset name (configs/models).

Per dtype, as `accelerate estimate-memory` computes it (accelerate's sizing rule on the model
built in float32): the largest layer (the model's no-split block, embedding or head), the total
size, and training with Adam (4 x total); then what it lacks: the KV cache per 1,000 tokens of
context (batch 1; int8/int4/float8 weights keep a float16 cache) and the size of each module
(layers 1..N-1 are like layer 0 and are not repeated). --depth limits the breakdown (default 4).

A quantized checkpoint (a quantization_config in its config, or --quantization: the config a user
passes to from_pretrained) adds what transformers v5 counts for its device map (the quantized
modules as the quantizer builds them, at the load dtype) and what the loaded model holds (plus
the quantization state the map does not count); the dtype rows stay accelerate's estimate of the
unquantized model, as `accelerate estimate-memory` builds it from the config.

--gguf T adds the size of the model's llama.cpp GGUF file of type T (Q4_0, Q4_K_M, Q5_K_M, Q6_K,
Q8_0, BF16, ...): each tensor at the type llama-quantize gives it, and the count per type.
)";

// The quantized checkpoint's figures (transformers v5 sizing at its load dtype).
struct QuantFigures {
  DType load_dtype = DType::kBFloat16;
  ModuleSizes map;     // what the device map counts
  ModuleSizes loaded;  // what the loaded tensors hold
  ModuleSizes plain;   // the unquantized model at the load dtype
  Bits largest = 0;
  std::vector<std::string> largest_names;
};

struct DtypeRow {
  DType dtype;
  Bits largest = 0;
  std::vector<std::string> largest_names;
  Bits total = 0;
  Bytes kv_per_1k = 0;
};

Bytes kv_cache_per_1k_tokens(const ModuleTree& t, DType d) {
  const DType cache =
      (d == DType::kInt8 || d == DType::kInt4 || d == DType::kInt2 || d == DType::kFloat8) ? DType::kFloat16 : d;
  const Bits per_token =
      2 * t.dims.num_layers * t.dims.num_kv_heads * t.dims.head_dim * accelerate_bits_per_element(cache);
  return per_token * 1000 / 8;
}

// Whether a node is inside layer 1..N-1 of a ModuleList of repeated blocks (shown once).
bool repeated_layer(const ModuleTree& t, int id) {
  for (int a = id; a > 0; a = t.node(a).parent) {
    const TreeNode& n = t.node(a);
    const TreeNode& p = t.node(n.parent);
    if (p.class_name == "ModuleList" && n.local != "0") return true;
  }
  return false;
}

}  // namespace

int cmd_memory(const std::vector<std::string>& argv) {
  const Args args(argv, {"dtypes", "format", "depth", "quantization", "gguf"}, {"help"});
  if (args.has("help")) {
    std::cout << kMemoryHelp;
    return 0;
  }
  if (args.positional().size() != 1) throw InputError("dmap memory takes one MODEL (see --help)");
  const std::string format = args.get("format").value_or("table");
  if (format != "table" && format != "json" && format != "markdown") {
    throw InputError("--format must be table, json or markdown, not '" + format + "'");
  }
  int depth = 4;
  if (auto d = args.get("depth")) {
    try {
      depth = std::stoi(*d);
    } catch (...) {
      throw InputError("--depth: expected a number, not '" + *d + "'");
    }
  }
  std::vector<DType> dtypes;
  for (const std::string& name : split_commas(args.get("dtypes").value_or("float32,float16,int8,int4"))) {
    auto d = parse_dtype(name);
    if (!d) throw InputError("--dtypes: unknown dtype '" + name + "'");
    dtypes.push_back(*d);
  }

  ModelSpec spec = resolve_model(args.positional()[0], "", models_dir());
  apply_quantization_flag(args, spec);
  if (auto g = args.get("gguf")) {
    const auto ft = parse_gguf_file_type(*g);
    if (!ft) {
      std::string known;
      for (const auto& n : gguf_file_type_names()) known += (known.empty() ? "" : ", ") + n;
      throw InputError("--gguf: unknown llama.cpp file type '" + *g + "' (known: " + known + ")");
    }
    spec.gguf_file_type = gguf_file_type_name(*ft);
  }
  if (spec.gguf && args.get("gguf")) {
    throw InputError(spec.source + ": a GGUF file is sized by its own tensors; --gguf applies to other models");
  }
  ModelSpec unquantized = spec;
  unquantized.quantization.reset();
  unquantized.gguf_file_type.clear();
  unquantized.gguf.reset();
  const ModuleTree tree = build_module_tree(unquantized);  // what accelerate estimate-memory builds
  std::vector<char> no_split(tree.size(), 0);
  for (int i = 0; i < tree.size(); ++i) {
    for (const auto& c : tree.no_split_modules) {
      if (!tree.node(i).is_tensor && tree.node(i).class_name == c) no_split[i] = 1;
    }
  }
  std::vector<int> top;
  const TreeNode& root = tree.node(tree.root());
  top.insert(top.end(), root.params.begin(), root.params.end());
  top.insert(top.end(), root.children.begin(), root.children.end());
  top.insert(top.end(), root.buffers.begin(), root.buffers.end());

  std::vector<DtypeRow> rows;
  std::vector<ModuleSizes> all_sizes;
  for (DType d : dtypes) {
    SizingOptions so;
    so.rule = SizingRule::kAccelerate;
    so.dtype = d;
    ModuleSizes s = compute_module_sizes(tree, so);
    DtypeRow r;
    r.dtype = d;
    r.total = s.total();
    auto [best, names] = strategies::max_layer_size(tree, s, top, no_split);
    r.largest = best;
    for (int id : names) r.largest_names.push_back(tree.node(id).name);
    r.kv_per_1k = kv_cache_per_1k_tokens(tree, d);
    rows.push_back(r);
    all_sizes.push_back(std::move(s));
  }
  // Breakdown rows: modules down to `depth`, layer 0 standing for all layers.
  std::vector<int> breakdown;
  for (int id = 1; id < tree.size(); ++id) {
    const TreeNode& n = tree.node(id);
    if (n.is_tensor || repeated_layer(tree, id)) continue;
    int d = 0;
    for (int a = id; a > 0; a = tree.node(a).parent) ++d;
    if (d <= depth) breakdown.push_back(id);
  }
  const std::string title = tree.model_name.empty() ? tree.model_type : tree.model_name;
  const ExpertSummary moe = expert_summary(tree);

  std::optional<ModuleTree> qtree;
  QuantFigures qf;
  if (spec.quantization || !spec.gguf_file_type.empty() || spec.gguf) {
    qtree = build_module_tree(spec);
    qf.load_dtype = qtree->checkpoint_dtype;
    SizingOptions so;
    so.rule = SizingRule::kTransformersV5;
    so.dtype = qf.load_dtype;
    qf.map = compute_module_sizes(*qtree, so);
    qf.plain = compute_module_sizes(tree, so);
    so.loaded = true;
    qf.loaded = compute_module_sizes(*qtree, so);
    std::vector<char> qno_split(qtree->size(), 0);
    for (int i = 0; i < qtree->size(); ++i) {
      for (const auto& c : qtree->no_split_modules) {
        if (!qtree->node(i).is_tensor && qtree->node(i).class_name == c) qno_split[i] = 1;
      }
    }
    const TreeNode& qroot = qtree->node(qtree->root());
    std::vector<int> qtop(qroot.params.begin(), qroot.params.end());
    qtop.insert(qtop.end(), qroot.children.begin(), qroot.children.end());
    qtop.insert(qtop.end(), qroot.buffers.begin(), qroot.buffers.end());
    auto [best, names] = strategies::max_layer_size(*qtree, qf.map, qtop, qno_split);
    qf.largest = best;
    for (int id : names) qf.largest_names.push_back(qtree->node(id).name);
  }
  // A module's figure in the quantized tree (by name: the trees share module names).
  auto qsize = [&](const ModuleSizes& s, int id) -> Bits { return qtree ? s.of(qtree->find(tree.node(id).name)) : 0; };

  if (format == "json") {
    JsonWriter w(true);
    w.begin_object();
    w.key("model");
    w.value(title);
    w.key("model_type");
    w.value(tree.model_type);
    w.key("parameters");
    w.value(tree.num_parameters());
    w.key("num_layers");
    w.value(tree.dims.num_layers);
    if (moe.sparse_layers > 0) {
      w.key("experts");
      w.begin_object();
      w.key("sparse_layers");
      w.value(moe.sparse_layers);
      w.key("routed_per_layer");
      w.value(tree.dims.num_experts);
      w.key("per_token");
      w.value(tree.dims.experts_per_token);
      w.key("routed_parameters");
      w.value(moe.routed_parameters);
      w.key("routed_parameters_per_layer");
      w.value(moe.layer_parameters);
      w.key("active_parameters_per_token");
      w.value(moe.active_parameters);
      w.end_object();
    }
    if (qtree && !qtree->gguf_file_type.empty()) {
      w.key("gguf");
      w.begin_object();
      w.key("file_type");
      w.value(qtree->gguf_file_type);
      w.key("tensor_bytes");
      w.raw(format_bits_as_bytes(qf.map.total()));
      w.key("types");
      w.begin_object();
      for (const auto& c : gguf_type_counts(*qtree)) {
        w.key(ggml_traits(c.type).name);
        w.begin_object();
        w.key("tensors");
        w.value(c.tensors);
        w.key("bytes");
        w.value(c.bytes);
        w.end_object();
      }
      w.end_object();
      w.end_object();
    }
    if (qtree && qtree->quantization) {
      w.key("quantization");
      w.begin_object();
      w.key("method");
      w.value(quant_method_key(qtree->quantization->method));
      w.key("summary");
      w.value(quant_summary(*qtree->quantization));
      w.key("pre_quantized");
      w.value(qtree->quantization->pre_quantized);
      w.key("load_dtype");
      w.value(dtype_name(qf.load_dtype));
      w.key("map_bytes");
      w.raw(format_bits_as_bytes(qf.map.total()));
      w.key("loaded_bytes");
      w.raw(format_bits_as_bytes(qf.loaded.total()));
      w.key("unquantized_bytes");
      w.raw(format_bits_as_bytes(qf.plain.total()));
      w.key("largest_layer_bytes");
      w.raw(format_bits_as_bytes(qf.largest));
      w.key("largest_layer");
      w.begin_array();
      for (const auto& n : qf.largest_names) w.value(n);
      w.end_array();
      w.end_object();
    }
    w.key("dtypes");
    w.begin_array();
    for (const auto& r : rows) {
      w.begin_object();
      w.key("dtype");
      w.value(dtype_name(r.dtype));
      w.key("largest_layer_bytes");
      w.raw(format_bits_as_bytes(r.largest));
      w.key("largest_layer");
      w.begin_array();
      for (const auto& n : r.largest_names) w.value(n);
      w.end_array();
      w.key("total_bytes");
      w.raw(format_bits_as_bytes(r.total));
      w.key("training_adam_bytes");
      w.raw(format_bits_as_bytes(4 * r.total));
      w.key("kv_cache_bytes_per_1000_tokens");
      w.value(r.kv_per_1k);
      w.end_object();
    }
    w.end_array();
    w.key("modules");
    w.begin_array();
    for (int id : breakdown) {
      w.begin_object();
      w.key("name");
      w.value(tree.node(id).name);
      w.key("class");
      w.value(tree.node(id).class_name);
      w.key("bytes");
      w.begin_object();
      for (size_t i = 0; i < rows.size(); ++i) {
        w.key(dtype_name(rows[i].dtype));
        w.raw(format_bits_as_bytes(all_sizes[i].of(id)));
      }
      if (qtree) {
        w.key("quantized");
        w.raw(format_bits_as_bytes(qsize(qf.map, id)));
        w.key("loaded");
        w.raw(format_bits_as_bytes(qsize(qf.loaded, id)));
      }
      w.end_object();
      w.end_object();
    }
    w.end_array();
    w.end_object();
    std::cout << w.str() << "\n";
    return 0;
  }

  const bool md = format == "markdown";
  auto h = [](Bits b) { return format_bytes_human(static_cast<double>(b) / 8.0); };
  std::cout << (md ? "## " : "") << "Memory usage for " << title << " (" << tree.model_type << ", "
            << tree.num_parameters() << " parameters, " << tree.dims.num_layers << " layers)\n\n";
  if (md) {
    std::cout << "| dtype | largest layer | total size | training using Adam | KV cache / 1,000 tokens |\n";
    std::cout << "|---|---|---|---|---|\n";
    for (const auto& r : rows) {
      std::cout << "| " << dtype_name(r.dtype) << " | " << h(r.largest) << " | " << h(r.total) << " | "
                << h(4 * r.total) << " | " << format_bytes_human(static_cast<double>(r.kv_per_1k)) << " |\n";
    }
  } else {
    std::printf("%-9s %16s %16s %20s %24s\n", "dtype", "largest layer", "total size", "training (Adam)",
                "KV cache / 1k tokens");
    for (const auto& r : rows) {
      std::printf("%-9s %16s %16s %20s %24s\n", std::string(dtype_name(r.dtype)).c_str(), h(r.largest).c_str(),
                  h(r.total).c_str(), h(4 * r.total).c_str(),
                  format_bytes_human(static_cast<double>(r.kv_per_1k)).c_str());
    }
  }
  if (moe.sparse_layers > 0 && !rows.empty()) {
    const double total = static_cast<double>(tree.num_parameters());
    std::cout << "\nmixture of experts: " << moe.sparse_layers << " of " << tree.dims.num_layers
              << " layers route each token to " << tree.dims.experts_per_token << " of " << tree.dims.num_experts
              << " experts; " << moe.active_parameters << " parameters run per token (" << std::fixed
              << std::setprecision(1) << 100.0 * static_cast<double>(moe.active_parameters) / total << std::defaultfloat
              << " % of " << tree.num_parameters() << ")\n";
    std::cout << "routed experts of one layer: ";
    for (size_t i = 0; i < rows.size(); ++i) {
      const double bytes = static_cast<double>(moe.layer_parameters) *
                           static_cast<double>(accelerate_bits_per_element(rows[i].dtype)) / 8.0;
      std::cout << (i ? ", " : "") << format_bytes_human(bytes) << " " << dtype_name(rows[i].dtype);
    }
    std::cout << " (transformers v5 holds them as one module: offloaded, all of them cross the link every forward)\n";
  }
  if (qtree && !qtree->gguf_file_type.empty()) {
    std::cout << "\n"
              << (md ? "### " : "") << "GGUF " << qtree->gguf_file_type
              << " (llama.cpp): " << format_bytes_human(static_cast<double>(qf.map.total()) / 8.0) << " of tensors ("
              << format_bits_as_bytes(qf.map.total()) << " B)\n\n";
    for (const auto& c : gguf_type_counts(*qtree)) {
      std::cout << (md ? "- " : "  ") << "type " << ggml_traits(c.type).name << ": " << c.tensors << " tensors, "
                << format_bytes_human(static_cast<double>(c.bytes)) << "\n";
    }
  }
  if (qtree && qtree->quantization) {
    const QuantizationConfig& q = *qtree->quantization;
    const double map = static_cast<double>(qf.map.total()) / 8.0, plain = static_cast<double>(qf.plain.total()) / 8.0;
    const double loaded = static_cast<double>(qf.loaded.total()) / 8.0;
    std::cout << "\n"
              << (md ? "### " : "") << "Quantized: " << quant_summary(q)
              << (q.pre_quantized ? " (the checkpoint's quantization_config)" : " (quantized while loading)")
              << ", loaded in " << dtype_name(qf.load_dtype) << "\n\n";
    std::cout << (md ? "- " : "  ") << "device map counts (transformers v5): " << format_bytes_human(map)
              << " (unquantized in " << dtype_name(qf.load_dtype) << ": " << format_bytes_human(plain) << ", "
              << std::fixed << std::setprecision(2) << plain / std::max(1.0, map) << std::defaultfloat
              << "x smaller)\n";
    std::cout << (md ? "- " : "  ") << "largest layer: " << format_bytes_human(static_cast<double>(qf.largest) / 8.0);
    for (size_t i = 0; i < qf.largest_names.size() && i < 2; ++i) std::cout << (i ? ", " : " (") << qf.largest_names[i];
    if (qf.largest_names.size() > 2) std::cout << " and " << qf.largest_names.size() - 2 << " more";
    std::cout << (qf.largest_names.empty() ? "" : ")") << "\n";
    std::cout << (md ? "- " : "  ") << "the loaded model holds: " << format_bytes_human(loaded);
    if (loaded > map)
      std::cout << " (+" << format_bytes_human(loaded - map) << " of quantization state the map does not count)";
    if (loaded < map) std::cout << " (" << format_bytes_human(map - loaded) << " less than the map counts)";
    std::cout << "\n";
    if (!q.pre_quantized && !q.dequantize) {
      // Quantized while loading: each weight arrives in the load dtype and is quantized on the device.
      Bits biggest = 0;
      for (const TreeNode& n : qtree->nodes()) {
        if (n.is_tensor && n.tied_source < 0 && qtree->node(n.parent).quantized.weight_bits > 0) {
          biggest = std::max<Bits>(biggest, n.numel * torch_bits_per_element(qf.load_dtype));
        }
      }
      std::cout << (md ? "- " : "  ") << "while loading: up to "
                << format_bytes_human(loaded + static_cast<double>(biggest) / 8.0) << " (the largest quantized weight, "
                << format_bytes_human(static_cast<double>(biggest) / 8.0) << ", arrives in "
                << dtype_name(qf.load_dtype) << " before it is quantized)\n";
    }
    if (q.method == QuantMethod::kBnb4bit || q.method == QuantMethod::kBnb8bit) {
      std::cout
          << (md ? "- " : "  ") << "bitsandbytes: the map keeps 10 % of every device free (adjust_max_memory), "
          << "and transformers refuses a map with modules on cpu or disk unless llm_int8_enable_fp32_cpu_offload\n";
    }
  }
  if (!rows.empty()) {
    std::cout << "\nlargest layer: ";
    const auto& names = rows[0].largest_names;  // every decoder layer, often: the first and a count
    for (size_t i = 0; i < names.size() && i < 2; ++i) std::cout << (i ? ", " : "") << names[i];
    if (names.size() > 2) std::cout << " and " << names.size() - 2 << " more of the same size";
    std::cout << "\n\n";
  }
  std::cout << (md ? "### " : "") << "Per-module breakdown (each of the " << tree.dims.num_layers
            << " layers is like layer 0)\n\n";
  if (md) {
    std::cout << "| module | class |";
    for (const auto& r : rows) std::cout << " " << dtype_name(r.dtype) << " |";
    if (qtree) std::cout << (qtree->quantization ? " quantized | loaded |" : " GGUF | GGUF |");
    std::cout << "\n|---|---|";
    for (size_t i = 0; i < rows.size() + (qtree ? 2 : 0); ++i) std::cout << "---|";
    std::cout << "\n";
  } else if (qtree) {
    std::printf("  %-48s %-24s", "", "");
    for (const auto& r : rows) std::printf(" %12s", std::string(dtype_name(r.dtype)).c_str());
    std::printf(" %12s %12s\n", qtree->quantization ? "quantized" : "GGUF", qtree->quantization ? "loaded" : "GGUF");
  }
  for (int id : breakdown) {
    const TreeNode& n = tree.node(id);
    if (md) {
      std::cout << "| " << n.name << " | " << n.class_name << " |";
      for (size_t i = 0; i < rows.size(); ++i) std::cout << " " << h(all_sizes[i].of(id)) << " |";
      if (qtree) std::cout << " " << h(qsize(qf.map, id)) << " | " << h(qsize(qf.loaded, id)) << " |";
      std::cout << "\n";
    } else {
      std::printf("  %-48s %-24s", n.name.c_str(), n.class_name.c_str());
      for (size_t i = 0; i < rows.size(); ++i) std::printf(" %12s", h(all_sizes[i].of(id)).c_str());
      if (qtree) std::printf(" %12s %12s", h(qsize(qf.map, id)).c_str(), h(qsize(qf.loaded, id)).c_str());
      std::printf("\n");
    }
  }
  return 0;
}

}  // namespace dmap::cli
