#include "core/gguf_writer.h"

#include <cstring>

#include "core/error.h"
#include "core/output.h"

namespace dmap {
namespace {

constexpr uint32_t kUint32 = 4, kInt32 = 5, kFloat32 = 6, kBool = 7, kString = 8, kArray = 9;
constexpr uint64_t kAlignment = 32;  // GGUF_DEFAULT_ALIGNMENT

void put_bytes(std::vector<uint8_t>& out, const void* p, size_t n) {
  const size_t at = out.size();
  out.resize(at + n);
  if (n > 0) std::memcpy(out.data() + at, p, n);
}

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  put_bytes(out, &v, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  put_bytes(out, s.data(), s.size());
}

uint64_t padded(uint64_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

}  // namespace

void GgufWriter::key(const std::string& k, uint32_t type) {
  put_string(kv_, k);
  put<uint32_t>(kv_, type);
  ++kv_count_;
}

void GgufWriter::add_string(const std::string& k, const std::string& v) {
  key(k, kString);
  put_string(kv_, v);
}
void GgufWriter::add_u32(const std::string& k, uint32_t v) {
  key(k, kUint32);
  put(kv_, v);
}
void GgufWriter::add_i32(const std::string& k, int32_t v) {
  key(k, kInt32);
  put(kv_, v);
}
void GgufWriter::add_f32(const std::string& k, float v) {
  key(k, kFloat32);
  put(kv_, v);
}
void GgufWriter::add_bool(const std::string& k, bool v) {
  key(k, kBool);
  put<uint8_t>(kv_, v ? 1 : 0);
}
void GgufWriter::add_string_array(const std::string& k, const std::vector<std::string>& values) {
  key(k, kArray);
  put<uint32_t>(kv_, kString);
  put<uint64_t>(kv_, values.size());
  for (const std::string& v : values) put_string(kv_, v);
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> dims, Bytes make) {
  const GgmlTypeTraits& tr = ggml_traits(type);
  if (dims.empty() || dims[0] % tr.block != 0) {
    throw InternalError("GgufWriter: " + name + ": rows must be whole " + tr.name + " blocks");
  }
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  const uint64_t bytes = static_cast<uint64_t>(n / tr.block * tr.bytes);
  tensors_.push_back({name, type, std::move(dims), bytes, std::move(make)});
}

void GgufWriter::write(const std::string& path) const {
  std::vector<uint8_t> head;
  head.reserve(64 + kv_.size() + tensors_.size() * 128);
  put<uint32_t>(head, 0x46554747);  // "GGUF"
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_count_);
  put_bytes(head, kv_.data(), kv_.size());
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) put<uint64_t>(head, static_cast<uint64_t>(d));
    put<uint32_t>(head, ggml_type_id(t.type));
    put<uint64_t>(head, offset);
    offset = padded(offset + t.bytes);
  }
  head.resize(padded(head.size()), 0);

  write_file_atomic(path, [&](std::ostream& f) {
    f.write(reinterpret_cast<const char*>(head.data()), static_cast<std::streamsize>(head.size()));
    const char zeros[kAlignment] = {};
    for (const Tensor& t : tensors_) {
      const std::vector<uint8_t> data = t.make();
      if (data.size() != t.bytes) {
        throw InternalError("GgufWriter: " + t.name + ": " + std::to_string(data.size()) + " bytes, its shape needs " +
                            std::to_string(t.bytes));
      }
      f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
      f.write(zeros, static_cast<std::streamsize>(padded(data.size()) - data.size()));
      if (!f) throw RuntimeFailure(path + ": write failed (disk full?)");
    }
  });
}

}  // namespace dmap
