// Unit tests of the core library: units, dtypes, memory strings, devices, JSON, YAML errors,
// model descriptions and module trees.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>

#include "core/device_map.h"
#include "core/error.h"
#include "core/gguf.h"
#include "core/json.h"
#include "core/module_sizes.h"
#include "core/module_tree.h"
#include "core/scenario.h"
#include "core/yaml_io.h"

using namespace dmap;

namespace {

ModelSpec spec_from(const std::string& yaml) {
  return model_spec_from_node(load_yaml_string(yaml, "inline.yaml"), "inline.yaml");
}

// The local names of a module's children, in registration order; a tensor's shape.
std::vector<std::string> children(const ModuleTree& t, const std::string& name) {
  std::vector<std::string> out;
  REQUIRE(t.find(name) >= 0);
  for (int c : t.node(t.find(name)).children) out.push_back(t.node(c).local);
  return out;
}
std::vector<int64_t> shape(const ModuleTree& t, const std::string& name) {
  REQUIRE(t.find(name) >= 0);
  return t.node(t.find(name)).shape;
}

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = std::string(DMAP_BINARY_DIR) + "/" + name;
  std::ofstream(path) << text;
  return path;
}

const char* kLlama8b = R"(
model_type: llama
vocab_size: 128256
hidden_size: 4096
intermediate_size: 14336
num_hidden_layers: 32
num_attention_heads: 32
num_key_value_heads: 8
tie_word_embeddings: false
torch_dtype: bfloat16
)";

}  // namespace

TEST_CASE("memory strings follow accelerate's convert_file_size_to_int", "[unit]") {
  CHECK(parse_memory_size("10GiB") == 10LL * (1LL << 30));
  CHECK(parse_memory_size("11.5GB") == 11500000000LL);
  CHECK(parse_memory_size("500MB") == 500000000LL);
  CHECK(parse_memory_size("5Gb") == 625000000LL);    // bits
  CHECK(parse_memory_size("10gb") == 1250000000LL);  // a lowercase final b means bits
  CHECK(parse_memory_size("1.5KiB") == 1536);
  CHECK(parse_memory_size("1024") == 1024);
  CHECK(parse_memory_size(" 2GB ") == 2000000000LL);
  CHECK_FALSE(parse_memory_size("ten GB"));
  CHECK_FALSE(parse_memory_size("10 parsecs"));
  CHECK_FALSE(parse_memory_size("-5GB"));
  CHECK_FALSE(parse_memory_size(""));
  CHECK_FALSE(parse_memory_size("GB"));
  CHECK_FALSE(parse_memory_size("infGB"));
}

TEST_CASE("max_memory flags parse in accelerate's device order", "[unit]") {
  MaxMemory mm = parse_max_memory_flag("cpu=64GiB,1=10GB,0=11.5GB,disk=1TB", "--max-memory");
  REQUIRE(mm.entries().size() == 4);
  CHECK(mm.entries()[0].first == Device::gpu(0));
  CHECK(mm.entries()[1].first == Device::gpu(1));
  CHECK(mm.entries()[2].first == Device::cpu());
  CHECK(mm.entries()[3].first == Device::disk());
  CHECK(mm.entries()[0].second == bytes_to_bits(11500000000LL));
  CHECK_THROWS_AS(parse_max_memory_flag("0=lots", "--max-memory"), InputError);
  CHECK_THROWS_AS(parse_max_memory_flag("gpu7x=1GB", "--max-memory"), InputError);
  CHECK_THROWS_AS(parse_max_memory_flag("0=-1GB", "--max-memory"), InputError);
  CHECK_THROWS_AS(parse_max_memory_flag("0=1GB,0=2GB", "--max-memory"), InputError);
  CHECK_THROWS_WITH(parse_max_memory_flag("0=lots", "--max-memory"), Catch::Contains("lots"));
}

TEST_CASE("dtype sizes: accelerate's fractions and torch's element sizes", "[unit]") {
  CHECK(accelerate_bits_per_element(DType::kBool) == 1);
  CHECK(torch_bits_per_element(DType::kBool) == 8);
  CHECK(accelerate_bits_per_element(DType::kInt4) == 4);
  CHECK(accelerate_bits_per_element(DType::kFloat8) == 8);
  CHECK(accelerate_bits_per_element(DType::kBFloat16) == 16);
  CHECK(parse_dtype("torch.float16") == DType::kFloat16);
  CHECK(parse_dtype("bf16") == DType::kBFloat16);
  CHECK(parse_dtype("float8_e4m3fn") == DType::kFloat8);
  CHECK_FALSE(parse_dtype("float12"));
  CHECK(format_bits_as_bytes(131072 * 8) == "131072");
  CHECK(format_bits_as_bytes(8 * 61612674 + 4) == "61612674.5");
  CHECK(format_bits_as_bytes(1) == "0.125");
}

TEST_CASE("devices parse as users write them", "[unit]") {
  CHECK(parse_device("0") == Device::gpu(0));
  CHECK(parse_device("cuda:3") == Device::gpu(3));
  CHECK(parse_device("cpu") == Device::cpu());
  CHECK(parse_device("disk") == Device::disk());
  CHECK_FALSE(parse_device("tpu"));
  CHECK_FALSE(parse_device("cuda:x"));
  CHECK(Device::gpu(1).json() == "1");
  CHECK(Device::cpu().json() == "\"cpu\"");
}

TEST_CASE("device maps print as transformers' dict and accelerate's pairs", "[unit]") {
  DeviceMap dm;
  dm.assign("model.embed_tokens", Device::gpu(0));
  dm.assign("lm_head", Device::cpu());
  dm.assign("model.layers.\"odd\"", Device::disk());
  dm.assign("model.embed_tokens", Device::gpu(1));  // updates in place, keeps its position
  CHECK(device_map_to_json(dm) == R"({"model.embed_tokens":1,"lm_head":"cpu","model.layers.\"odd\"":"disk"})");
  CHECK(device_map_to_pairs_json(dm) ==
        R"([["model.embed_tokens",1],["lm_head","cpu"],["model.layers.\"odd\"","disk"]])");
  dm.erase("lm_head");
  dm.assign("lm_head", Device::cpu());  // re-inserted at the end
  CHECK(dm.items().back().first == "lm_head");
  CHECK(dm.size() == 3);
}

TEST_CASE("malformed YAML is reported with file and line", "[unit]") {
  const std::string path = write_temp("broken.yaml", "model_type: llama\nhidden_size: [1, 2\nvocab_size: 3\n");
  try {
    load_yaml_file(path);
    FAIL("expected an InputError");
  } catch (const InputError& e) {
    CHECK(e.file() == path);
    CHECK(e.line() >= 2);
    CHECK(std::string(e.what()).find("broken.yaml:") != std::string::npos);
  }
  CHECK_THROWS_AS(load_yaml_file(std::string(DMAP_BINARY_DIR) + "/does_not_exist.yaml"), InputError);
}

