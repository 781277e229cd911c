// dmap's GGUF writing: the container's bytes (header, metadata, tensor infos, aligned data),
// ggml's Q8_0 blocks, llama.cpp's tensor names, and the exporter's refusals. That llama.cpp
// runs an export as transformers does is tests/probes/llama_cpp_test.cpp (with llama.cpp).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/gguf_writer.h"
#include "core/model_spec.h"
#include "exec/config.h"
#include "exec/cpu/kernels.h"
#include "exec/gguf_export.h"
#include "exec/weights.h"

namespace fs = std::filesystem;
using namespace dmap;

namespace {

std::vector<uint8_t> read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
template <typename T>
T at(const std::vector<uint8_t>& b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}
std::string str_at(const std::vector<uint8_t>& b, size_t& off) {
  const uint64_t n = at<uint64_t>(b, off);
  std::string s(reinterpret_cast<const char*>(b.data() + off + 8), n);
  off += 8 + n;
  return s;
}
fs::path scratch(const std::string& name) {
  return fs::temp_directory_path() / ("dmap_gguf_test_" + std::to_string(::getpid()) + "_" + name);
}

}  // namespace

TEST_CASE("GgufWriter writes GGUF v3: header, metadata, tensor infos and 32-byte aligned data", "[unit][gguf]") {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", 7);
  w.add_tensor("a", GgmlType::kF32, {3}, [] {
    std::vector<uint8_t> b(12);
    const float v[3] = {1.5f, -2.0f, 3.25f};
    std::memcpy(b.data(), v, 12);
    return b;
  });
  w.add_tensor("bb", GgmlType::kF16, {2, 2}, [] { return std::vector<uint8_t>(8, 0xab); });
  const fs::path p = scratch("w.gguf");
  w.write(p.string());
  const auto b = read_all(p);
  REQUIRE(b.size() > 24);
  CHECK(std::string(b.begin(), b.begin() + 4) == "GGUF");
  CHECK(at<uint32_t>(b, 4) == 3);
  CHECK(at<uint64_t>(b, 8) == 2);   // tensors
  CHECK(at<uint64_t>(b, 16) == 2);  // metadata
  size_t off = 24;
  CHECK(str_at(b, off) == "general.architecture");
  CHECK(at<uint32_t>(b, off) == 8);  // string
  off += 4;
  CHECK(str_at(b, off) == "llama");
  CHECK(str_at(b, off) == "llama.block_count");
  CHECK(at<uint32_t>(b, off) == 4);  // uint32
  CHECK(at<uint32_t>(b, off + 4) == 7);
  off += 8;
  // Tensor infos: name, dims (ne[0] first), ggml type id, offset within the data section.
  CHECK(str_at(b, off) == "a");
  CHECK(at<uint32_t>(b, off) == 1);
  CHECK(at<uint64_t>(b, off + 4) == 3);
  CHECK(at<uint32_t>(b, off + 12) == 0);  // GGML_TYPE_F32
  CHECK(at<uint64_t>(b, off + 16) == 0);
  off += 24;
  CHECK(str_at(b, off) == "bb");
  CHECK(at<uint32_t>(b, off) == 2);
  CHECK(at<uint32_t>(b, off + 20) == 1);  // GGML_TYPE_F16
  CHECK(at<uint64_t>(b, off + 24) == 32);  // 12 bytes, padded to 32
  off += 32;
  const size_t data = (off + 31) / 32 * 32;
  CHECK(at<float>(b, data + 4) == -2.0f);
  CHECK(b[data + 32] == 0xab);
  CHECK(b.size() == data + 32 + 32);
  fs::remove(p);
}

TEST_CASE("GgufWriter: a failing tensor leaves no file and no temporary", "[unit][gguf]") {
  GgufWriter w;
  w.add_tensor("x", GgmlType::kF32, {4}, [] { return std::vector<uint8_t>(16); });
  w.add_tensor("y", GgmlType::kF32, {4}, []() -> std::vector<uint8_t> { throw RuntimeFailure("read failed"); });
  const fs::path p = scratch("fail.gguf");
  CHECK_THROWS_AS(w.write(p.string()), RuntimeFailure);
  CHECK_FALSE(fs::exists(p));
  for (const auto& e : fs::directory_iterator(p.parent_path())) {  // no temporary left beside it
    CHECK(e.path().filename().string().find(p.filename().string()) == std::string::npos);
  }
  CHECK(ggml_type_id(GgmlType::kBF16) == 30);
  CHECK(ggml_type_id(GgmlType::kQ8_0) == 8);
}

