// Reading GGUF files (versions 2 and 3) strictly, for `dmap memory|map|simulate FILE.gguf`: the
// header, every metadata entry and tensor info are checked before anything is used; the tensor
// data is never read (only its extent checked against the file's size). Every failure is an
// InputError naming the file, the byte offset and the field.
//
// Checks (as ggml/src/gguf.cpp loads a file, and stricter where it would read out of bounds):
// magic "GGUF"; version 2 or 3; counts and string lengths within what the file can hold;
// metadata value types 0-12, arrays of a non-array type; no duplicate key or tensor name;
// general.alignment a power of two (default 32); a tensor name under 64 bytes, 1 to 4
// dimensions, each positive, their product within int64; a known ggml type whose block divides
// ne[0]; offsets aligned, in file order without overlap, and the data inside the file.
//
// Then the model: the architecture's hyperparameters ({arch}.block_count, embedding_length, ...)
// as a config.json would give them (gguf_model_spec), and each tensor's exact bytes in the file,
// which core/model_families.cpp puts on the module tree (the HF tensor a GGUF name stands for:
// gguf_hf_name).
//
// Example:
//   const GgufInfo g = read_gguf("Llama-3.2-1B-Q4_K_M.gguf");   // InputError when malformed
//   ModelSpec spec = gguf_model_spec(g);                          // llama, 16 layers, ...
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/gguf.h"
#include "core/module_tree.h"

namespace dmap {

struct ModelSpec;

// A metadata value: scalars as int64 / uint64 / double / bool / string, arrays as their elements
// (strings kept; numeric arrays keep count and, for up to 64 elements, the values).
struct GgufValue {
  uint32_t type = 0;       // gguf_type (0 uint8 ... 12 float64; 9 array)
  uint32_t elem_type = 0;  // an array's element type
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;
  bool b = false;
  std::string s;
  uint64_t count = 0;             // an array's length
  std::vector<std::string> strings;  // a string array's elements (capped: see the reader)
  std::vector<double> numbers;       // a numeric array's first elements
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> dims;  // ne[0] first
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  // within the data section
  uint64_t bytes = 0;
};

struct GgufInfo {
  std::string path;
  uint32_t version = 0;
  uint64_t alignment = 32;
  std::map<std::string, GgufValue> kv;
  std::vector<GgufTensor> tensors;
  uint64_t data_offset = 0, file_size = 0;

  const GgufValue* find(const std::string& key) const;
  std::string architecture() const;  // general.architecture ("" when absent)
  // An unsigned integer entry (any integer type), nullopt when absent.
  std::optional<uint64_t> get_uint(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  const GgufTensor* tensor(const std::string& name) const;
  uint64_t tensor_bytes() const;  // all tensors' data
};

GgufInfo read_gguf(const std::string& path);
// The same from bytes in memory (`origin` names them in errors): the fuzz and unit tests.
GgufInfo parse_gguf(const std::string& bytes, const std::string& origin);

// The model a GGUF file holds, as transformers would describe it: model_type and hyperparameters
// from the metadata (architectures llama — Llama, Mistral, TinyLlama files —, qwen2 and qwen3), a
// tied head when the file has no output.weight, and the file itself (ModelSpec::gguf) to size the
// tree's tensors with.
// InputError naming the file and the missing key, or an architecture dmap does not map.
ModelSpec gguf_model_spec(const GgufInfo& g);

// The tree sized as the file stores it: each stored tensor's bytes and ggml type from the file
// (a tie target and non-persistent buffers: 0). InputError naming the file when a tensor the
// model has is missing or holds another number of elements.
ModuleTree gguf_file_module_tree(const ModuleTree& tree, const GgufInfo& g);

// The GGUF name llama.cpp's converter gives a transformers tensor of `model_type`
// ("model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"); "" when it has none.
std::string gguf_name_of(const std::string& model_type, const std::string& hf_name);

}  // namespace dmap
