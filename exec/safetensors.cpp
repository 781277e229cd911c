// Strict safetensors parsing and memory mapping.
#include "exec/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "core/input_file.h"
#include "core/json_parse.h"
#include "core/yaml_io.h"

namespace dmap::exec {

namespace fs = std::filesystem;

namespace {
struct DTypeInfo {
  StDType d;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {StDType::kBool, "BOOL", 1},      {StDType::kU8, "U8", 1},          {StDType::kI8, "I8", 1},
    {StDType::kF8E5M2, "F8_E5M2", 1}, {StDType::kF8E4M3, "F8_E4M3", 1}, {StDType::kI16, "I16", 2},
    {StDType::kU16, "U16", 2},        {StDType::kF16, "F16", 2},        {StDType::kBF16, "BF16", 2},
    {StDType::kI32, "I32", 4},        {StDType::kU32, "U32", 4},        {StDType::kF32, "F32", 4},
    {StDType::kF64, "F64", 8},        {StDType::kI64, "I64", 8},        {StDType::kU64, "U64", 8},
};
// The reference implementation's limit (safetensors MAX_HEADER_SIZE).
constexpr uint64_t kMaxHeader = 100'000'000;
}  // namespace

std::optional<StDType> parse_st_dtype(std::string_view s) {
  for (const auto& d : kDTypes) {
    if (s == d.name) return d.d;
  }
  return std::nullopt;
}
std::string st_dtype_name(StDType d) {
  for (const auto& x : kDTypes) {
    if (x.d == d) return x.name;
  }
  return "?";
}
size_t st_dtype_size(StDType d) {
  for (const auto& x : kDTypes) {
    if (x.d == d) return x.size;
  }
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapped_ && base_) munmap(const_cast<std::byte*>(base_), size_);
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  check_input_file(path);  // a FIFO would block the open, a folder or a dangling link is an error
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(path, 0, 0, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(path, 0, 0, "not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* p = nullptr;
  if (size > 0) {
    p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw RuntimeFailure(path + ": mmap failed: " + std::strerror(err));
    }
  }
  ::close(fd);
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->base_ = static_cast<const std::byte*>(p);
  f->size_ = size;
  f->mapped_ = size > 0;
  f->validate(f->base_, size);
  return f;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::parse(const std::byte* data, size_t size, const std::string& origin) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = origin;
  f->base_ = data;
  f->size_ = size;
  f->validate(data, size);
  return f;
}

void SafetensorsFile::validate(const std::byte* data, size_t size) {
  auto fail = [&](const std::string& what) -> void { throw InputError(path_, 0, 0, what); };
  if (size < 8)
    fail("not a safetensors file: " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint64_t>(std::to_integer<uint8_t>(data[i]));
  if (n > kMaxHeader)
    fail("header length " + std::to_string(n) + " exceeds the 100 MB limit (not a safetensors file?)");
  if (n > size - 8)
    fail("header length " + std::to_string(n) + " runs past the end of the " + std::to_string(size) + "-byte file");
  const std::string_view header(reinterpret_cast<const char*>(data + 8), static_cast<size_t>(n));
  if (header.empty() || header[0] != '{') fail("the header is not a JSON object");
  JsonValue root;
  try {
    root = parse_json(header, path_);
  } catch (const InputError& e) {
    fail("header: " + e.message());
  }
  if (root.kind != JsonValue::Kind::kObject) fail("the header is not a JSON object");
  const std::byte* region = data + 8 + n;
  const uint64_t region_size = size - 8 - n;
  for (size_t m = 0; m < root.keys.size(); ++m) {
    const std::string& name = root.keys[m];
    const JsonValue& v = root.items[m];
    if (name == "__metadata__") {
      if (v.kind != JsonValue::Kind::kObject) fail("__metadata__ must be an object of strings");
      for (size_t k = 0; k < v.keys.size(); ++k) {
        if (v.items[k].kind != JsonValue::Kind::kString) fail("__metadata__[\"" + v.keys[k] + "\"] is not a string");
        metadata_[v.keys[k]] = v.items[k].s;
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (v.kind != JsonValue::Kind::kObject) fail(where + ": expected {dtype, shape, data_offsets}");
    for (const std::string& k : v.keys) {
      if (k != "dtype" && k != "shape" && k != "data_offsets") fail(where + ": unknown field '" + k + "'");
    }
    const JsonValue* dt = v.find("dtype");
    const JsonValue* sh = v.find("shape");
    const JsonValue* off = v.find("data_offsets");
    if (!dt || dt->kind != JsonValue::Kind::kString) fail(where + ": missing dtype");
    auto dtype = parse_st_dtype(dt->s);
    if (!dtype) fail(where + ": unknown dtype '" + dt->s + "'");
    if (!sh || sh->kind != JsonValue::Kind::kArray) fail(where + ": missing shape");
    TensorView t;
    t.name = name;
    t.file = path_;
    t.dtype = *dtype;
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : sh->items) {
      if (!d.is_int() || d.i < 0) fail(where + ": shape entries must be non-negative integers");
      t.shape.push_back(d.i);
      const uint64_t dim = static_cast<uint64_t>(d.i);
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / dim) overflow = true;
      numel *= dim;
    }
    if (overflow || numel > std::numeric_limits<uint64_t>::max() / st_dtype_size(*dtype))
      fail(where + ": shape overflows");
    if (!off || off->kind != JsonValue::Kind::kArray || off->items.size() != 2 || !off->items[0].is_int() ||
        !off->items[1].is_int()) {
      fail(where + ": data_offsets must be [begin, end]");
    }
    const int64_t b = off->items[0].i, e = off->items[1].i;
    if (b < 0 || e < b)
      fail(where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] are not ordered");
    if (static_cast<uint64_t>(e) > region_size) {
      fail(where + ": data_offsets end " + std::to_string(e) + " lies past the data region (" +
           std::to_string(region_size) + " bytes)");
    }
    const uint64_t want = numel * st_dtype_size(*dtype);
    if (static_cast<uint64_t>(e - b) != want) {
      fail(where + ": " + std::to_string(e - b) + " bytes for " + st_dtype_name(*dtype) + " of " +
           std::to_string(numel) + " elements (needs " + std::to_string(want) + ")");
    }
    t.data = region + b;
    t.file_offset = 8 + n + static_cast<uint64_t>(b);
    t.bytes = static_cast<size_t>(e - b);
    index_[name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }
  // Offsets must tile the data region exactly: no overlaps, no holes (the reference check).
  std::vector<const TensorView*> order;
  for (const auto& t : tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [&](const TensorView* a, const TensorView* b) {
    return a->data != b->data ? a->data < b->data : a->bytes < b->bytes;
  });
  uint64_t cursor = 0;
  for (const TensorView* t : order) {
    const uint64_t b = static_cast<uint64_t>(t->data - region);
    if (b < cursor) {
      fail("tensor '" + t->name + "' overlaps the tensor before it (begins at " + std::to_string(b) +
           ", previous ends at " + std::to_string(cursor) + ")");
    }
    if (b > cursor)
      fail("hole in the data region before tensor '" + t->name + "' (bytes " + std::to_string(cursor) + ".." +
           std::to_string(b) + ")");
    cursor = b + t->bytes;
  }
  if (cursor != region_size) {
    fail("the data region has " + std::to_string(region_size - cursor) + " bytes after the last tensor");
  }
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Checkpoint Checkpoint::open(const std::string& path) {
  Checkpoint ck;
  ck.origin_ = path;
  std::error_code ec;
  fs::path p(path);
  if (fs::is_directory(p, ec)) {
    // symlink_status: a dangling link is found here and reported by check_input_file.
    if (fs::exists(fs::symlink_status(p / "model.safetensors.index.json", ec))) {
      p = p / "model.safetensors.index.json";
    } else if (fs::exists(fs::symlink_status(p / "model.safetensors", ec))) {
      p = p / "model.safetensors";
    } else {
      throw InputError(path, 0, 0, "no model.safetensors or model.safetensors.index.json in this folder");
    }
  }
  auto add_file = [&](const fs::path& f) {
    auto sf = std::shared_ptr<SafetensorsFile>(SafetensorsFile::open(f.string()));
    for (const auto& t : sf->tensors()) {
      auto [it, inserted] = ck.by_name_.emplace(t.name, &t);
      if (!inserted) throw InputError(f.string(), 0, 0, "tensor '" + t.name + "' also appears in " + it->second->file);
    }
    ck.files_.push_back(std::move(sf));
  };
  if (p.filename().string().size() >= 5 && p.extension() == ".json") {
    const YAML::Node idx = load_yaml_file(p.string());
    const YAML::Node wm = idx["weight_map"];
    if (!wm.IsDefined() || !wm.IsMap()) fail_at(p.string(), idx, "index has no weight_map {tensor: file}");
    std::vector<std::string> shards;
    std::map<std::string, std::string> expected;
    for (const auto& kv : wm) {
      const std::string tensor = yaml_string(p.string(), kv.first, "tensor name");
      const std::string shard = yaml_string(p.string(), kv.second, "shard file");
      if (shard.find('/') != std::string::npos || shard == "..")
        fail_at(p.string(), kv.second, "shard '" + shard + "' must be a file name beside the index");
      expected[tensor] = shard;
      if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
    }
    for (const auto& s : shards) add_file(p.parent_path() / s);
    for (const auto& [tensor, shard] : expected) {
      auto it = ck.by_name_.find(tensor);
      if (it == ck.by_name_.end()) {
        throw InputError(p.string(), 0, 0,
                         "tensor '" + tensor + "' is listed for " + shard + " but that shard does not hold it");
      }
    }
  } else {
    add_file(p);
  }
  return ck;
}

const TensorView* Checkpoint::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorView& Checkpoint::require(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorView* t = find(name);
  if (!t) throw InputError(origin_, 0, 0, "missing tensor '" + name + "'");
  if (t->dtype != StDType::kF32 && t->dtype != StDType::kF16 && t->dtype != StDType::kBF16) {
    throw InputError(t->file, 0, 0,
                     "tensor '" + name + "' is " + st_dtype_name(t->dtype) + "; dmap runs F32, F16 and BF16");
  }
  if (!shape.empty() && t->shape != shape) {
    auto str = [](const std::vector<int64_t>& s) {
      std::string o = "[";
      for (size_t i = 0; i < s.size(); ++i) o.append(i ? ", " : "").append(std::to_string(s[i]));
      return o + "]";
    };
    throw InputError(t->file, 0, 0,
                     "tensor '" + name + "' has shape " + str(t->shape) + ", the model needs " + str(shape));
  }
  return *t;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [n, t] : by_name_) out.push_back(n);
  return out;
}

}  // namespace dmap::exec
