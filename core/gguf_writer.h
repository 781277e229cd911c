// Writing GGUF files (version 3), the container llama.cpp loads: a header, typed key-value
// metadata, tensor infos, then each tensor's bytes at an aligned offset.
//
// Layout (ggml-org/llama.cpp, ggml/src/gguf.cpp and docs of the format): "GGUF", uint32 version
// 3, uint64 tensor count, uint64 metadata count; each key a GGUF string (uint64 length + bytes)
// with a uint32 value type and the value (arrays: element type, uint64 count, elements); each
// tensor info its name, uint32 dimension count, uint64 dimensions (ne[0] first: the innermost,
// a PyTorch [out, in] weight is written [in, out]), uint32 ggml type and uint64 offset from the
// start of the data section; the data section starts at the next multiple of the alignment
// (general.alignment, 32 by default) and each tensor at one. Little-endian throughout.
//
// The file is written through core/output.h's write_file_atomic (a temporary beside it, renamed
// into place; an interrupt or error removes it): never half-written.
//
// Example:
//   GgufWriter w;
//   w.add_string("general.architecture", "llama");
//   w.add_u32("llama.block_count", 22);
//   w.add_tensor("token_embd.weight", GgmlType::kF16, {2048, 32000}, [&] { return f16_bytes(embed); });
//   w.write("model.gguf");
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/gguf.h"

namespace dmap {

class GgufWriter {
 public:
  void add_string(const std::string& key, const std::string& value);
  void add_u32(const std::string& key, uint32_t value);
  void add_i32(const std::string& key, int32_t value);
  void add_f32(const std::string& key, float value);
  void add_bool(const std::string& key, bool value);
  void add_string_array(const std::string& key, const std::vector<std::string>& values);
  // `dims`: ne[0] first (a whole number of the type's blocks). `make` gives the tensor's bytes
  // when the file is written, one tensor at a time (a model never sits in memory twice).
  using Bytes = std::function<std::vector<uint8_t>()>;
  void add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> dims, Bytes make);
  // Writes the file (write_file_atomic). RuntimeFailure when it cannot be written.
  void write(const std::string& path) const;
  size_t tensor_count() const { return tensors_.size(); }

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> dims;
    uint64_t bytes = 0;
    Bytes make;
  };
  std::vector<uint8_t> kv_;  // the metadata, serialised as they are added
  uint64_t kv_count_ = 0;
  std::vector<Tensor> tensors_;
  void key(const std::string& k, uint32_t type);
};

}  // namespace dmap