TEST_CASE("model descriptions: unknown type and missing fields are located errors", "[unit]") {
  CHECK_THROWS_WITH(build_module_tree(spec_from("model_type: bloom\nhidden_size: 4\n")),
                    Catch::Contains("unknown model_type 'bloom'"));
  try {
    build_module_tree(spec_from("model_type: llama\nvocab_size: 10\nhidden_size: 8\n"));
    FAIL("expected an InputError");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("intermediate_size") != std::string::npos);
    CHECK(e.file() == "inline.yaml");
    CHECK(e.line() > 0);
  }
  CHECK_THROWS_WITH(build_module_tree(spec_from("model_type: llama\nvocab_size: ten\n")),
                    Catch::Contains("vocab_size"));
  CHECK_THROWS_WITH(
      build_module_tree(spec_from("model_type: llama\nvocab_size: 8\nhidden_size: -4\nintermediate_size: 8\n"
                                  "num_hidden_layers: 1\nnum_attention_heads: 1\n")),
      Catch::Contains("must be positive"));
  CHECK_THROWS_WITH(model_spec_from_node(load_yaml_string("hidden_size: 4\n", "x.json"), "x.json"),
                    Catch::Contains("model_type"));
}

TEST_CASE("llama tree: names, registration order, buffers and parameter count", "[unit]") {
  const ModuleTree t = build_module_tree(spec_from(kLlama8b));
  CHECK(t.num_parameters() == 8030261248LL);  // Llama-3.1-8B
  const TreeNode& layer = t.node(t.find("model.layers.0"));
  REQUIRE(layer.children.size() == 4);
  CHECK(t.node(layer.children[0]).local == "self_attn");
  CHECK(t.node(layer.children[1]).local == "mlp");
  CHECK(t.node(layer.children[2]).local == "input_layernorm");
  CHECK(t.node(layer.children[3]).local == "post_attention_layernorm");
  const int rot = t.find("model.rotary_emb");
  REQUIRE(rot >= 0);
  REQUIRE(t.node(rot).buffers.size() == 2);
  const TreeNode& inv = t.node(t.node(rot).buffers[0]);
  CHECK(inv.numel == 64);
  CHECK_FALSE(inv.persistent);
  CHECK_FALSE(inv.follows_model_dtype);
  CHECK(t.find("model.layers.31.mlp.act_fn") >= 0);
  CHECK(t.no_split_modules == std::vector<std::string>{"LlamaDecoderLayer"});
  CHECK(t.tie_groups().empty());
}

TEST_CASE("parameter counts of the shipped families match the published checkpoints", "[unit]") {
  struct Known {
    const char* yaml;
    int64_t params;
  };
  const Known known[] = {
      // GPT-NeoX-20B: 20,554,567,680 (the GPT-NeoX-20B paper)
      {"model_type: gpt_neox\nvocab_size: 50432\nhidden_size: 6144\nintermediate_size: 24576\n"
       "num_hidden_layers: 44\nnum_attention_heads: 64\nrotary_pct: 0.25\ntie_word_embeddings: false\n",
       20554567680LL},
      // Mistral-7B-v0.1: 7,241,732,096
      {"model_type: mistral\nvocab_size: 32000\nhidden_size: 4096\nintermediate_size: 14336\n"
       "num_hidden_layers: 32\nnum_attention_heads: 32\nnum_key_value_heads: 8\n",
       7241732096LL},
      // gpt2-xl: 1,557,611,200 (tied head)
      {"model_type: gpt2\nvocab_size: 50257\nn_embd: 1600\nn_layer: 48\nn_head: 25\nn_positions: 1024\n", 1557611200LL},
      // Qwen2.5-7B: 7,615,616,512 (q/k/v bias)
      {"model_type: qwen2\nvocab_size: 152064\nhidden_size: 3584\nintermediate_size: 18944\n"
       "num_hidden_layers: 28\nnum_attention_heads: 28\nnum_key_value_heads: 4\ntie_word_embeddings: false\n",
       7615616512LL},
      // gemma-7b: 8,537,680,896 (tied head, head_dim 256)
      {"model_type: gemma\nvocab_size: 256000\nhidden_size: 3072\nintermediate_size: 24576\n"
       "num_hidden_layers: 28\nnum_attention_heads: 16\nnum_key_value_heads: 16\nhead_dim: 256\n",
       8537680896LL},
      // OPT-6.7B: 6,658,473,984 (positions + 2 offset, tied head)
      {"model_type: opt\nvocab_size: 50272\nhidden_size: 4096\nffn_dim: 16384\nnum_hidden_layers: 32\n"
       "num_attention_heads: 32\nmax_position_embeddings: 2048\nword_embed_proj_dim: 4096\n",
       6658473984LL},
      // Mixtral-8x7B-v0.1: 46,702,792,704 (the checkpoint's safetensors parameter count; fused v5 experts)
      {"model_type: mixtral\nvocab_size: 32000\nhidden_size: 4096\nintermediate_size: 14336\nnum_hidden_layers: 32\n"
       "num_attention_heads: 32\nnum_key_value_heads: 8\nnum_local_experts: 8\nnum_experts_per_tok: 2\n",
       46702792704LL},
      // ChatGLM2-6B: 6,243,584,000
      {"model_type: chatglm\npadded_vocab_size: 65024\nhidden_size: 4096\nffn_hidden_size: 13696\nnum_layers: 28\n"
       "num_attention_heads: 32\nmulti_query_attention: true\nmulti_query_group_num: 2\nkv_channels: 128\n"
       "add_qkv_bias: true\nadd_bias_linear: false\n",
       6243584000LL},
  };
  for (const Known& k : known) {
    const ModuleTree t = build_module_tree(spec_from(k.yaml));
    INFO(t.model_type);
    CHECK(t.num_parameters() == k.params);
  }
}

