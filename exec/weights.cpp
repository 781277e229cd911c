// Executor weights from checkpoints or seeds, and their disk offload (see weights.h).
#include "exec/weights.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"
#include "core/output.h"
#include "exec/exec_dtype.h"

namespace dmap::exec {

namespace {

// The safetensors element type as the executor's type: the one place StDType meets DType
// (Checkpoint::require has refused every other type with the file and tensor named).
DType dtype_of(const TensorView& t, const std::string& name) {
  switch (t.dtype) {
    case StDType::kF32: return DType::kFloat32;
    case StDType::kF16: return DType::kFloat16;
    case StDType::kBF16: return DType::kBFloat16;
    default: break;
  }
  throw InternalError("tensor '" + name + "' is " + st_dtype_name(t.dtype) + ", which Checkpoint::require refuses");
}

// splitmix64: fast, seedable, good enough for test weights.
uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

constexpr size_t kHugePage = size_t{2} << 20;

// DMAP_WEIGHT_PAGES=small keeps every weight on 4 KiB pages (for measuring what the pages do).
bool huge_pages_wanted() {
  const char* e = std::getenv("DMAP_WEIGHT_PAGES");
  return !(e && std::string(e) == "small");
}

}  // namespace

// (weights.h)
WeightBuffer weight_buffer(size_t bytes) {
  const bool huge = bytes >= kHugePage && huge_pages_wanted();
  void* p = nullptr;
  if (::posix_memalign(&p, huge ? kHugePage : 64, std::max<size_t>(bytes, 1)) != 0) throw std::bad_alloc();
  if (huge) ::madvise(p, bytes, MADV_HUGEPAGE);  // a hint: refused or unsupported, 4 KiB pages serve
  return {static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); }};
}

std::vector<std::pair<std::string, std::vector<int64_t>>> ModelWeights::expected(const ExecConfig& c) {
  using Layout = ExecConfig::Layout;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  const int64_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  out.push_back({"model.embed_tokens.weight", {c.vocab, c.hidden}});
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    if (c.layout != Layout::kPostNorm) out.push_back({p + "input_layernorm.weight", {c.hidden}});
    if (c.fused) {
      out.push_back({p + "self_attn.qkv_proj.weight", {q + 2 * kv, c.hidden}});
    } else {
      out.push_back({p + "self_attn.q_proj.weight", {q, c.hidden}});
      out.push_back({p + "self_attn.k_proj.weight", {kv, c.hidden}});
      out.push_back({p + "self_attn.v_proj.weight", {kv, c.hidden}});
    }
    if (c.qkv_bias) {
      out.push_back({p + "self_attn.q_proj.bias", {q}});
      out.push_back({p + "self_attn.k_proj.bias", {kv}});
      out.push_back({p + "self_attn.v_proj.bias", {kv}});
    }
    out.push_back({p + "self_attn.o_proj.weight", {c.hidden, q}});
    if (c.qk_norm == ExecConfig::QkNorm::kPerHead) {
      out.push_back({p + "self_attn.q_norm.weight", {c.head_dim}});
      out.push_back({p + "self_attn.k_norm.weight", {c.head_dim}});
    } else if (c.qk_norm == ExecConfig::QkNorm::kAllHeads) {
      out.push_back({p + "self_attn.q_norm.weight", {q}});
      out.push_back({p + "self_attn.k_norm.weight", {kv}});
    }
    out.push_back({p + "post_attention_layernorm.weight", {c.hidden}});
    if (c.layout == Layout::kSandwich) out.push_back({p + "pre_feedforward_layernorm.weight", {c.hidden}});
    if (c.is_sparse(i)) {  // transformers v5: the router, then the experts as two 3-D tensors
      out.push_back({p + "mlp.gate.weight", {c.experts, c.hidden}});
      out.push_back({p + "mlp.experts.gate_up_proj", {c.experts, 2 * c.moe_inter, c.hidden}});
      out.push_back({p + "mlp.experts.down_proj", {c.experts, c.hidden, c.moe_inter}});
    } else if (c.fused) {
      out.push_back({p + "mlp.gate_up_proj.weight", {2 * c.inter, c.hidden}});
    } else {
      out.push_back({p + "mlp.gate_proj.weight", {c.inter, c.hidden}});
      out.push_back({p + "mlp.up_proj.weight", {c.inter, c.hidden}});
    }
    if (!c.is_sparse(i)) out.push_back({p + "mlp.down_proj.weight", {c.hidden, c.inter}});
    if (c.layout != Layout::kPreNorm) out.push_back({p + "post_feedforward_layernorm.weight", {c.hidden}});
  }
  out.push_back({"model.norm.weight", {c.hidden}});
  if (!c.tie) out.push_back({"lm_head.weight", {c.vocab, c.hidden}});
  return out;
}

