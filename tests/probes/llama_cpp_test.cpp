// llama.cpp runs dmap's GGUF exports as transformers runs the checkpoint: the last position's
// logits of the fixtures' prompts, computed by llama.cpp (its C API, through dmap's probe), against
// the PyTorch references of scripts/make_fixtures.py; and the probe's timing output reads back.
// Needs the probe (scripts/setup.sh installs node-llama-cpp; the build makes build/llama_probe):
// without it every case is skipped (exit 77).
#define CATCH_CONFIG_RUNNER
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "core/json_parse.h"
#include "core/model_spec.h"
#include "exec/config.h"
#include "exec/gguf_export.h"
#include "exec/safetensors.h"
#include "exec/weights.h"
#include "profile/llama_fit.h"
#include "profile/llama_probe.h"

namespace fs = std::filesystem;
using namespace dmap;

namespace {

struct Reference {
  std::vector<int32_t> prompt;
  std::vector<double> logits;
};

Reference reference(const std::string& fixture) {
  std::ifstream f(fixture + "/reference.json");
  std::stringstream s;
  s << f.rdbuf();
  const JsonValue v = parse_json(s.str(), fixture);
  Reference r;
  for (const auto& x : v.find("prompt_ids")->items) r.prompt.push_back(static_cast<int32_t>(x.i));
  for (const auto& x : v.find("prefill_logits")->items) r.logits.push_back(x.kind == JsonValue::Kind::kInt ? x.i : x.d);
  return r;
}

struct Compared {
  double max_abs = 0, correlation = 0;
  bool same_argmax = false;
};

Compared run(const std::string& family, const std::string& dtype, GgufFileType type) {
  const std::string fixture = std::string(DMAP_SOURCE_DIR) + "/tests/data/" + family + "_" + dtype;
  const exec::ExecConfig cfg = exec::exec_config(load_model_spec(fixture + "/config.json"));
  auto ck = std::make_shared<const exec::Checkpoint>(exec::Checkpoint::open(fixture));
  const exec::ModelWeights w = exec::ModelWeights::from_checkpoint(cfg, ck);
  const fs::path gguf = fs::temp_directory_path() / ("dmap_llama_cpp_test_" + std::to_string(::getpid()) + ".gguf");
  exec::export_gguf(cfg, w, type, family, gguf.string());
  const Reference ref = reference(fixture);
  const std::vector<float> l = profile::llama_logits(profile::find_llama_probe(), gguf.string(), ref.prompt);
  fs::remove(gguf);
  REQUIRE(l.size() == ref.logits.size());
  Compared c;
  double ma = 0, mb = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    c.max_abs = std::max(c.max_abs, std::fabs(l[i] - ref.logits[i]));
    ma += l[i];
    mb += ref.logits[i];
  }
  ma /= static_cast<double>(l.size());
  mb /= static_cast<double>(l.size());
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    sab += (l[i] - ma) * (ref.logits[i] - mb);
    saa += (l[i] - ma) * (l[i] - ma);
    sbb += (ref.logits[i] - mb) * (ref.logits[i] - mb);
  }
  c.correlation = sab / std::sqrt(saa * sbb);
  c.same_argmax = std::max_element(l.begin(), l.end()) - l.begin() ==
                  std::max_element(ref.logits.begin(), ref.logits.end()) - ref.logits.begin();
  return c;
}

}  // namespace

TEST_CASE("llama.cpp on dmap's f32 export computes transformers' float32 logits", "[llama.cpp]") {
  // Exact up to float32 summation order: names, q/k row order, rope_freqs and biases are right.
  for (const char* family : {"llama", "qwen2", "qwen3"}) {
    INFO(family);
    const Compared c = run(family, "float32", GgufFileType::kF32);
    CHECK(c.max_abs < 1e-4);
    CHECK(c.same_argmax);
  }
}

TEST_CASE("llama.cpp on f16, bf16 and q8_0 exports stays close to the float32 reference", "[llama.cpp]") {
  for (const char* family : {"llama", "qwen2"}) {
    for (GgufFileType t : {GgufFileType::kF16, GgufFileType::kBF16, GgufFileType::kQ8_0}) {
      INFO(family << " " << gguf_file_type_name(t));
      const Compared c = run(family, "float32", t);
      WARN(family << " " << gguf_file_type_name(t) << ": max |diff| " << c.max_abs << ", correlation "
                  << c.correlation);
      CHECK(c.correlation > (t == GgufFileType::kQ8_0 ? 0.998 : 0.9995));
      // The weights' rounding (f16: 11 bits, bf16: 8, Q8_0: 7 per 32-block scale) on logits ~1.
      CHECK(c.max_abs < (t == GgufFileType::kF16 ? 0.01 : t == GgufFileType::kBF16 ? 0.1 : 0.3));
    }
  }
}

TEST_CASE("the llama.cpp probe times prefill and decode rounds", "[llama.cpp]") {
  const std::string fixture = std::string(DMAP_SOURCE_DIR) + "/tests/data/llama_float32";
  const exec::ExecConfig cfg = exec::exec_config(load_model_spec(fixture + "/config.json"));
  const exec::ModelWeights w = exec::ModelWeights::random(cfg, DType::kFloat32, 3);
  const fs::path gguf = fs::temp_directory_path() / ("dmap_llama_cpp_time_" + std::to_string(::getpid()) + ".gguf");
  exec::export_gguf(cfg, w, GgufFileType::kF16, "t", gguf.string());
  const profile::LlamaProbe p =
      profile::run_llama_probe({profile::find_llama_probe(), gguf.string(), 1, 16, 4, 2, "", false});
  fs::remove(gguf);
  CHECK(p.rounds.size() == 2);
  CHECK(p.prompt == 16);
  CHECK(p.new_tokens == 4);
  CHECK(p.threads == 1);
  CHECK(p.version.find("llama.cpp") != std::string::npos);
  CHECK(p.prefill() > 0);
  CHECK(p.decode() > 0);
  CHECK(p.decode() < p.prefill() * 16);  // one token costs less than sixteen
}

