#include "core/gguf_reader.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/model_spec.h"

#include <yaml-cpp/yaml.h>

namespace dmap {
namespace {

constexpr uint32_t kArray = 9, kString = 8;
constexpr uint64_t kMaxName = 64;          // GGML_MAX_NAME (with its NUL)
constexpr size_t kMaxKeptStrings = 1 << 20;  // a vocabulary's tokens, at most
constexpr size_t kMaxKeptNumbers = 64;

// Bytes per element of a scalar gguf_type (0 for string/array/unknown).
uint64_t scalar_size(uint32_t t) {
  switch (t) {
    case 0: case 1: case 7: return 1;   // uint8, int8, bool
    case 2: case 3: return 2;           // uint16, int16
    case 4: case 5: case 6: return 4;   // uint32, int32, float32
    case 10: case 11: case 12: return 8;  // uint64, int64, float64
    default: return 0;
  }
}

// Thrown when the bytes read so far (a prefix of the file) end before the metadata does.
struct NeedMore {};

class Cursor {
 public:
  // `b`: the file's first bytes (all of them when b.size() == file_size).
  Cursor(const std::string& b, const std::string& origin, uint64_t file_size)
      : b_(b), origin_(origin), file_size_(file_size) {}
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(origin_, 0, 0, "GGUF: " + what + " (at byte " + std::to_string(pos_) + ")");
  }
  // Bytes left in the file; past the prefix read so far, reading asks for more.
  uint64_t left() const { return file_size_ - pos_; }
  void need(uint64_t n) const {
    if (n <= left() && pos_ + n > b_.size()) throw NeedMore{};
  }
  uint64_t pos() const { return pos_; }
  template <typename T>
  T get(const char* field) {
    if (left() < sizeof(T)) fail(std::string("the file ends inside ") + field);
    need(sizeof(T));
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(const std::string& field, uint64_t max = std::numeric_limits<uint64_t>::max()) {
    const uint64_t n = get<uint64_t>(field.c_str());
    if (n > left()) fail(field + ": a string of " + std::to_string(n) + " bytes, past the end of the file");
    if (n > max) fail(field + ": " + std::to_string(n) + " bytes, longer than " + std::to_string(max));
    need(n);
    std::string s(b_.data() + pos_, n);
    pos_ += n;
    return s;
  }
  void skip(uint64_t n, const std::string& field) {
    if (n > left()) fail(field + ": past the end of the file");
    need(n);
    pos_ += n;
  }

 private:
  const std::string& b_;
  const std::string& origin_;
  uint64_t file_size_;
  uint64_t pos_ = 0;
};

GgufValue read_value(Cursor& c, uint32_t type, const std::string& key) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case 0: v.u = c.get<uint8_t>(key.c_str()); v.i = static_cast<int64_t>(v.u); break;
    case 1: v.i = c.get<int8_t>(key.c_str()); break;
    case 2: v.u = c.get<uint16_t>(key.c_str()); v.i = static_cast<int64_t>(v.u); break;
    case 3: v.i = c.get<int16_t>(key.c_str()); break;
    case 4: v.u = c.get<uint32_t>(key.c_str()); v.i = static_cast<int64_t>(v.u); break;
    case 5: v.i = c.get<int32_t>(key.c_str()); break;
    case 6: v.d = c.get<float>(key.c_str()); break;
    case 7: {
      const uint8_t b = c.get<uint8_t>(key.c_str());
      if (b > 1) c.fail(key + ": a bool of value " + std::to_string(b));
      v.b = b == 1;
      break;
    }
    case 8: v.s = c.str(key); break;
    case 10: v.u = c.get<uint64_t>(key.c_str()); v.i = static_cast<int64_t>(v.u); break;
    case 11: v.i = c.get<int64_t>(key.c_str()); break;
    case 12: v.d = c.get<double>(key.c_str()); break;
    case kArray: {
      v.elem_type = c.get<uint32_t>((key + " (array type)").c_str());
      v.count = c.get<uint64_t>((key + " (array length)").c_str());
      if (v.elem_type == kArray) c.fail(key + ": an array of arrays");
      if (v.elem_type == kString) {
        if (v.count > c.left() / 8) c.fail(key + ": " + std::to_string(v.count) + " strings cannot fit in the file");
        for (uint64_t k = 0; k < v.count; ++k) {
          std::string s = c.str(key + "[" + std::to_string(k) + "]");
          if (v.strings.size() < kMaxKeptStrings) v.strings.push_back(std::move(s));
        }
      } else {
        const uint64_t size = scalar_size(v.elem_type);
        if (size == 0) c.fail(key + ": unknown array element type " + std::to_string(v.elem_type));
        if (v.count > c.left() / size) c.fail(key + ": " + std::to_string(v.count) + " elements past the end of the file");
        for (uint64_t k = 0; k < v.count; ++k) {
          const GgufValue e = read_value(c, v.elem_type, key);
          if (v.numbers.size() < kMaxKeptNumbers)
            v.numbers.push_back(e.type == 6 || e.type == 12 ? e.d : e.type == 7 ? e.b : static_cast<double>(e.i));
        }
      }
      break;
    }
    default: c.fail(key + ": unknown value type " + std::to_string(type));
  }
  return v;
}

}  // namespace