// A tensor as a matrix: every dimension but the last is a row (a 3-D experts tensor [E, N, K] is
// E x N rows of K; a 1-D tensor one row).
static int64_t leading_rows(const std::vector<int64_t>& shape) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  return rows;
}

ModelWeights ModelWeights::from_checkpoint(const ExecConfig& cfg, std::shared_ptr<const Checkpoint> ck) {
  ModelWeights w;
  w.ck_ = std::move(ck);
  std::optional<StDType> dtype;
  for (const auto& [name, shape] : expected(cfg)) {
    const TensorView& t = w.ck_->require(name, shape);
    if (dtype && *dtype != t.dtype) {
      throw InputError(t.file, 0, 0,
                       "tensor '" + name + "' is " + st_dtype_name(t.dtype) + " but earlier tensors are " +
                           st_dtype_name(*dtype) + " (mixed dtypes are not supported)");
    }
    dtype = t.dtype;
    const int64_t rows = leading_rows(shape);
    const int64_t cols = shape.back();
    w.add({cpu::Weight{t.data, dtype_of(t, name), rows, cols}, name, t.file, t.file_offset, false});
  }
  return w;
}

Bytes ModelWeights::read_in() {
  // One descriptor per file (a checkpoint's tensors share one or a few shards), closed on any exit.
  struct Files {
    std::map<std::string, int> fds;
    ~Files() {
      for (const auto& [path, fd] : fds) ::close(fd);
    }
    int open(const std::string& path, const std::string& tensor) {
      auto it = fds.find(path);
      if (it != fds.end()) return it->second;
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw RuntimeFailure(path + ": cannot open to read '" + tensor + "': " + std::strerror(errno));
      return fds[path] = fd;
    }
  } files;
  Bytes total = 0;
  for (WeightRef& r : refs_) {
    if (r.on_disk || r.file.empty()) continue;  // offloaded, or already memory of its own
    const size_t bytes = weight_bytes(r.w);
    auto buf = weight_buffer(bytes);
    const int fd = files.open(r.file, r.name);
    size_t done = 0;
    while (done < bytes) {
      const ssize_t n = ::pread(fd, buf.get() + done, bytes - done, static_cast<off_t>(r.offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const std::string why = n == 0 ? "the file ends early" : std::strerror(errno);
        throw RuntimeFailure(r.file + ": cannot read '" + r.name + "': " + why);
      }
      done += static_cast<size_t>(n);
    }
    r.w.data = buf.get();
    r.file.clear();  // memory of its own from now on (offloading it again writes it out)
    r.offset = 0;
    owned_.push_back(std::move(buf));
    total += bytes;
  }
  return total;
}

void ModelWeights::add(WeightRef r) {
  index_[r.name] = refs_.size();
  refs_.push_back(std::move(r));
}

void ModelWeights::offload_to_disk(const std::vector<std::string>& names, const std::string& offload_dir) {
  for (const auto& name : names) {
    auto found = index_.find(name);
    if (found == index_.end()) throw InternalError("offload of unknown tensor " + name);
    auto it = refs_.begin() + static_cast<long>(found->second);
    if (it->file.empty()) {
      std::filesystem::create_directories(offload_dir);
      const std::string path = (std::filesystem::path(offload_dir) / (name + ".dat")).string();
      const size_t bytes = weight_bytes(it->w);
      // Written through to the disk before anything reads it: dirty pages flushed later would
      // otherwise compete with (and spoil the timing of) the forwards that read them.
      const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) throw RuntimeFailure("cannot create offload file " + path + ": " + std::strerror(errno));
      const char* p = static_cast<const char*>(it->w.data);
      size_t done = 0;
      while (done < bytes) {
        const ssize_t n = ::write(fd, p + done, bytes - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          const std::string why = std::strerror(errno);
          ::close(fd);
          throw RuntimeFailure("cannot write offload file " + path + ": " + why);
        }
        done += static_cast<size_t>(n);
      }
      const bool synced = ::fdatasync(fd) == 0;
      if (::close(fd) != 0 || !synced)
        throw RuntimeFailure("cannot write offload file " + path + ": " + std::strerror(errno));
      it->file = path;
      it->offset = 0;
    }
    it->on_disk = true;
  }
}