TEST_CASE("the llama.cpp probe times one-row products in llama.cpp's CPU backend", "[llama.cpp]") {
  const auto v = profile::run_llama_matvec(profile::find_llama_probe(), {{"bf16", 256, 512}, {"f32", 64, 128}}, 1, 2);
  REQUIRE(v.size() == 2);
  CHECK(v[0].type == "bf16");
  CHECK(v[0].n == 256);
  CHECK(v[0].k == 512);
  CHECK(v[1].type == "f32");
  for (const auto& m : v) {
    CHECK(m.seconds > 0);
    CHECK(m.gbs > 0.01);   // bytes over seconds: at least 10 MB/s ...
    CHECK(m.gbs < 10000);  // ... and no faster than any memory
  }
  CHECK_THROWS_AS(profile::run_llama_matvec(profile::find_llama_probe(), {{"q4_0", 8, 32}}, 1, 1), RuntimeFailure);
}

TEST_CASE("llama.cpp runs with its weights read into memory (--no-mmap)", "[llama.cpp]") {
  const std::string fixture = std::string(DMAP_SOURCE_DIR) + "/tests/data/qwen2_float32";
  const exec::ExecConfig cfg = exec::exec_config(load_model_spec(fixture + "/config.json"));
  auto ck = std::make_shared<const exec::Checkpoint>(exec::Checkpoint::open(fixture));
  const fs::path gguf = fs::temp_directory_path() / ("dmap_llama_nommap_" + std::to_string(::getpid()) + ".gguf");
  exec::export_gguf(cfg, exec::ModelWeights::from_checkpoint(cfg, ck), GgufFileType::kF32, "q", gguf.string());
  const profile::LlamaProbe p =
      profile::run_llama_probe({profile::find_llama_probe(), gguf.string(), 1, 8, 2, 1, "", /*no_mmap=*/true});
  fs::remove(gguf);
  CHECK(p.rounds.size() == 1);
  CHECK(p.decode() > 0);
}

TEST_CASE("a llama.cpp fit's measurements: the model in several processes per load mode, the dtypes taking turns",
          "[llama.cpp]") {
  const std::string fixture = std::string(DMAP_SOURCE_DIR) + "/tests/data/llama_float32";
  const ModelSpec spec = load_model_spec(fixture + "/config.json");
  const fs::path scratch = fs::temp_directory_path() / ("dmap_llama_fit_" + std::to_string(::getpid()));
  fs::create_directories(scratch);
  profile::RunSettings run;
  run.threads = 1;
  run.prompt = 8;
  run.new_tokens = 3;
  run.scratch_dir = scratch.string();
  const auto runs =
      profile::measure_llama(spec, {DType::kFloat32, DType::kBFloat16}, run, profile::find_llama_probe(), 1);
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].dtype == DType::kFloat32);
  CHECK(runs[1].dtype == DType::kBFloat16);
  for (const auto& r : runs) {
    REQUIRE(r.model_decodes.size() == static_cast<size_t>(profile::kLlamaFitSessions));
    REQUIRE(r.no_mmap_decodes.size() == static_cast<size_t>(profile::kLlamaFitSessions));
    for (double t : r.model_decodes) CHECK(t > 0);
    for (double t : r.no_mmap_decodes) CHECK(t > 0);
    CHECK(r.model_decodes.front() == r.model.decode());  // the first session is `model`
    CHECK(r.no_mmap_decodes.front() == r.no_mmap.decode());
    CHECK(r.tiny.decode() > 0);
    CHECK_FALSE(r.matvec.empty());
  }
  // The scratch GGUF files are gone.
  size_t left = 0;
  for (const auto& e : fs::directory_iterator(scratch)) left += e.path().extension() == ".gguf";
  CHECK(left == 0);
  fs::remove_all(scratch);
}

TEST_CASE("the probe's output is read strictly", "[llama.cpp][parse]") {
  const char* ok =
      R"({"llama_cpp": "v", "system": "s", "threads": 2, "prompt": 8, "new_tokens": 2, "rounds": [{"prefill_s": 0.5, "decode_s": 0.01}]})";
  const profile::LlamaProbe p = profile::parse_llama_probe(ok, "t");
  CHECK(p.decode() == 0.01);
  CHECK_THROWS_AS(profile::parse_llama_probe(R"({"llama_cpp": "v"})", "t"), InputError);
  CHECK_THROWS_AS(
      profile::parse_llama_probe(
          R"({"llama_cpp": "v", "system": "s", "threads": 2, "prompt": 8, "new_tokens": 2, "rounds": [{"prefill_s": -1, "decode_s": 0.01}]})",
          "t"),
      InputError);
}

int main(int argc, char** argv) {
  if (!profile::llama_probe_available()) {
    std::cerr << "llama_cpp_test: skipped (no llama.cpp probe in this build: scripts/setup.sh installs it)\n";
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