const GgufValue* GgufInfo::find(const std::string& key) const {
  auto it = kv.find(key);
  return it == kv.end() ? nullptr : &it->second;
}

std::string GgufInfo::architecture() const {
  const GgufValue* v = find("general.architecture");
  return v && v->type == kString ? v->s : "";
}

std::optional<uint64_t> GgufInfo::get_uint(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  const uint32_t t = v->type;
  if (t == 0 || t == 2 || t == 4 || t == 10) return v->u;
  if ((t == 1 || t == 3 || t == 5 || t == 11) && v->i >= 0) return static_cast<uint64_t>(v->i);
  throw InputError(path, 0, 0, "GGUF: " + key + ": expected a non-negative integer");
}

std::optional<double> GgufInfo::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type == 6 || v->type == 12) return v->d;
  if (scalar_size(v->type) > 0 && v->type != 7) return static_cast<double>(v->i);
  throw InputError(path, 0, 0, "GGUF: " + key + ": expected a number");
}

const GgufTensor* GgufInfo::tensor(const std::string& name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

uint64_t GgufInfo::tensor_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors) n += t.bytes;
  return n;
}

namespace {

GgufInfo parse_prefix(const std::string& bytes, const std::string& origin, uint64_t file_size) {
  Cursor c(bytes, origin, file_size);
  GgufInfo g;
  g.path = origin;
  g.file_size = file_size;
  if (bytes.size() < 4 || std::memcmp(bytes.data(), "GGUF", 4) != 0) c.fail("not a GGUF file (no 'GGUF' magic)");
  c.skip(4, "magic");
  g.version = c.get<uint32_t>("the version");
  if (g.version != 2 && g.version != 3) {
    c.fail("version " + std::to_string(g.version) + " (dmap reads versions 2 and 3)");
  }
  const uint64_t n_tensors = c.get<uint64_t>("the tensor count");
  const uint64_t n_kv = c.get<uint64_t>("the metadata count");
  // Each entry takes at least 12 bytes (key length, type), each tensor info at least 24.
  if (n_kv > c.left() / 12) c.fail(std::to_string(n_kv) + " metadata entries cannot fit in the file");
  if (n_tensors > c.left() / 24) c.fail(std::to_string(n_tensors) + " tensor infos cannot fit in the file");
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string key = c.str("metadata key " + std::to_string(k));
    if (key.empty()) c.fail("metadata key " + std::to_string(k) + " is empty");
    if (g.kv.count(key)) c.fail("duplicate metadata key " + key);
    const uint32_t type = c.get<uint32_t>((key + " (type)").c_str());
    g.kv[key] = read_value(c, type, key);
  }
  if (const GgufValue* a = g.find("general.alignment")) {
    if (a->type != 4) c.fail("general.alignment: expected a uint32");
    if (a->u == 0 || (a->u & (a->u - 1)) != 0) c.fail("general.alignment " + std::to_string(a->u) + " is not a power of two");
    g.alignment = a->u;
  }
  std::set<std::string> names;
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensor t;
    t.name = c.str("tensor " + std::to_string(k) + " name", kMaxName - 1);
    if (!names.insert(t.name).second) c.fail("duplicate tensor " + t.name);
    const uint32_t n_dims = c.get<uint32_t>((t.name + " (dimension count)").c_str());
    if (n_dims < 1 || n_dims > 4) c.fail(t.name + ": " + std::to_string(n_dims) + " dimensions (1 to 4)");
    int64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const int64_t ne = c.get<int64_t>((t.name + " (dimension)").c_str());
      if (ne <= 0) c.fail(t.name + ": dimension " + std::to_string(d) + " is " + std::to_string(ne));
      if (elements > std::numeric_limits<int64_t>::max() / ne) c.fail(t.name + ": too many elements");
      elements *= ne;
      t.dims.push_back(ne);
    }
    const uint32_t type_id = c.get<uint32_t>((t.name + " (type)").c_str());
    const std::optional<GgmlType> type = ggml_type_from_id(type_id);
    if (!type) c.fail(t.name + ": unknown ggml type " + std::to_string(type_id));
    t.type = *type;
    const GgmlTypeTraits& tr = ggml_traits(t.type);
    if (t.dims[0] % tr.block != 0) {
      c.fail(t.name + ": ne[0] = " + std::to_string(t.dims[0]) + " is not a whole number of " + tr.name + " blocks (" +
             std::to_string(tr.block) + ")");
    }
    t.bytes = static_cast<uint64_t>(elements / tr.block) * static_cast<uint64_t>(tr.bytes);
    t.offset = c.get<uint64_t>((t.name + " (offset)").c_str());
    g.tensors.push_back(std::move(t));
  }
  g.data_offset = (c.pos() + g.alignment - 1) / g.alignment * g.alignment;
  // Offsets: aligned, each tensor starting where the previous one's padded data ends (as
  // gguf.cpp requires), all inside the file.
  uint64_t expected = 0;
  for (const GgufTensor& t : g.tensors) {
    if (t.offset != expected) {
      throw InputError(origin, 0, 0,
                       "GGUF: " + t.name + ": data offset " + std::to_string(t.offset) + ", expected " +
                           std::to_string(expected) + " (aligned, in file order)");
    }
    if (t.bytes > g.file_size || g.data_offset + t.offset > g.file_size - t.bytes) {
      throw InputError(origin, 0, 0,
                       "GGUF: " + t.name + ": its " + std::to_string(t.bytes) + " bytes at data offset " +
                           std::to_string(t.offset) + " end past the file (" + std::to_string(g.file_size) +
                           " bytes): truncated?");
    }
    expected = (t.offset + t.bytes + g.alignment - 1) / g.alignment * g.alignment;
  }
  return g;
}