TEST_CASE("gptj and gpt_neox trees follow transformers' modeling code", "[unit]") {
  const ModuleTree j =
      build_module_tree(spec_from("model_type: gptj\nvocab_size: 50400\nn_embd: 4096\nn_layer: 28\nn_head: "
                                  "16\nn_positions: 2048\nrotary_dim: 64\n"));
  const TreeNode& attn = j.node(j.find("transformer.h.0.attn"));
  std::vector<std::string> names;
  for (int c : attn.children) names.push_back(j.node(c).local);
  CHECK(names == std::vector<std::string>{"attn_dropout", "resid_dropout", "k_proj", "v_proj", "q_proj", "out_proj"});
  CHECK(attn.buffers.empty());                          // embed_positions is a plain attribute, not a buffer
  CHECK(j.node(j.find("lm_head")).params.size() == 2);  // GPT-J's head has a bias
  CHECK(j.tie_groups().empty());
  CHECK(j.find("transformer.wpe") < 0);

  const ModuleTree x = build_module_tree(
      spec_from("model_type: gpt_neox\nvocab_size: 50432\nhidden_size: 6144\nintermediate_size: 24576\n"
                "num_hidden_layers: 44\nnum_attention_heads: 64\nrotary_pct: 0.25\n"));
  const TreeNode& layer = x.node(x.find("gpt_neox.layers.0"));
  names.clear();
  for (int c : layer.children) names.push_back(x.node(c).local);
  CHECK(names == std::vector<std::string>{"input_layernorm", "post_attention_layernorm", "post_attention_dropout",
                                          "post_mlp_dropout", "attention", "mlp"});
  const TreeNode& rot = x.node(x.find("gpt_neox.rotary_emb"));
  REQUIRE(rot.buffers.size() == 2);
  CHECK(x.node(rot.buffers[0]).numel == 12);  // int(96 * 0.25) / 2
  CHECK(x.no_split_modules == std::vector<std::string>{"GPTNeoXLayer"});
}

TEST_CASE("sizes: accelerate's min rule, bool bits and tie handling versus v5", "[unit]") {
  const ModuleTree t = build_module_tree(
      spec_from("model_type: gpt2\nvocab_size: 50257\nn_embd: 1600\nn_layer: 2\nn_head: 25\nn_positions: 1024\n"));
  SizingOptions acc;
  acc.rule = SizingRule::kAccelerate;
  acc.dtype = DType::kFloat16;
  const ModuleSizes a = compute_module_sizes(t, acc);
  CHECK(a.of(t.find("transformer.h.0.attn.bias")) == 1024 * 1024);  // bits: bool = 1/8 byte
  CHECK(a.of(t.find("lm_head")) == 0);                              // tied: counted under wte
  CHECK_FALSE(a.touched[t.find("lm_head")]);
  SizingOptions v5;
  v5.rule = SizingRule::kTransformersV5;
  v5.dtype = DType::kFloat16;
  const ModuleSizes b = compute_module_sizes(t, v5);
  CHECK(b.of(t.find("transformer.h.0.attn.bias")) == 8 * 1024 * 1024);  // bool = 1 byte
  CHECK(b.of(t.find("lm_head")) == 0);                                  // tie target skipped
  CHECK(b.total() - a.total() == 2 * 7 * 1024 * 1024);                  // 2 masks x 7/8 MiB
  // float32 rotary-like buffers keep 4 bytes under v5 but shrink under accelerate's rule.
  const ModuleTree l = build_module_tree(spec_from(kLlama8b));
  const ModuleSizes la = compute_module_sizes(l, acc);
  const ModuleSizes lb = compute_module_sizes(l, v5);
  CHECK(la.of(l.find("model.rotary_emb")) == 2 * 64 * 16);
  CHECK(lb.of(l.find("model.rotary_emb")) == 2 * 64 * 32);
}

TEST_CASE("scenarios: bad keys and values are located errors", "[unit]") {
  const std::string models = std::string(DMAP_SOURCE_DIR) + "/configs/models";
  auto load = [&](const std::string& body) { return load_scenario(write_temp("scenario_test.yaml", body), models); };
  const std::string model =
      "model:\n  model_type: llama\n  config: {vocab_size: 8, hidden_size: 8, intermediate_size: 8, "
      "num_hidden_layers: 1, num_attention_heads: 1}\n";
  CHECK_NOTHROW(load(model + "max_memory: {0: 1GB, cpu: 2GB}\n"));
  CHECK_THROWS_WITH(load(model + "max_memory: {0: lots, cpu: 2GB}\n"), Catch::Contains("scenario_test.yaml:"));
  CHECK_THROWS_WITH(load(model + "max_memory: {0: -5, cpu: 2GB}\n"), Catch::Contains("negative"));
  CHECK_THROWS_WITH(load(model + "max_memory: {tpu: 1GB}\n"), Catch::Contains("unknown device 'tpu'"));
  CHECK_THROWS_WITH(load(model + "strategy: fastest\n"), Catch::Contains("strategy: unknown value 'fastest'"));
  CHECK_THROWS_WITH(load(model + "dtype: float12\n"), Catch::Contains("unknown dtype"));
  CHECK_THROWS_WITH(load("dtype: float16\n"), Catch::Contains("no 'model'"));
  CHECK_THROWS_WITH(load("model: no_such_model_anywhere\n"), Catch::Contains("not found"));
  CHECK_THROWS_WITH(load(model + "device_maps: {m: {lm_head: gpu-ish}}\n"),
                    Catch::Contains("unknown device 'gpu-ish'"));
}

TEST_CASE("json writer escapes and nests", "[unit]") {
  JsonWriter w;
  w.begin_object();
  w.key("a\"b");
  w.begin_array();
  w.value(int64_t{1});
  w.value(2.5);
  w.value(true);
  w.null();
  w.value("x\ny");
  w.end_array();
  w.end_object();
  CHECK(w.str() == R"({"a\"b":[1,2.5,true,null,"x\ny"]})");
}

TEST_CASE("a misspelled key is named with the known key it is closest to", "[unit][core][yaml]") {
  const std::vector<std::string> known = {"max_memory", "page_cache", "gpu_memory_in_use", "p2p_gbs", "entry"};
  CHECK(dmap::closest_word("max_memroy", known) == "max_memory");
  CHECK(dmap::closest_word("page_cashe", known) == "page_cache");
  CHECK(dmap::closest_word("gpu_memory_in_uze", known) == "gpu_memory_in_use");
  CHECK(dmap::closest_word("p2p_gsb", known) == "p2p_gbs");
  CHECK(dmap::closest_word("entyr", known) == "entry");
  CHECK(dmap::closest_word("completely_different", known).empty());
  const YAML::Node n = dmap::load_yaml_string("{page_cache: true, max_memroy: 1}", "k.yaml");
  CHECK_THROWS_WITH(dmap::check_known_keys("k.yaml", n, known, "hardware"),
                    Catch::Contains("k.yaml:1:") &&
                        Catch::Contains("hardware: unknown key 'max_memroy' (did you mean 'max_memory'?)"));
  CHECK_NOTHROW(dmap::check_known_keys("k.yaml", dmap::load_yaml_string("{entry: 1}", "k.yaml"), known, "x"));
}

