// dmap export gguf: a checkpoint (or seeded random weights at a model's shapes) as the GGUF
// file llama.cpp's converter writes (exec/gguf_export.h).
#include <filesystem>
#include <iostream>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/gguf.h"
#include "core/output.h"
#include "core/scenario.h"
#include "exec/gguf_export.h"
#include "exec/model.h"

namespace dmap::cli {
namespace {

const char* kExportHelp = R"(usage: dmap export gguf MODEL_OR_CHECKPOINT --out FILE.gguf [options]

Writes the model's weights as the GGUF file llama.cpp's convert_hf_to_gguf.py writes (tensor
names, q/k row order, types, hyperparameters), so llama.cpp runs the weights dmap runs. No
vocabulary is written (tokenizer.ggml.model = none): llama.cpp runs it on token ids.
Families: llama, mistral, qwen2, qwen3.

  --type T            f32, f16 (default), bf16 or q8_0 (1-D tensors and norms stay f32)
  --out FILE          the .gguf to write (written beside, then renamed: never half-written)
  --random-weights    seeded random weights at the model's shapes (a preset or config.json)
  --dtype D           their dtype before conversion: float32 (default), float16, bfloat16
  --seed N            their seed (default 0)
  --name NAME         general.name (default: the model's name)
)";

}  // namespace

int cmd_export(const std::vector<std::string>& argv) {
  const Args args(argv, {"type", "out", "dtype", "seed", "name"}, {"help", "random-weights"});
  if (args.has("help")) {
    std::cout << kExportHelp;
    return 0;
  }
  if (args.positional().size() != 2 || args.positional()[0] != "gguf") {
    throw InputError("dmap export: expected `gguf MODEL_OR_CHECKPOINT` (see --help)");
  }
  const std::string model_ref = args.positional()[1];
  const auto out = args.get("out");
  if (!out || out->empty()) throw InputError("dmap export gguf: --out FILE.gguf is required");
  const std::string type_text = args.get("type").value_or("f16");
  const auto type = parse_gguf_file_type(type_text);
  if (!type || (*type != GgufFileType::kF32 && *type != GgufFileType::kF16 && *type != GgufFileType::kBF16 &&
                *type != GgufFileType::kQ8_0)) {
    throw InputError("--type must be f32, f16, bf16 or q8_0, not '" + type_text + "'");
  }
  const ModelSpec spec = resolve_model(model_ref, "", models_dir());
  const exec::ExecConfig cfg = exec::exec_config(spec);
  exec::gguf_arch(cfg);  // a family the exporter writes (a clear error before any weight is read)

  namespace fs = std::filesystem;
  std::error_code ec;
  const bool folder = fs::is_directory(model_ref, ec);
  const bool has_weights = folder && (fs::exists(fs::path(model_ref) / "model.safetensors", ec) ||
                                      fs::exists(fs::path(model_ref) / "model.safetensors.index.json", ec));
  const bool random = args.has("random-weights");
  if (!random && !has_weights) {
    throw InputError(model_ref + ": no checkpoint weights here (model.safetensors or its index); "
                     "pass --random-weights to export seeded random weights at its shapes");
  }
  DType dtype = DType::kFloat32;
  if (auto d = args.get("dtype")) {
    if (!random) throw InputError("--dtype applies to --random-weights; a checkpoint keeps its own");
    auto dt = parse_dtype(*d);
    if (!dt || (*dt != DType::kFloat32 && *dt != DType::kFloat16 && *dt != DType::kBFloat16)) {
      throw InputError("--dtype must be float32, float16 or bfloat16, not '" + *d + "'");
    }
    dtype = *dt;
  }
  const int64_t seed = args.get("seed") ? nonnegative_flag(args, "seed", 0) : 0;
  check_output_file(*out, "--out");  // before any weight is read

  std::shared_ptr<const exec::Checkpoint> ck;
  const exec::ModelWeights weights = random ? exec::ModelWeights::random(cfg, dtype, static_cast<uint64_t>(seed))
                                            : exec::ModelWeights::from_checkpoint(
                                                  cfg, ck = std::make_shared<const exec::Checkpoint>(
                                                           exec::Checkpoint::open(model_ref)));
  const std::string name = args.get("name").value_or(spec.name.empty() ? model_ref : spec.name);
  const size_t n = exec::export_gguf(cfg, weights, *type, name, *out);
  std::error_code size_ec;
  const auto bytes = fs::file_size(*out, size_ec);
  std::cout << "wrote " << *out << ": " << n << " tensors, " << gguf_file_type_name(*type) << ", "
            << (size_ec ? 0 : bytes) << " bytes (" << exec::gguf_arch(cfg) << ")\n";
  return 0;
}

}  // namespace dmap::cli
