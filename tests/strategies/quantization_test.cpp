// Quantized checkpoints: the cases in tests/data/quantization/ (sizes derived by hand from
// transformers' source, beside each case) and the errors a bad quantization_config gives.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include "core/error.h"
#include "core/module_sizes.h"
#include "core/module_tree.h"
#include "core/quantize.h"
#include "core/scenario.h"
#include "core/yaml_io.h"
#include "strategies/plan.h"

namespace fs = std::filesystem;
using namespace dmap;

namespace {

fs::path cases_dir() { return fs::path(DMAP_SOURCE_DIR) / "tests" / "data" / "quantization"; }

// Bytes as a YAML number (may be fractional: bitsandbytes counts half bytes).
Bits bits_of(const YAML::Node& n) { return static_cast<Bits>(n.as<double>() * 8.0 + 0.5); }

void check_case(const fs::path& file) {
  INFO("case " << file.filename().string());
  Scenario sc = load_scenario(file.string(), (fs::path(DMAP_SOURCE_DIR) / "configs" / "models").string());
  const ModuleTree tree = build_module_tree(sc.model);
  REQUIRE(tree.quantization);
  const YAML::Node expected = sc.expected;
  REQUIRE(expected.IsMap());
  SizingOptions so;
  so.rule = SizingRule::kTransformersV5;
  so.dtype = sc.dtype.value_or(tree.checkpoint_dtype);
  const ModuleSizes sizes = compute_module_sizes(tree, so);
  so.loaded = true;
  const ModuleSizes loaded = compute_module_sizes(tree, so);
  for (const auto& kv : expected["classes"]) {
    const std::string name = kv.first.as<std::string>();
    INFO("class of " << name);
    const int id = tree.find(name);
    REQUIRE(id >= 0);
    CHECK(tree.node(id).class_name == kv.second.as<std::string>());
  }
  for (const auto& kv : expected["sizes"]) {
    const std::string name = kv.first.as<std::string>();
    INFO("size of '" << name << "'");
    const int id = tree.find(name);
    REQUIRE(id >= 0);
    CHECK(sizes.of(id) == bits_of(kv.second));
  }
  for (const auto& kv : expected["loaded"]) {
    const std::string name = kv.first.as<std::string>();
    INFO("loaded size of '" << name << "'");
    CHECK(loaded.of(tree.find(name)) == bits_of(kv.second));
  }
  if (!expected["device_map"].IsDefined() && !expected["refusal"].IsDefined() && !expected["max_memory"].IsDefined())
    return;
  const strategies::PlanResult r = strategies::plan_device_map(strategies::plan_request_for(sc, tree));
  for (const auto& kv : expected["max_memory"]) {
    const Device d = *parse_device(kv.first.as<std::string>());
    INFO("max_memory of " << d.str());
    // val * 0.90 in floats: within a bit of the exact product.
    CHECK(std::llabs(*r.effective_max_memory.get(d) - bits_of(kv.second)) <= 8);
  }
  if (expected["device_map"].IsDefined()) {
    const auto items = r.device_map.items();
    REQUIRE(items.size() == expected["device_map"].size());
    for (size_t i = 0; i < items.size(); ++i) {
      INFO("map entry " << i);
      CHECK(items[i].first == expected["device_map"][i][0].as<std::string>());
      CHECK(items[i].second == *parse_device(expected["device_map"][i][1].as<std::string>()));
    }
  }
  if (expected["refusal"].IsDefined()) {
    CHECK(r.refusal.find(expected["refusal"].as<std::string>()) != std::string::npos);
  } else {
    CHECK(r.refusal.empty());
  }
}

ModuleTree tiny(const std::string& quantization, const std::string& extra = "") {
  const std::string text =
      "model_type: llama\nhidden_size: 64\nintermediate_size: 128\nnum_hidden_layers: 2\n"
      "num_attention_heads: 4\nnum_key_value_heads: 2\nvocab_size: 256\n"
      "torch_dtype: float16\n" +
      extra + "quantization_config: " + quantization + "\n";
  return build_module_tree(model_spec_from_node(load_yaml_string(text, "tiny.yaml"), "tiny.yaml"));
}

}  // namespace

TEST_CASE("quantized checkpoints: hand-derived cases", "[quantization]") {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(cases_dir())) {
    if (entry.path().extension() != ".yaml") continue;
    CHECK_NOTHROW(check_case(entry.path()));
    ++n;
  }
  CHECK(n >= 12);
}