TEST_CASE("control characters: refused in YAML/JSON text and in strings, escaped in messages", "[unit][core][yaml]") {
  // A raw NUL or ESC byte in the text is located; tab and CR are YAML's own whitespace.
  try {
    dmap::load_yaml_string(std::string("a: 1\nb: x\0y\n", 12), "c.yaml");
    FAIL("expected an InputError");
  } catch (const InputError& e) {
    CHECK(e.line() == 2);
    CHECK(e.column() == 5);
    CHECK_THAT(e.message(), Catch::Contains("\\x00"));
  }
  CHECK_THROWS_WITH(dmap::load_yaml_string("t: \"\x1b[31mred\"", "c.yaml"),
                    Catch::Contains("c.yaml:1:5") && Catch::Contains("\\x1b"));
  CHECK_NOTHROW(dmap::load_yaml_string("a:\t1\r\nb: 2\r\n", "c.yaml"));
  // An escape in a quoted scalar makes the same character: a string value refuses it.
  const YAML::Node n = dmap::load_yaml_string("t: \"ab\\0cd\"\nu: \"tab\\there\"", "c.yaml");
  CHECK_THROWS_WITH(dmap::yaml_string("c.yaml", n["t"], "title"),
                    Catch::Contains("title: contains the control character \\x00"));
  CHECK(dmap::yaml_string("c.yaml", n["u"], "title") == "tab\there");
  // The whole message survives a NUL (what() would stop at it) and prints escaped.
  const InputError e("f.yaml", 3, 1, std::string("unknown 'a\0b'", 13));
  CHECK(e.text() == std::string("f.yaml:3:1: unknown 'a\0b'", 25));
  CHECK(dmap::printable(e.text()) == "f.yaml:3:1: unknown 'a\\x00b'");
  CHECK(dmap::printable("line\nnext\x7f\x1b") == "line\nnext\\x7f\\x1b");
  CHECK(dmap::printable(std::string(100000, 'x')).size() < 4200);
}