// transformers' per-layer names -> llama.cpp's (gguf-py tensor_mapping.py: llama, qwen2, qwen3).
const std::map<std::string, std::string>& layer_names() {
  static const std::map<std::string, std::string> k = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  return k;
}

// GGUF architecture -> transformers' model_type and architecture class.
struct ArchRow {
  const char* arch;
  const char* model_type;
  const char* hf_class;
};
const ArchRow* arch_row(const std::string& arch) {
  static const ArchRow k[] = {{"llama", "llama", "LlamaForCausalLM"},
                              {"qwen2", "qwen2", "Qwen2ForCausalLM"},
                              {"qwen3", "qwen3", "Qwen3ForCausalLM"}};
  for (const auto& r : k) {
    if (arch == r.arch) return &r;
  }
  return nullptr;
}

}  // namespace

std::string gguf_name_of(const std::string& model_type, const std::string& hf) {
  if (model_type != "llama" && model_type != "mistral" && model_type != "qwen2" && model_type != "qwen3") return "";
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const std::string prefix = "model.layers.";
  if (hf.rfind(prefix, 0) != 0) return "";
  const size_t dot = hf.find('.', prefix.size());
  if (dot == std::string::npos) return "";
  const auto it = layer_names().find(hf.substr(dot + 1));
  return it == layer_names().end() ? "" : "blk." + hf.substr(prefix.size(), dot - prefix.size()) + "." + it->second;
}

