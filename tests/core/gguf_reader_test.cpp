// The strict GGUF reader: a file written as llama.cpp's converter lays it out reads back into the
// model it describes, sized tensor by tensor; every malformed file is an InputError naming the
// file and the field — truncated at every length, corrupted at random — never a crash.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/gguf_reader.h"
#include "core/gguf_writer.h"
#include "core/model_spec.h"
#include "core/module_tree.h"

namespace fs = std::filesystem;
using namespace dmap;

namespace {

// A tiny llama (1 layer, hidden 32, 4 heads, 2 KV heads, FFN 64, vocab 48) as the converter
// writes it; `drop` leaves a tensor out, `head` adds output.weight (else the head is tied).
std::string tiny_llama(const std::string& drop = "", bool head = false, GgmlType matrices = GgmlType::kF16,
                       const std::string& arch = "llama") {
  GgufWriter w;
  w.add_string("general.architecture", arch);
  w.add_string("general.name", "tiny");
  w.add_u32("general.file_type", matrices == GgmlType::kQ8_0 ? 7 : 1);
  w.add_u32(arch + ".block_count", 1);
  w.add_u32(arch + ".context_length", 128);
  w.add_u32(arch + ".embedding_length", 32);
  w.add_u32(arch + ".feed_forward_length", 64);
  w.add_u32(arch + ".attention.head_count", 4);
  w.add_u32(arch + ".attention.head_count_kv", 2);
  w.add_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-5f);
  w.add_f32(arch + ".rope.freq_base", 10000.0f);
  w.add_string("tokenizer.ggml.model", "none");
  w.add_string_array("general.tags", {"a", "b"});
  struct T {
    std::string name;
    std::vector<int64_t> dims;
  };
  std::vector<T> ts = {{"token_embd.weight", {32, 48}},      {"blk.0.attn_norm.weight", {32}},
                       {"blk.0.attn_q.weight", {32, 32}},    {"blk.0.attn_k.weight", {32, 16}},
                       {"blk.0.attn_v.weight", {32, 16}},    {"blk.0.attn_output.weight", {32, 32}},
                       {"blk.0.ffn_norm.weight", {32}},      {"blk.0.ffn_gate.weight", {32, 64}},
                       {"blk.0.ffn_up.weight", {32, 64}},    {"blk.0.ffn_down.weight", {64, 32}},
                       {"output_norm.weight", {32}}};
  if (head) ts.push_back({"output.weight", {32, 48}});
  for (const T& t : ts) {
    if (t.name == drop) continue;
    const GgmlType type = t.dims.size() == 1 ? GgmlType::kF32 : matrices;
    int64_t n = 1;
    for (int64_t d : t.dims) n *= d;
    const size_t bytes = static_cast<size_t>(n / ggml_traits(type).block * ggml_traits(type).bytes);
    w.add_tensor(t.name, type, t.dims, [bytes] { return std::vector<uint8_t>(bytes, 0x11); });
  }
  const fs::path p = fs::temp_directory_path() / ("dmap_gguf_reader_" + std::to_string(::getpid()) + ".gguf");
  w.write(p.string());
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  fs::remove(p);
  return s.str();
}

// The byte offset of tensor `name`'s info (just past its name).
size_t info_of(const std::string& b, const std::string& name) {
  std::string key(8, '\0');
  const uint64_t n = name.size();
  std::memcpy(key.data(), &n, 8);
  key += name;
  const size_t at = b.find(key);
  REQUIRE(at != std::string::npos);
  return at + key.size();
}

std::string message_of(const std::string& bytes) {
  try {
    parse_gguf(bytes, "t.gguf");
  } catch (const InputError& e) {
    return e.text();
  }
  return "";
}

}  // namespace

TEST_CASE("a GGUF file reads back into the model it describes, sized by its own tensors", "[unit][gguf]") {
  const std::string b = tiny_llama();
  const GgufInfo g = parse_gguf(b, "tiny.gguf");
  CHECK(g.version == 3);
  CHECK(g.architecture() == "llama");
  CHECK(g.tensors.size() == 11);
  CHECK(g.get_uint("llama.block_count") == 1u);
  CHECK(g.find("general.tags")->strings == std::vector<std::string>{"a", "b"});
  CHECK(g.tensor("blk.0.ffn_down.weight")->dims == std::vector<int64_t>{64, 32});
  CHECK(g.tensor("blk.0.ffn_down.weight")->bytes == 64 * 32 * 2);
  const ModelSpec spec = gguf_model_spec(g);
  CHECK(spec.model_type == "llama");
  CHECK(spec.name == "tiny");
  const ModuleTree t = build_module_tree(spec);
  CHECK(t.dims.num_layers == 1);
  CHECK(t.dims.hidden_size == 32);
  CHECK(t.gguf_file_type == "F16");
  // Every stored tensor at the file's bytes: the tree's stored bits are the file's tensor data,
  // the tied head counted once (in the token embedding).
  Bits stored = 0;
  for (int id = 0; id < t.size(); ++id) {
    if (t.node(id).is_tensor && t.node(id).stored_bits > 0) stored += t.node(id).stored_bits;
  }
  CHECK(stored == static_cast<Bits>(g.tensor_bytes()) * 8);
  const int head = t.find("lm_head.weight");
  REQUIRE(head >= 0);
  CHECK(t.node(head).stored_bits == 0);
  // With output.weight the head is its own tensor; Q8_0 matrices are sized at 34 bytes a block.
  const GgufInfo q = parse_gguf(tiny_llama("", true, GgmlType::kQ8_0), "q.gguf");
  const ModuleTree tq = build_module_tree(gguf_model_spec(q));
  CHECK(tq.gguf_file_type == "Q8_0");
  CHECK(tq.node(tq.find("lm_head.weight")).stored_bits == 32 * 48 / 32 * 34 * 8);
  CHECK(tq.node(tq.find("lm_head.weight")).gguf_type == static_cast<int>(GgmlType::kQ8_0));
}