TEST_CASE("Q8_0 blocks as the converter writes them: d = max|x| / 127 (f16), q = round half away", "[unit][gguf]") {
  std::vector<float> x(64);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);  // amax 16
  for (int j = 32; j < 64; ++j) x[j] = 0;                            // a zero block
  x[40] = 0;
  const auto q = exec::quantize_q8_0(x.data(), 64);
  REQUIRE(q.size() == 68);
  uint16_t dh;
  std::memcpy(&dh, q.data(), 2);
  CHECK(exec::cpu::f16_to_f32(dh) == Approx(16.0f / 127).epsilon(1e-3));
  CHECK(static_cast<int8_t>(q[2]) == -127);  // -16 / (16/127)
  CHECK(static_cast<int8_t>(q[2 + 31]) == 119);  // 15 * 127 / 16 = 119.06
  CHECK(static_cast<int8_t>(q[2 + 8]) == static_cast<int8_t>(std::round(-8 * 127.0f / 16)));  // -63.5 -> -64
  std::memcpy(&dh, q.data() + 34, 2);
  CHECK(dh == 0);
  for (int j = 0; j < 32; ++j) CHECK(q[36 + j] == 0);
}

TEST_CASE("GGUF tensor names: transformers' llama/qwen2 names to llama.cpp's", "[unit][gguf]") {
  const exec::ExecConfig cfg =
      exec::exec_config(load_model_spec(std::string(DMAP_SOURCE_DIR) + "/tests/data/qwen2_float32/config.json"));
  CHECK(exec::gguf_arch(cfg) == "qwen2");
  CHECK(exec::gguf_tensor_name(cfg, "model.embed_tokens.weight") == "token_embd.weight");
  CHECK(exec::gguf_tensor_name(cfg, "model.layers.11.self_attn.q_proj.bias") == "blk.11.attn_q.bias");
  CHECK(exec::gguf_tensor_name(cfg, "model.layers.0.post_attention_layernorm.weight") == "blk.0.ffn_norm.weight");
  CHECK(exec::gguf_tensor_name(cfg, "model.layers.3.mlp.down_proj.weight") == "blk.3.ffn_down.weight");
  CHECK(exec::gguf_tensor_name(cfg, "model.norm.weight") == "output_norm.weight");
  CHECK(exec::gguf_tensor_name(cfg, "lm_head.weight") == (cfg.tie ? "" : "output.weight"));
  CHECK_THROWS_AS(exec::gguf_tensor_name(cfg, "model.layers.0.mlp.experts.gate_up_proj"), InputError);
  const exec::ExecConfig llama =
      exec::exec_config(load_model_spec(std::string(DMAP_SOURCE_DIR) + "/tests/data/mistral_float32/config.json"));
  CHECK(exec::gguf_arch(llama) == "llama");  // Mistral is written as llama, as the converter does
}

TEST_CASE("export_gguf writes every tensor at its type; other families and types are refused", "[unit][gguf]") {
  const std::string dir = std::string(DMAP_SOURCE_DIR) + "/tests/data/";
  const exec::ExecConfig cfg = exec::exec_config(load_model_spec(dir + "llama_float32/config.json"));
  const exec::ModelWeights w = exec::ModelWeights::random(cfg, DType::kFloat32, 1);
  const fs::path p = scratch("llama.gguf");
  // rope_freqs (llama3 scaling), the embedding, 9 tensors per layer, the final norm, the head.
  CHECK(exec::export_gguf(cfg, w, GgufFileType::kQ8_0, "t", p.string()) ==
        static_cast<size_t>(1 + 1 + 9 * cfg.layers + 1 + (cfg.tie ? 0 : 1)));
  const auto q8 = fs::file_size(p);
  exec::export_gguf(cfg, w, GgufFileType::kF16, "t", p.string());
  const auto f16 = fs::file_size(p);
  exec::export_gguf(cfg, w, GgufFileType::kF32, "t", p.string());
  const auto f32 = fs::file_size(p);
  // The matrices dominate: f32 about twice f16, Q8_0 about 34/64 of f16.
  CHECK(f32 > f16 * 19 / 10);
  CHECK(q8 < f16 * 6 / 10);
  CHECK_THROWS_AS(exec::export_gguf(cfg, w, GgufFileType::kQ4_K_M, "t", p.string()), InputError);
  const exec::ExecConfig gemma = exec::exec_config(load_model_spec(dir + "gemma_float32/config.json"));
  CHECK_THROWS_AS(exec::gguf_arch(gemma), InputError);
  fs::remove(p);
}
