// libFuzzer target: a GGUF file, read as `dmap memory|map|simulate FILE.gguf` read it — the
// header, metadata and tensor infos checked, the model described from them, and its module tree
// sized with the file's tensors. Loads or raises InputError; nothing else.
#include <cstdint>

#include "core/gguf_reader.h"
#include "core/model_spec.h"
#include "core/module_tree.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = dmap::fuzz::input_file(data, size, "model.gguf");
  return dmap::fuzz::accept_or_refuse([&] {
    const dmap::ModelSpec spec = dmap::load_model_spec(path);
    const dmap::ModuleTree tree = dmap::build_module_tree(spec);
    if (tree.size() == 0) std::abort();
  });
}