std::vector<std::string> ModelWeights::names() const {
  std::vector<std::string> out;
  for (const auto& r : refs_) out.push_back(r.name);
  return out;
}

ModelWeights ModelWeights::random(const ExecConfig& cfg, DType dtype, uint64_t seed) {
  DType t = DType::kFloat32;
  if (dtype == DType::kBFloat16) {
    t = DType::kBFloat16;
  } else if (dtype == DType::kFloat16) {
    t = DType::kFloat16;
  } else if (dtype != DType::kFloat32) {
    throw InputError("random weights: dtype must be float32, float16 or bfloat16");
  }
  const size_t elt = elt_size(t);
  ModelWeights w;
  uint64_t index = 0;
  for (const auto& [name, shape] : expected(cfg)) {
    const int64_t rows = leading_rows(shape);
    const int64_t cols = shape.back();
    const int64_t n = rows * cols;
    auto buf = weight_buffer(static_cast<size_t>(n) * elt);
    const bool is_norm = shape.size() == 1 && name.find("bias") == std::string::npos;
    const double stddev = is_norm ? 0.1 : 1.0 / std::sqrt(static_cast<double>(cols));
    const double offset = is_norm && !cfg.gemma ? 1.0 : 0.0;
    uint8_t* out = buf.get();
    const uint64_t tensor_seed = seed * 0x100000001b3ull + (++index);
    constexpr int64_t kChunk = 1 << 16;
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
      uint64_t s = tensor_seed ^ (static_cast<uint64_t>(c0) * 0x9e3779b97f4a7c15ull);
      for (int64_t i = c0; i < std::min(n, c0 + kChunk); ++i) {
        // Irwin-Hall (sum of 4 uniforms), scaled to unit variance: normal enough for weights.
        double u = 0;
        for (int k = 0; k < 4; ++k) u += static_cast<double>(splitmix(s) >> 11) * (1.0 / 9007199254740992.0);
        const float v = static_cast<float>(offset + stddev * (u - 2.0) * std::sqrt(3.0));
        if (t == DType::kFloat32) {
          std::memcpy(out + i * 4, &v, 4);
        } else {
          const uint16_t h = t == DType::kBFloat16 ? cpu::f32_to_bf16(v) : cpu::f32_to_f16(v);
          std::memcpy(out + i * 2, &h, 2);
        }
      }
    }
    w.add({cpu::Weight{out, t, rows, cols}, name, "", 0, false});
    w.owned_.push_back(std::move(buf));
  }
  return w;
}

const WeightRef& ModelWeights::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw InternalError("no weight " + name);
  return refs_[it->second];
}

bool ModelWeights::has(const std::string& name) const { return index_.count(name) > 0; }

Bytes ModelWeights::bytes() const {
  Bytes b = 0;
  for (const auto& r : refs_) b += static_cast<Bytes>(weight_bytes(r.w));
  return b;
}

size_t weight_bytes(const cpu::Weight& w) { return static_cast<size_t>(w.rows) * row_bytes(w); }

size_t row_bytes(const cpu::Weight& w) { return static_cast<size_t>(w.cols) * elt_size(w.type); }

}  // namespace dmap::exec