TEST_CASE("a GGUF file whose tensors do not match its metadata is refused by name", "[unit][gguf]") {
  const GgufInfo g = parse_gguf(tiny_llama("blk.0.ffn_up.weight"), "drop.gguf");
  try {
    build_module_tree(gguf_model_spec(g));
    FAIL("a missing tensor was accepted");
  } catch (const InputError& e) {
    CHECK(e.text().find("drop.gguf") != std::string::npos);
    CHECK(e.text().find("blk.0.ffn_up.weight") != std::string::npos);
  }
  CHECK_THROWS_AS(gguf_model_spec(parse_gguf(tiny_llama("", false, GgmlType::kF16, "falcon"), "f.gguf")), InputError);
  CHECK_THROWS_AS(gguf_model_spec(parse_gguf(tiny_llama("token_embd.weight"), "e.gguf")), InputError);
}

TEST_CASE("malformed GGUF headers are InputErrors naming the field", "[unit][gguf]") {
  const std::string good = tiny_llama();
  auto patched = [&](size_t at, const void* v, size_t n) {
    std::string b = good;
    std::memcpy(b.data() + at, v, n);
    return b;
  };
  CHECK(message_of("GGML").find("not a GGUF file") != std::string::npos);
  const uint32_t v1 = 1;
  CHECK(message_of(patched(4, &v1, 4)).find("version 1") != std::string::npos);
  const uint64_t huge = uint64_t{1} << 60;
  CHECK(message_of(patched(8, &huge, 8)).find("tensor infos cannot fit") != std::string::npos);
  CHECK(message_of(patched(16, &huge, 8)).find("metadata entries cannot fit") != std::string::npos);
  // Tensor infos: dimensions, type, offset.
  const size_t q = info_of(good, "blk.0.attn_q.weight");
  const uint32_t five = 5;
  CHECK(message_of(patched(q, &five, 4)).find("5 dimensions") != std::string::npos);
  const int64_t zero = 0;
  CHECK(message_of(patched(q + 4, &zero, 8)).find("dimension 0 is 0") != std::string::npos);
  const uint32_t bad_type = 31;
  CHECK(message_of(patched(q + 20, &bad_type, 4)).find("unknown ggml type 31") != std::string::npos);
  const uint32_t q8 = 8;  // ne[0] = 32 is one Q8_0 block: accepted, but the data then moves
  CHECK(message_of(patched(q + 20, &q8, 4)).find("offset") != std::string::npos);
  const uint64_t off = 7;
  CHECK(message_of(patched(q + 24, &off, 8)).find("data offset 7, expected") != std::string::npos);
  // Metadata: an unknown value type.
  const size_t arch = good.find("general.architecture") + std::strlen("general.architecture");
  const uint32_t t13 = 13;
  CHECK(message_of(patched(arch, &t13, 4)).find("unknown value type 13") != std::string::npos);
  // A duplicate key: llama.context_length renamed to tokenizer.ggml.model (same length).
  std::string dup = good;
  dup.replace(dup.find("llama.context_length"), 20, "tokenizer.ggml.model");
  CHECK(message_of(dup).find("duplicate metadata key tokenizer.ggml.model") != std::string::npos);
  CHECK(message_of(good.substr(0, good.size() - 1)).find("truncated") != std::string::npos);
}

TEST_CASE("a GGUF file cut at any length or corrupted at random is refused cleanly", "[unit][gguf]") {
  const std::string good = tiny_llama("", true);
  for (size_t n = 0; n < good.size(); n += (n < 2048 ? 1 : 97)) {
    INFO("cut at " << n);
    CHECK_THROWS_AS(parse_gguf(good.substr(0, n), "cut.gguf"), InputError);
  }
  std::mt19937_64 rng(7);
  int refused = 0, accepted = 0;
  for (int k = 0; k < 3000; ++k) {
    std::string b = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    // Corrupt the header region, where the reader looks (the data is never read).
    const size_t region = std::min<size_t>(b.size(), 1200);
    for (int f = 0; f < flips; ++f) b[rng() % region] = static_cast<char>(rng());
    try {
      const GgufInfo g = parse_gguf(b, "fuzz.gguf");
      const ModelSpec spec = gguf_model_spec(g);
      build_module_tree(spec);
      ++accepted;
    } catch (const InputError&) {
      ++refused;
    }
  }
  CHECK(refused > 0);
  CHECK(refused + accepted == 3000);
}