TEST_CASE("quantization_config errors name the file, the line and what is wrong", "[quantization]") {
  auto message = [](const std::string& q, const std::string& extra = "") {
    try {
      tiny(q, extra);
    } catch (const InputError& e) {
      return e.text();
    }
    return std::string("no error");
  };
  CHECK(message("{quant_method: hqq}").find("tiny.yaml:9") != std::string::npos);
  CHECK(message("{quant_method: hqq}").find("not sized by dmap") != std::string::npos);
  CHECK(message("{quant_method: nonsense}").find("Unknown quantization type") != std::string::npos);
  CHECK(message("{bits: 4}").find("no `quant_method`") != std::string::npos);
  CHECK(message("{quant_method: gptq, bits: 5}").find("[2,3,4,8] bits") != std::string::npos);
  CHECK(message("{quant_method: gptq, bits: 4, group_size: 0}").find("group_size must be greater than 0") !=
        std::string::npos);
  CHECK(message("{quant_method: awq, bits: 3}").find("AWQ with 3 bits") != std::string::npos);
  // A group size that does not divide a layer's input features (64 % 48).
  CHECK(message("{quant_method: awq, bits: 4, group_size: 48}").find("must be divisible by `group_size: 48`") !=
        std::string::npos);
  CHECK(message("{quant_method: awq, version: exllama}").find("Invalid format 'exllama'") != std::string::npos);
  CHECK(message("{quant_method: fp8, weight_block_size: [128]}").find("tuple of two integers") != std::string::npos);
  CHECK(message("{quant_method: fp8, activation_scheme: weird}").find("not supported") != std::string::npos);
  CHECK(message("{load_in_4bit: true, load_in_8bit: true}").find("both True") != std::string::npos);
  CHECK(message("{load_in_8bit: true, llm_int8_threshold: 6}").find("must be a float") != std::string::npos);
  CHECK(message("{load_in_4bit: yes}").find("must be a boolean") != std::string::npos);
  CHECK(message("{load_in_4bit: true, bnb_4bit_quant_storage: int4}").find("bnb_4bit_quant_storage") !=
        std::string::npos);
  CHECK(message("{load_in_4bit: true, llm_int8_skip_modules: ['(']}").find("not a valid regular expression") !=
        std::string::npos);
  // GPTQ needs a block prefix: a model whose layers are under none of optimum's patterns.
  const std::string chatglm_like = message("{quant_method: gptq, bits: 4, block_name_to_quantize: nowhere}");
  CHECK(chatglm_like.find("no module") != std::string::npos);
}

TEST_CASE("should_convert_module matches as transformers does", "[quantization]") {
  const std::vector<std::string> p = {"model.layers.1", "down_proj"};
  CHECK_FALSE(should_convert_module("model.layers.1.mlp.up_proj", p, "t"));
  CHECK_FALSE(should_convert_module("model.layers.10.mlp.up_proj", p, "t"));   // a prefix regex: 10 too
  CHECK_FALSE(should_convert_module("model.layers.0.mlp.down_proj", p, "t"));  // a suffix
  CHECK(should_convert_module("model.layers.0.mlp.up_proj", p, "t"));
  CHECK(should_convert_module("x.model.layers.1.q", p, "t"));  // not at the start
  CHECK(should_convert_module("anything", {}, "t"));
}

TEST_CASE("a user's quantization config: checkpoint wins, loading attributes merge", "[quantization]") {
  const std::string file = (cases_dir() / "fp8_llama_block128.yaml").string();
  const YAML::Node root = load_yaml_file(file);
  ModelSpec spec = model_spec_from_node(root["model"], file);
  REQUIRE(spec.quantization);
  CHECK(spec.quantization->pre_quantized);
  set_user_quantization(spec, load_yaml_string("{quant_method: fp8, dequantize: true}", "flag"), "flag");
  CHECK(spec.quantization->dequantize);
  CHECK(spec.quantization->weight_block_size.has_value());
  // Dequantized while loading: nothing replaced, every weight in the model dtype.
  const ModuleTree t = build_module_tree(spec);
  CHECK(t.node(t.find("model.layers.0.self_attn.q_proj")).class_name == "Linear");
  // Another method than the checkpoint's is refused.
  CHECK_THROWS_AS(set_user_quantization(spec, load_yaml_string("{load_in_4bit: true}", "flag"), "flag"), InputError);
}

TEST_CASE("transformers 4.x sized bitsandbytes with one target dtype", "[quantization]") {
  // bnb4_llama_untied under --pipeline v4: adjust_target_dtype -> INT4 for every floating tensor
  // (min(0.5, own)), special_dtypes give back bf16 to params whose name contains a 4.x
  // modules_to_not_convert key (untied: the output embedding, "lm_head"):
  //   embed 16384 x 0.5 = 8192; a layer's linears 36864 x 0.5 = 18432 + norms 2 x 64 x 0.5 = 64;
  //   final norm 32; rotary buffers 2 x 8 x 0.5 = 8; lm_head 16384 x 2 = 32768
  //   "" = 8192 + 2 x 18496 + 32 + 8 + 32768 = 77992
  Scenario sc = load_scenario((cases_dir() / "bnb4_llama_untied.yaml").string(),
                              (fs::path(DMAP_SOURCE_DIR) / "configs" / "models").string());
  sc.pipeline = "v4";
  const ModuleTree tree = build_module_tree(sc.model);
  const strategies::PlanResult r = strategies::plan_device_map(strategies::plan_request_for(sc, tree));
  CHECK(r.sizes.total() == 77992 * 8);
  CHECK(r.sizes.of(tree.find("lm_head")) == 32768 * 8);
  CHECK(r.sizes.of(tree.find("model.embed_tokens")) == 8192 * 8);
}
