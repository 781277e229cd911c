// Strict safetensors reading: a single `model.safetensors` or shards listed by
// `model.safetensors.index.json`, memory-mapped. Everything in the file is validated before a
// byte of tensor data is handed out — header length, JSON, dtypes, shapes, offsets (inside the
// data region, sizes matching dtype x shape, no overlaps, no holes) — and every failure is an
// InputError naming the file and the tensor. Never an out-of-bounds read.
//
// Layout (huggingface/safetensors): 8-byte little-endian header length N, N bytes of JSON
// {"__metadata__": {str: str}, NAME: {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}},
// then the data region; offsets are relative to its start.
//
// Example:
//   Checkpoint ck = Checkpoint::open("path/to/folder");           // or .../model.safetensors
//   TensorView w = ck.require("model.layers.0.mlp.up_proj.weight", {14336, 4096});
//   const uint16_t* bf16 = w.as<uint16_t>();
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dmap::exec {

enum class StDType { kBool, kU8, kI8, kF8E5M2, kF8E4M3, kI16, kU16, kF16, kBF16, kI32, kU32, kF32, kF64, kI64, kU64 };
std::optional<StDType> parse_st_dtype(std::string_view s);
std::string st_dtype_name(StDType d);
size_t st_dtype_size(StDType d);

struct TensorView {
  std::string name;
  std::string file;
  StDType dtype = StDType::kF32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  size_t bytes = 0;
  uint64_t file_offset = 0;  // where the data starts in the file (for reads that bypass the map)
  int64_t numel() const;
  template <class T>
  const T* as() const {
    return reinterpret_cast<const T*>(data);
  }
};

// One parsed file. `open` maps the file read-only; `parse` validates a buffer it does not own
// (the fuzz target and tests use it).
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  static std::unique_ptr<SafetensorsFile> parse(const std::byte* data, size_t size, const std::string& origin);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }  // in header order
  const TensorView* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  size_t size() const { return size_; }

 private:
  SafetensorsFile() = default;
  void validate(const std::byte* data, size_t size);
  std::string path_;
  const std::byte* base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint: one file, or the shards of an index. Tensor names are unique across shards.
class Checkpoint {
 public:
  // `path`: a .safetensors file, a model.safetensors.index.json, or a folder holding either.
  static Checkpoint open(const std::string& path);

  const TensorView* find(std::string_view name) const;
  // The tensor, checked: present, a float dtype (F32/F16/BF16), and of `shape` when given.
  const TensorView& require(const std::string& name, const std::vector<int64_t>& shape = {}) const;
  std::vector<std::string> names() const;
  const std::string& origin() const { return origin_; }

 private:
  std::string origin_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*, std::less<>> by_name_;
};

}  // namespace dmap::exec