ModelSpec gguf_model_spec(const GgufInfo& g) {
  const std::string arch = g.architecture();
  if (arch.empty()) throw InputError(g.path, 0, 0, "GGUF: no general.architecture (a string) in the metadata");
  const ArchRow* row = arch_row(arch);
  if (!row) {
    throw InputError(g.path, 0, 0,
                     "GGUF: architecture '" + arch + "' is not one dmap reads yet (llama, qwen2 and qwen3 are)");
  }
  auto need = [&](const std::string& key) {
    const auto v = g.get_uint(arch + "." + key);
    if (!v || *v == 0 || *v > (uint64_t{1} << 40)) {
      throw InputError(g.path, 0, 0, "GGUF: " + arch + "." + key + " is missing or not a positive integer");
    }
    return static_cast<int64_t>(*v);
  };
  const int64_t hidden = need("embedding_length");
  const int64_t layers = need("block_count");
  const int64_t heads = need("attention.head_count");
  const int64_t kv_heads = g.find(arch + ".attention.head_count_kv") ? need("attention.head_count_kv") : heads;
  const int64_t head_dim = g.find(arch + ".attention.key_length") ? need("attention.key_length") : hidden / heads;
  const GgufTensor* embd = g.tensor("token_embd.weight");
  if (!embd || embd->dims.size() != 2) throw InputError(g.path, 0, 0, "GGUF: no 2-D token_embd.weight tensor");
  int64_t vocab = embd->dims[1];
  if (g.find(arch + ".vocab_size")) vocab = need("vocab_size");
  YAML::Node c;
  c["model_type"] = row->model_type;
  c["architectures"].push_back(row->hf_class);
  c["hidden_size"] = hidden;
  c["intermediate_size"] = need("feed_forward_length");
  c["num_hidden_layers"] = layers;
  c["num_attention_heads"] = heads;
  c["num_key_value_heads"] = kv_heads;
  c["head_dim"] = head_dim;
  c["vocab_size"] = vocab;
  c["max_position_embeddings"] = need("context_length");
  c["rms_norm_eps"] = g.get_float(arch + ".attention.layer_norm_rms_epsilon").value_or(1e-6);
  c["rope_theta"] = g.get_float(arch + ".rope.freq_base").value_or(10000.0);
  c["tie_word_embeddings"] = g.tensor("output.weight") == nullptr;
  // The activations' dtype llama.cpp's CPU backend computes in; the tensors keep their file types.
  c["torch_dtype"] = "float16";
  ModelSpec spec = model_spec_from_node(c, g.path);
  if (const GgufValue* n = g.find("general.name"); n && n->type == kString && !n->s.empty()) spec.name = n->s;
  spec.gguf = std::make_shared<const GgufInfo>(g);
  return spec;
}

ModuleTree gguf_file_module_tree(const ModuleTree& src, const GgufInfo& g) {
  ModuleTree t = src;
  const auto ft = g.get_uint("general.file_type");
  const std::string ft_name = ft ? llama_ftype_name(static_cast<uint32_t>(*ft)) : "";
  t.gguf_file_type = ft_name.empty() ? "GGUF" : ft_name;
  t.gguf_path = g.path;
  for (int id = 0; id < t.size(); ++id) {
    TreeNode& n = t.mutable_node(id);
    if (!n.is_tensor) continue;
    if (n.tied_source >= 0 || (n.is_buffer && !n.persistent)) {  // one tensor in the file; not stored
      n.stored_bits = 0;
      continue;
    }
    const std::string gn = gguf_name_of(t.model_type, n.name);
    const GgufTensor* x = gn.empty() ? nullptr : g.tensor(gn);
    if (!x) {
      throw InputError(g.path, 0, 0,
                       "GGUF: the file has no " + (gn.empty() ? "tensor" : gn) + " for the model's " + n.name +
                           " (its metadata describe a " + t.model_type + " model that has one)");
    }
    int64_t elements = 1;
    for (int64_t d : x->dims) elements *= d;
    if (elements != n.numel) {
      throw InputError(g.path, 0, 0,
                       "GGUF: " + gn + " holds " + std::to_string(elements) + " elements, but the metadata's " +
                           t.model_type + " shapes give " + n.name + " " + std::to_string(n.numel));
    }
    n.stored_bits = static_cast<Bits>(x->bytes) * 8;
    n.gguf_type = static_cast<int>(x->type);
  }
  return t;
}

GgufInfo parse_gguf(const std::string& bytes, const std::string& origin) {
  return parse_prefix(bytes, origin, bytes.size());
}

GgufInfo read_gguf(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path, 0, 0, "cannot read this GGUF file");
  f.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(f.tellg());
  // Only the header, metadata and tensor infos are read: the first 16 MiB (a large vocabulary's
  // metadata is a few MB), four times more while they go further.
  uint64_t want = std::min<uint64_t>(size, uint64_t{16} << 20);
  for (;;) {
    std::string head(want, '\0');
    f.seekg(0);
    f.read(head.data(), static_cast<std::streamsize>(want));
    if (static_cast<uint64_t>(f.gcount()) != want) throw InputError(path, 0, 0, "cannot read this GGUF file");
    try {
      return parse_prefix(head, path, size);
    } catch (const NeedMore&) {
      want = std::min(size, want * 4);
    }
  }
}

}  // namespace dmap