TEST_CASE("declared dense families: parts, fused projections, q/k norms and sliding rules", "[unit][core]") {
  const std::string dims =
      "vocab_size: 64\nhidden_size: 32\nintermediate_size: 48\nnum_hidden_layers: 4\nnum_attention_heads: 4\n"
      "num_key_value_heads: 2\nhead_dim: 8\nmax_position_embeddings: 512\n";
  auto children = [](const ModuleTree& t, const std::string& name) {
    std::vector<std::string> out;
    for (int c : t.node(t.find(name)).children) out.push_back(t.node(c).local);
    return out;
  };
  // phi3: o_proj before the fused qkv_proj ((4 + 2 x 2) x 8 rows), gate_up_proj, dropouts last.
  const ModuleTree phi3 = build_module_tree(spec_from("model_type: phi3\nsliding_window: 100\n" + dims));
  CHECK(children(phi3, "model.layers.0.self_attn") == std::vector<std::string>{"o_proj", "qkv_proj"});
  CHECK(phi3.node(phi3.find("model.layers.0.self_attn.qkv_proj.weight")).shape == std::vector<int64_t>{64, 32});
  CHECK(children(phi3, "model.layers.0.mlp") == std::vector<std::string>{"gate_up_proj", "down_proj", "activation_fn"});
  CHECK(children(phi3, "model.layers.0") == std::vector<std::string>{"self_attn", "mlp", "input_layernorm",
                                                                     "post_attention_layernorm", "resid_attn_dropout",
                                                                     "resid_mlp_dropout"});
  CHECK(phi3.no_split_modules == std::vector<std::string>{"Phi3DecoderLayer"});
  CHECK(phi3.dims.layer_window == std::vector<int64_t>{100, 100, 100, 100});
  // qwen3: q/k norms over head_dim after o_proj; no sliding window unless use_sliding_window.
  const ModuleTree qwen3 = build_module_tree(spec_from("model_type: qwen3\nsliding_window: 100\n" + dims));
  CHECK(children(qwen3, "model.layers.0.self_attn") ==
        std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm"});
  CHECK(qwen3.node(qwen3.find("model.layers.0.self_attn.k_norm.weight")).shape == std::vector<int64_t>{8});
  CHECK(qwen3.dims.layer_window == std::vector<int64_t>{0, 0, 0, 0});
  // olmo2: q/k norms over all heads (q 4 x 8, k 2 x 8), post-norms only.
  const ModuleTree olmo2 = build_module_tree(spec_from("model_type: olmo2\n" + dims));
  CHECK(olmo2.node(olmo2.find("model.layers.0.self_attn.q_norm.weight")).shape == std::vector<int64_t>{32});
  CHECK(olmo2.node(olmo2.find("model.layers.0.self_attn.k_norm.weight")).shape == std::vector<int64_t>{16});
  CHECK(children(olmo2, "model.layers.0") ==
        std::vector<std::string>{"self_attn", "mlp", "post_attention_layernorm", "post_feedforward_layernorm"});
  // gemma2: four norms, tied by default, layers 0 and 2 slide (configuration_gemma2's default
  // layer_types); an explicit layer_types wins.
  const ModuleTree gemma2 = build_module_tree(spec_from("model_type: gemma2\nsliding_window: 100\n" + dims));
  CHECK(children(gemma2, "model.layers.0").size() == 6);
  CHECK(gemma2.dims.layer_window == std::vector<int64_t>{100, 0, 100, 0});
  CHECK(gemma2.ties().size() == 1);
  const ModuleTree gemma2_types = build_module_tree(spec_from(
      "model_type: gemma2\nsliding_window: 100\nlayer_types: [full_attention, full_attention, sliding_attention, "
      "full_attention]\n" +
      dims));
  CHECK(gemma2_types.dims.layer_window == std::vector<int64_t>{0, 0, 100, 0});
  for (const ModuleTree* t : {&phi3, &qwen3, &olmo2, &gemma2}) CHECK(t->dims.gated_mlp);
  // gemma3_text (Gemma3ForCausalLM, transformers v5 modular_gemma3.py): Gemma3TextModel, a scaled
  // embedding with a 0-dim non-persistent embed_scale, q/k norms over head_dim, every sixth layer
  // full attention (sliding_window_pattern), one rotary module with buffers per layer type.
  const std::string dims7 =
      "vocab_size: 64\nhidden_size: 32\nintermediate_size: 48\nnum_hidden_layers: 7\n"
      "num_attention_heads: 4\nnum_key_value_heads: 1\nhead_dim: 8\nmax_position_embeddings: 512\n";
  const ModuleTree gemma3 = build_module_tree(spec_from("model_type: gemma3_text\nsliding_window: 16\n" + dims7));
  CHECK(gemma3.node(gemma3.find("model")).class_name == "Gemma3TextModel");
  CHECK(gemma3.node(gemma3.find("model.embed_tokens")).class_name == "Gemma3TextScaledWordEmbedding");
  CHECK(gemma3.find("model.embed_tokens.embed_scale") >= 0);
  CHECK(children(gemma3, "model.layers.0.self_attn") ==
        std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm"});
  CHECK(children(gemma3, "model.layers.0").size() == 6);
  CHECK(gemma3.dims.layer_window == std::vector<int64_t>{16, 16, 16, 16, 16, 0, 16});
  for (const char* b : {"sliding_attention_inv_freq", "sliding_attention_original_inv_freq", "full_attention_inv_freq",
                        "full_attention_original_inv_freq"}) {
    INFO(b);
    CHECK(gemma3.find(std::string("model.rotary_emb.") + b) >= 0);
  }
  CHECK(gemma3.node(gemma3.find("model.rotary_emb.full_attention_inv_freq")).shape == std::vector<int64_t>{4});
  CHECK(gemma3.ties().size() == 1);
  CHECK(gemma3.no_split_modules.front() == "Gemma3DecoderLayer");
  const ModuleTree gemma3_p2 =
      build_module_tree(spec_from("model_type: gemma3_text\nsliding_window: 16\nsliding_window_pattern: 2\n" + dims7));
  CHECK(gemma3_p2.dims.layer_window == std::vector<int64_t>{16, 0, 16, 0, 16, 0, 16});
  // starcoder2 (the Mistral tree, v5): LayerNorms with bias, {c_fc, c_proj, act}, biases from
  // use_bias (default true), tied by default, a plain (not gated) MLP, every layer sliding.
  const ModuleTree sc2 = build_module_tree(spec_from("model_type: starcoder2\nsliding_window: 100\n" + dims));
  CHECK(children(sc2, "model.layers.0.mlp") == std::vector<std::string>{"c_fc", "c_proj", "act"});
  CHECK(sc2.find("model.layers.0.self_attn.q_proj.bias") >= 0);
  CHECK(sc2.find("model.layers.0.mlp.c_fc.bias") >= 0);
  CHECK(sc2.node(sc2.find("model.layers.0.input_layernorm")).class_name == "LayerNorm");
  CHECK(sc2.find("model.norm.bias") >= 0);
  CHECK(sc2.ties().size() == 1);
  CHECK_FALSE(sc2.dims.gated_mlp);
  CHECK(sc2.dims.layer_window == std::vector<int64_t>{100, 100, 100, 100});
  const ModuleTree sc2_nobias = build_module_tree(spec_from("model_type: starcoder2\nuse_bias: false\n" + dims));
  CHECK(sc2_nobias.find("model.layers.0.self_attn.q_proj.bias") < 0);
  CHECK(sc2_nobias.find("model.layers.0.mlp.c_proj.bias") < 0);
  // The rotary fraction, top level or (transformers v5) under rope_parameters: int(8 x 0.75) = 6
  // dims, 3 inverse frequencies.
  const ModuleTree phi4 = build_module_tree(spec_from(
      "model_type: phi3\nrope_parameters: {rope_type: default, rope_theta: 10000.0, partial_rotary_factor: 0.75}\n" +
      dims));
  CHECK(phi4.node(phi4.find("model.rotary_emb.inv_freq")).shape == std::vector<int64_t>{3});
  CHECK_THROWS_WITH(
      build_module_tree(spec_from("model_type: phi3\nrope_parameters: {partial_rotary_factor: 2}\n" + dims)),
      Catch::Contains("inline.yaml:") && Catch::Contains("expected a number in (0, 1]"));
  // Top level too (a mutant once reached an internal check with -0.5).
  CHECK_THROWS_WITH(
      build_module_tree(spec_from("model_type: phi3\npartial_rotary_factor: -0.5\n" + dims)),
      Catch::Contains("inline.yaml:2:") && Catch::Contains("partial_rotary_factor: expected a number in (0, 1]"));
}

TEST_CASE("multimodal trees: gemma3 (SigLIP) and mistral3 (Pixtral) as transformers v5 main builds them",
          "[unit][core]") {
  // Gemma3ForConditionalGeneration: model{vision_tower, multi_modal_projector, language_model}, lm_head
  // tied to the text embedding; SigLIP without the `.vision_model.` level (v5 main), no pooling
  // head when vision_use_head is false; sizes of modeling_gemma3.py / modeling_siglip.py.
  const ModuleTree g = build_module_tree(
      spec_from("model_type: gemma3\n"
                "text_config: {hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, "
                "num_key_value_heads: 1, head_dim: 8, vocab_size: 64, sliding_window: 16, sliding_window_pattern: 2}\n"
                "vision_config: {hidden_size: 24, intermediate_size: 40, num_hidden_layers: 2, num_attention_heads: 3, "
                "image_size: 28, "
                "patch_size: 7, vision_use_head: false}\n"));
  CHECK(g.node(g.root()).class_name == "Gemma3ForConditionalGeneration");
  CHECK(children(g, "") == std::vector<std::string>{"model", "lm_head"});
  CHECK(children(g, "model") == std::vector<std::string>{"vision_tower", "multi_modal_projector", "language_model"});
  CHECK(children(g, "model.vision_tower") == std::vector<std::string>{"embeddings", "encoder", "post_layernorm"});
  CHECK(shape(g, "model.vision_tower.embeddings.patch_embedding.weight") == std::vector<int64_t>{24, 3, 7, 7});
  CHECK(shape(g, "model.vision_tower.embeddings.patch_embedding.bias") == std::vector<int64_t>{24});
  CHECK(shape(g, "model.vision_tower.embeddings.position_embedding.weight") == std::vector<int64_t>{16, 24});
  const TreeNode& pos = g.node(g.find("model.vision_tower.embeddings.position_ids"));
  CHECK((pos.is_buffer && !pos.persistent && !pos.follows_model_dtype && pos.fixed_dtype == DType::kInt64));
  CHECK(pos.shape == std::vector<int64_t>{1, 16});
  CHECK(children(g, "model.vision_tower.encoder.layers.1") ==
        std::vector<std::string>{"layer_norm1", "self_attn", "layer_norm2", "mlp"});
  CHECK(children(g, "model.vision_tower.encoder.layers.0.self_attn") ==
        std::vector<std::string>{"k_proj", "v_proj", "q_proj", "out_proj"});
  CHECK(children(g, "model.vision_tower.encoder.layers.0.mlp") ==
        std::vector<std::string>{"activation_fn", "fc1", "fc2"});
  CHECK(shape(g, "model.vision_tower.encoder.layers.0.mlp.fc1.bias") == std::vector<int64_t>{40});
  CHECK(shape(g, "model.multi_modal_projector.mm_input_projection_weight") == std::vector<int64_t>{24, 32});
  CHECK(children(g, "model.multi_modal_projector") == std::vector<std::string>{"mm_soft_emb_norm", "avg_pool"});
  CHECK(g.node(g.find("model.language_model")).class_name == "Gemma3TextModel");
  CHECK(g.find("model.language_model.embed_tokens.embed_scale") >= 0);
  CHECK(g.dims.num_layers == 2);
  CHECK(g.dims.layer_window == std::vector<int64_t>{16, 0});
  REQUIRE(g.ties().size() == 1);
  CHECK(g.ties().front() ==
        std::pair<std::string, std::string>{"lm_head.weight", "model.language_model.embed_tokens.weight"});
  CHECK(std::find(g.no_split_modules.begin(), g.no_split_modules.end(), "SiglipEncoderLayer") !=
        g.no_split_modules.end());
  CHECK(g.idle_modules == std::vector<std::string>{"model.vision_tower", "model.multi_modal_projector"});
  // vision_use_head defaults to true: the pooling head with torch's MultiheadAttention.
  const ModuleTree gh = build_module_tree(spec_from(
      "model_type: gemma3\ntext_config: {hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, "
      "num_attention_heads: 4, "
      "num_key_value_heads: 1, head_dim: 8, vocab_size: 64}\nvision_config: {hidden_size: 24, num_attention_heads: 3, "
      "num_hidden_layers: 1}\n"));
  CHECK(children(gh, "model.vision_tower.head") == std::vector<std::string>{"attention", "layernorm", "mlp"});
  CHECK(shape(gh, "model.vision_tower.head.attention.in_proj_weight") == std::vector<int64_t>{72, 24});
  CHECK(shape(gh, "model.vision_tower.embeddings.position_embedding.weight") ==
        std::vector<int64_t>{196, 24});  // 224/16
  // Mistral3ForConditionalGeneration: Pixtral tower, the projector with its patch merger, the
  // Mistral text model; lm_head tied (Mistral3Config's default) unless the config says no.
  const std::string m3 =
      "model_type: mistral3\nspatial_merge_size: 2\n"
      "text_config: {model_type: mistral, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, "
      "num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, vocab_size: 64}\n"
      "vision_config: {hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, "
      "image_size: 56, "
      "patch_size: 14, hidden_act: silu}\n";
  const ModuleTree m = build_module_tree(spec_from(m3));
  CHECK(children(m, "model") == std::vector<std::string>{"vision_tower", "multi_modal_projector", "language_model"});
  CHECK(children(m, "model.vision_tower") ==
        std::vector<std::string>{"patch_conv", "ln_pre", "transformer", "patch_positional_embedding"});
  CHECK(m.find("model.vision_tower.patch_conv.bias") < 0);
  CHECK(shape(m, "model.vision_tower.patch_conv.weight") == std::vector<int64_t>{16, 3, 14, 14});
  CHECK(children(m, "model.vision_tower.transformer.layers.0") ==
        std::vector<std::string>{"attention_norm", "feed_forward", "attention", "ffn_norm"});
  CHECK(children(m, "model.vision_tower.transformer.layers.0.feed_forward") ==
        std::vector<std::string>{"gate_proj", "up_proj", "down_proj", "act_fn"});
  CHECK(m.node(m.find("model.vision_tower.transformer.layers.0.feed_forward.act_fn")).class_name == "SiLUActivation");
  CHECK(shape(m, "model.vision_tower.patch_positional_embedding.inv_freq") ==
        std::vector<int64_t>{16, 8});  // (56/14)^2 x head_dim
  CHECK(children(m, "model.multi_modal_projector") ==
        std::vector<std::string>{"norm", "patch_merger", "linear_1", "act", "linear_2"});
  CHECK(shape(m, "model.multi_modal_projector.patch_merger.merging_layer.weight") == std::vector<int64_t>{16, 64});
  CHECK(shape(m, "model.multi_modal_projector.linear_1.weight") == std::vector<int64_t>{32, 16});
  CHECK(m.find("model.multi_modal_projector.linear_1.bias") < 0);
  CHECK(m.node(m.find("model.language_model")).class_name == "MistralModel");
  CHECK(m.no_split_modules == std::vector<std::string>{"PixtralAttentionLayer", "MistralDecoderLayer"});
  CHECK(m.ties().size() == 1);
  CHECK(build_module_tree(spec_from(m3 + "tie_word_embeddings: false\n")).ties().empty());
  CHECK_THROWS_WITH(build_module_tree(spec_from("model_type: mistral3\ntext_config: [1, 2]\n")),
                    Catch::Contains("inline.yaml:2") && Catch::Contains("text_config: expected a map"));
}

TEST_CASE("mixture-of-experts trees: fused experts, routers, shared experts and which layers are sparse",
          "[unit][core][moe]") {
  const std::string dims =
      "vocab_size: 64\nhidden_size: 16\nintermediate_size: 48\nmoe_intermediate_size: 8\nnum_hidden_layers: 4\n"
      "num_attention_heads: 2\nnum_key_value_heads: 1\nhead_dim: 8\nnum_experts_per_tok: 2\n";
  // qwen3_moe: layers in mlp_only_layers keep a dense Qwen3MoeMLP; experts before gate.
  const ModuleTree q =
      build_module_tree(spec_from("model_type: qwen3_moe\nnum_experts: 6\nmlp_only_layers: [1]\n" + dims));
  CHECK(q.node(q.find("model.layers.1.mlp")).class_name == "Qwen3MoeMLP");
  CHECK(q.node(q.find("model.layers.0.mlp")).class_name == "Qwen3MoeSparseMoeBlock");
  CHECK(children(q, "model.layers.0.mlp") == std::vector<std::string>{"experts", "gate"});
  CHECK(shape(q, "model.layers.0.mlp.experts.gate_up_proj") == std::vector<int64_t>{6, 16, 16});
  CHECK(shape(q, "model.layers.0.mlp.experts.down_proj") == std::vector<int64_t>{6, 16, 8});
  CHECK(shape(q, "model.layers.0.mlp.gate.weight") == std::vector<int64_t>{6, 16});
  CHECK(children(q, "model.layers.0.mlp.experts") == std::vector<std::string>{"act_fn"});
  CHECK((q.dims.num_experts == 6 && q.dims.experts_per_token == 2));
  // decoder_sparse_step 2: layers 1 and 3 sparse.
  const ModuleTree s =
      build_module_tree(spec_from("model_type: qwen3_moe\nnum_experts: 6\ndecoder_sparse_step: 2\n" + dims));
  CHECK(s.node(s.find("model.layers.0.mlp")).class_name == "Qwen3MoeMLP");
  CHECK(s.node(s.find("model.layers.1.mlp")).class_name == "Qwen3MoeSparseMoeBlock");
  // qwen2_moe: gate, experts, shared_expert (its own width), shared_expert_gate (hidden -> 1).
  const ModuleTree q2 = build_module_tree(
      spec_from("model_type: qwen2_moe\nnum_experts: 6\nshared_expert_intermediate_size: 24\n" + dims));
  CHECK(children(q2, "model.layers.2.mlp") ==
        std::vector<std::string>{"gate", "experts", "shared_expert", "shared_expert_gate"});
  CHECK(shape(q2, "model.layers.2.mlp.shared_expert.up_proj.weight") == std::vector<int64_t>{24, 16});
  CHECK(shape(q2, "model.layers.2.mlp.shared_expert_gate.weight") == std::vector<int64_t>{1, 16});
  // gpt_oss: sinks, biased attention, the router's bias, experts in the transposed layout with
  // biases and no act_fn.
  const ModuleTree o =
      build_module_tree(spec_from("model_type: gpt_oss\nnum_local_experts: 4\nattention_bias: true\n" + dims));
  CHECK(shape(o, "model.layers.0.self_attn.sinks") == std::vector<int64_t>{2});
  CHECK(o.find("model.layers.0.self_attn.q_proj.bias") >= 0);
  CHECK(children(o, "model.layers.0.mlp") == std::vector<std::string>{"router", "experts"});
  CHECK(shape(o, "model.layers.0.mlp.router.bias") == std::vector<int64_t>{4});
  CHECK(shape(o, "model.layers.0.mlp.experts.gate_up_proj") == std::vector<int64_t>{4, 16, 96});
  CHECK(shape(o, "model.layers.0.mlp.experts.down_proj_bias") == std::vector<int64_t>{4, 16});
  CHECK(children(o, "model.layers.0.mlp.experts").empty());
  // deepseek_v3: dense first layers, MLA projections, the router's correction-bias buffer, the
  // shared experts n_shared_experts wide; rotary over qk_rope_head_dim.
  const ModuleTree d = build_module_tree(spec_from(
      "model_type: deepseek_v3\nn_routed_experts: 8\nn_shared_experts: 2\nfirst_k_dense_replace: 2\nq_lora_rank: 12\n"
      "kv_lora_rank: 10\nqk_nope_head_dim: 6\nqk_rope_head_dim: 4\nv_head_dim: 5\n" +
      dims));
  CHECK(d.node(d.find("model.layers.1.mlp")).class_name == "DeepseekV3MLP");
  CHECK(d.node(d.find("model.layers.2.mlp")).class_name == "DeepseekV3MoE");
  CHECK(children(d, "model.layers.2.mlp") == std::vector<std::string>{"experts", "gate", "shared_experts"});
  CHECK(children(d, "model.layers.0.self_attn") == std::vector<std::string>{"q_a_proj", "q_a_layernorm", "q_b_proj",
                                                                            "kv_a_proj_with_mqa", "kv_a_layernorm",
                                                                            "kv_b_proj", "o_proj"});
  CHECK(shape(d, "model.layers.0.self_attn.q_b_proj.weight") == std::vector<int64_t>{2 * 10, 12});
  CHECK(shape(d, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight") == std::vector<int64_t>{14, 16});
  CHECK(shape(d, "model.layers.0.self_attn.kv_b_proj.weight") == std::vector<int64_t>{2 * 11, 10});
  CHECK(shape(d, "model.layers.0.self_attn.o_proj.weight") == std::vector<int64_t>{16, 10});
  const TreeNode& bias = d.node(d.find("model.layers.2.mlp.gate.e_score_correction_bias"));
  CHECK((bias.is_buffer && bias.persistent && bias.shape == std::vector<int64_t>{8}));
  CHECK(shape(d, "model.layers.2.mlp.shared_experts.gate_proj.weight") == std::vector<int64_t>{16, 16});
  CHECK(shape(d, "model.rotary_emb.inv_freq") == std::vector<int64_t>{2});
  // Without q_lora_rank (DeepSeek-V2-Lite's shape): one q_proj.
  const ModuleTree dl =
      build_module_tree(spec_from("model_type: deepseek_v3\nn_routed_experts: 8\nkv_lora_rank: 10\nqk_nope_head_dim: "
                                  "6\nqk_rope_head_dim: 4\nv_head_dim: 5\n" +
                                  dims));
  CHECK(children(dl, "model.layers.0.self_attn").front() == "q_proj");
  // deepseek_v2: the gate a plain Linear, no correction bias, shared experts only when configured.
  const ModuleTree d2 = build_module_tree(spec_from(
      "model_type: deepseek_v2\nn_routed_experts: 8\nfirst_k_dense_replace: 1\nkv_lora_rank: 10\nqk_nope_head_dim: 6\n"
      "qk_rope_head_dim: 4\nv_head_dim: 5\n" +
      dims));
  CHECK(d2.node(d2.find("model.layers.1.mlp")).class_name == "DeepseekV2Moe");
  CHECK(children(d2, "model.layers.1.mlp") == std::vector<std::string>{"experts", "gate"});
  CHECK(d2.node(d2.find("model.layers.1.mlp.gate")).class_name == "Linear");
  CHECK(d2.find("model.layers.1.mlp.gate.e_score_correction_bias") < 0);
  // llama4_text: feed_forward; Llama4TextMoe{experts (transposed, act_fn), router, shared_expert};
  // dense layers of intermediate_size_mlp off the moe_layers; an L2 qk_norm on RoPE layers only;
  // chunked attention's cache (attention_chunk_size) on those layers.
  const ModuleTree l4 = build_module_tree(
      spec_from("model_type: llama4_text\nnum_local_experts: 4\nintermediate_size_mlp: 40\nmoe_layers: [1, 3]\n"
                "no_rope_layers: [1, 1, 1, 0]\nattention_chunk_size: 32\n" +
                dims));
  CHECK(l4.node(l4.root()).class_name == "Llama4ForCausalLM");
  CHECK(l4.node(l4.find("model.layers.0.feed_forward")).class_name == "Llama4TextMLP");
  CHECK(shape(l4, "model.layers.0.feed_forward.up_proj.weight") == std::vector<int64_t>{40, 16});
  CHECK(children(l4, "model.layers.0.feed_forward").back() == "activation_fn");
  CHECK(children(l4, "model.layers.1.feed_forward") == std::vector<std::string>{"experts", "router", "shared_expert"});
  CHECK(shape(l4, "model.layers.1.feed_forward.experts.gate_up_proj") == std::vector<int64_t>{4, 16, 96});
  CHECK(shape(l4, "model.layers.1.feed_forward.experts.down_proj") == std::vector<int64_t>{4, 48, 16});
  CHECK(l4.node(l4.find("model.layers.1.feed_forward.router")).class_name == "Llama4Router");
  CHECK(shape(l4, "model.layers.1.feed_forward.shared_expert.gate_proj.weight") == std::vector<int64_t>{48, 16});
  CHECK(children(l4, "model.layers.0.self_attn").back() == "qk_norm");
  CHECK(children(l4, "model.layers.3.self_attn").back() == "o_proj");
  CHECK(l4.dims.layer_window == std::vector<int64_t>{32, 32, 32, 0});
  CHECK(l4.dims.experts_transposed);
  CHECK_THROWS_WITH(
      build_module_tree(spec_from(
          "model_type: llama4_text\nnum_local_experts: 4\nintermediate_size_mlp: 40\nmoe_layers: [9]\n" + dims)),
      Catch::Contains("moe_layers must list layer numbers of the model"));
  CHECK_THROWS_WITH(
      build_module_tree(spec_from("model_type: llama4_text\nnum_local_experts: 4\nintermediate_size_mlp: 40\n"
                                  "no_rope_layers: [1, 0]\n" +
                                  dims)),
      Catch::Contains("inline.yaml:") && Catch::Contains("no_rope_layers lists 2 layers, the model has 4"));
  // Parameters per token: all but the (E - k) experts a token skips in each sparse layer.
  const ExpertSummary qs = expert_summary(q);
  CHECK(qs.sparse_layers == 3);
  CHECK(qs.layer_parameters == 6 * (16 * 16 + 16 * 8));
  CHECK(qs.routed_parameters == 3 * qs.layer_parameters);
  CHECK(qs.active_parameters == q.num_parameters() - 3 * (6 - 2) * (16 * 16 + 16 * 8));
  CHECK(expert_summary(o).layer_parameters == 4 * (16 * 96 + 96 + 48 * 16 + 16));  // biases count
  // More experts per token than experts: exit 2 with the line.
  CHECK_THROWS_WITH(
      build_module_tree(spec_from("model_type: mixtral\nnum_local_experts: 1\n" + dims)),
      Catch::Contains("inline.yaml:") && Catch::Contains("num_experts_per_tok (2) exceeds the 1 experts"));
  CHECK_THROWS_WITH(
      build_module_tree(spec_from("model_type: qwen3_moe\nnum_experts: 6\nmlp_only_layers: [a]\n" + dims)),
      Catch::Contains("mlp_only_layers must list layer numbers"));
}

// GGUF sizes: llama-quantize's per-tensor types (src/llama-quant.cpp) and ggml's block sizes.
namespace {
ModuleTree gguf_tree(const std::string& preset, const std::string& ft) {
  ModelSpec spec = load_model_spec(std::string(DMAP_SOURCE_DIR) + "/configs/models/" + preset + ".yaml");
  spec.gguf_file_type = ft;
  return build_module_tree(spec);
}
std::string type_of(const ModuleTree& t, const std::string& tensor) {
  const int id = t.find(tensor);
  REQUIRE(id >= 0);
  return t.node(id).gguf_type >= 0 ? ggml_traits(static_cast<GgmlType>(t.node(id).gguf_type)).name : "-";
}
}  // namespace

TEST_CASE("GGUF file types: llama-quantize's mixtures, byte for byte", "[unit][core][gguf]") {
  SECTION("Llama-3.1-8B Q4_K_M: 193 q4_K, 33 q6_K, 65 f32 tensors") {
    // By hand: token_embd [128256, 4096] q4_K = 295,501,824 B; output q6_K = 430,940,160 B; a layer
    // = q 9,437,184 + k 2,359,296 + v + o 9,437,184 + gate/up 33,030,144 each + down + norms 32,768,
    // with v and down q6_K (3,440,640; 48,168,960) on the 16 use_more_bits layers of 32 (i < 4,
    // i >= 28, (i - 4) % 3 == 2), q4_K (2,359,296; 33,030,144) on the others: 16 x 138,936,320 +
    // 16 x 122,716,160; the final norm 16,384. Sum 4,912,898,048 (llama.cpp's log for this file:
    // "type q4_K: 193 tensors, type q6_K: 33 tensors"; its f32 count is 66 with rope_freqs, which
    // dmap does not add).
    const ModuleTree t = gguf_tree("llama31_8b", "Q4_K_M");
    SizingOptions so;
    so.rule = SizingRule::kTransformersV5;
    so.dtype = DType::kBFloat16;
    CHECK(compute_module_sizes(t, so).total() == int64_t{4912898048} * 8);
    std::map<std::string, int64_t> counts;
    for (const auto& c : gguf_type_counts(t)) counts[ggml_traits(c.type).name] = c.tensors;
    CHECK(counts["q4_K"] == 193);
    CHECK(counts["q6_K"] == 33);
    CHECK(counts["f32"] == 65);
    CHECK(type_of(t, "model.layers.0.self_attn.v_proj.weight") == "q6_K");
    CHECK(type_of(t, "model.layers.4.self_attn.v_proj.weight") == "q4_K");
    CHECK(type_of(t, "model.layers.6.mlp.down_proj.weight") == "q6_K");  // (6 - 4) % 3 == 2
    CHECK(type_of(t, "model.rotary_emb.inv_freq") == "-");               // not in the file
  }
  SECTION("a tied model has no output.weight: the token embedding gets its q6_K") {
    const ModuleTree t = gguf_tree("llama32_1b", "Q4_K_M");
    CHECK(type_of(t, "model.embed_tokens.weight") == "q6_K");
    CHECK(t.node(t.find("lm_head.weight")).stored_bits == 0);
  }
  SECTION("rows not a multiple of 256 fall back (gpt-oss, hidden 2880)") {
    const ModuleTree t = gguf_tree("gpt_oss_20b", "Q4_K_M");
    CHECK(type_of(t, "model.layers.0.self_attn.q_proj.weight") == "q5_0");  // q4_K -> q5_0
    CHECK(type_of(t, "model.layers.0.self_attn.o_proj.weight") == "q4_K");  // rows of 4096
    CHECK(type_of(t, "lm_head.weight") == "q8_0");                          // 2880 % 256 != 0
    CHECK(type_of(t, "model.layers.0.mlp.router.weight") == "f32");         // ffn_gate_inp
    CHECK(type_of(t, "model.layers.0.self_attn.sinks") == "f32");
  }
  SECTION("eight experts: attn_v and attn_k q8_0, attn_output q5_K (Mixtral)") {
    const ModuleTree t = gguf_tree("mixtral_8x7b", "Q4_K_M");
    CHECK(type_of(t, "model.layers.5.self_attn.v_proj.weight") == "q8_0");
    CHECK(type_of(t, "model.layers.5.self_attn.k_proj.weight") == "q8_0");
    CHECK(type_of(t, "model.layers.5.self_attn.o_proj.weight") == "q5_K");
  }
  SECTION("block types: Q8_0 is 34 bytes per 32 weights, BF16 2 bytes") {
    const ModuleTree q8 = gguf_tree("llama31_8b", "Q8_0");
    CHECK(q8.node(q8.find("model.layers.0.self_attn.q_proj.weight")).stored_bits == int64_t{4096} * 4096 / 32 * 34 * 8);
    const ModuleTree bf = gguf_tree("llama31_8b", "bf16");
    CHECK(bf.node(bf.find("lm_head.weight")).stored_bits == int64_t{128256} * 4096 * 16);
  }
  SECTION("an unknown file type is an input error") { CHECK_THROWS_AS(gguf_tree("llama31_8b", "Q4_K_X"), InputError); }
}
