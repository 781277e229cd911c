// Unit and property tests of the strategies library: clean_device_map, the balanced caps,
// hand-written maps, and properties every planned map must have (each parameter placed exactly
// once, caps respected, deterministic output) over many models, caps and strategies.
#include <catch2/catch.hpp>

#include <map>

#include "core/error.h"
#include "core/module_sizes.h"
#include "core/yaml_io.h"
#include "strategies/balanced_memory.h"
#include "strategies/infer_auto_device_map.h"
#include "strategies/plan.h"

using namespace dmap;
using namespace dmap::strategies;

namespace {

ModuleTree tree_from(const std::string& yaml) {
  return build_module_tree(model_spec_from_node(load_yaml_string(yaml, "inline.yaml"), "inline.yaml"));
}

const char* kModels[] = {
    "model_type: llama\nvocab_size: 32000\nhidden_size: 2048\nintermediate_size: 5632\nnum_hidden_layers: 22\n"
    "num_attention_heads: 32\nnum_key_value_heads: 4\ntie_word_embeddings: false\n",
    "model_type: llama\nvocab_size: 128256\nhidden_size: 2048\nintermediate_size: 8192\nnum_hidden_layers: 16\n"
    "num_attention_heads: 32\nnum_key_value_heads: 8\nhead_dim: 64\ntie_word_embeddings: true\n",
    "model_type: gpt2\nvocab_size: 50257\nn_embd: 1600\nn_layer: 12\nn_head: 25\nn_positions: 1024\n",
    "model_type: opt\nvocab_size: 50272\nhidden_size: 2048\nffn_dim: 8192\nnum_hidden_layers: 8\n"
    "num_attention_heads: 32\nmax_position_embeddings: 2048\nword_embed_proj_dim: 2048\n",
    "model_type: gptj\nvocab_size: 50400\nn_embd: 1024\nn_layer: 6\nn_head: 16\nn_positions: 2048\nrotary_dim: 64\n",
    "model_type: gpt_neox\nvocab_size: 50432\nhidden_size: 1024\nintermediate_size: 4096\nnum_hidden_layers: 6\n"
    "num_attention_heads: 16\nrotary_pct: 0.25\n",
    "model_type: chatglm\npadded_vocab_size: 65024\nhidden_size: 1024\nffn_hidden_size: 2048\nnum_layers: 6\n"
    "num_attention_heads: 8\nmulti_query_attention: true\nmulti_query_group_num: 2\nkv_channels: 128\n",
    "model_type: gemma\nvocab_size: 256000\nhidden_size: 1024\nintermediate_size: 4096\nnum_hidden_layers: 6\n"
    "num_attention_heads: 8\nnum_key_value_heads: 1\nhead_dim: 256\n",
};

// Every tensor the sizes count must lie under exactly one entry, except the direct buffers of
// a split module (accelerate drops those); no entry may lie under another.
void check_exactly_once(const ModuleTree& t, const ModuleSizes& sizes, const DeviceMap& dm) {
  std::vector<int> entries;
  for (const auto& [name, dev] : dm.items()) {
    const int id = t.find(name);
    REQUIRE(id >= 0);
    entries.push_back(id);
  }
  for (int a : entries) {
    for (int b : entries) {
      if (a == b) continue;
      for (int p = t.node(b).parent; p >= 0; p = t.node(p).parent) {
        INFO(t.node(b).name << " lies under " << t.node(a).name);
        REQUIRE(p != a);
      }
    }
  }
  for (int id = 0; id < t.size(); ++id) {
    const TreeNode& n = t.node(id);
    if (!n.is_tensor || n.is_buffer) continue;
    int covering = 0;
    for (int a = id; a >= 0; a = t.node(a).parent) {
      if (dm.get(t.node(a).name)) ++covering;
    }
    INFO("parameter " << n.name);
    CHECK(covering == 1);
  }
  (void)sizes;
}

// The bytes the entries on each device stand for never exceed that device's cap.
void check_caps(const ModuleTree& t, const ModuleSizes& sizes, const DeviceMap& dm, const MaxMemory& caps) {
  std::map<Device, Bits> held;
  for (const auto& [name, dev] : dm.items()) held[dev] += sizes.of(t.find(name));
  for (const auto& [dev, bits] : held) {
    if (dev.kind == Device::Kind::kDisk) continue;
    auto cap = caps.get(dev);
    REQUIRE(cap);
    INFO("device " << dev.str());
    CHECK(bits <= *cap);
  }
}

}  // namespace

TEST_CASE("clean_device_map merges uniform siblings and appends the parent", "[unit]") {
  DeviceMap dm;
  dm.assign("model.embed_tokens", Device::gpu(0));
  dm.assign("model.layers.0", Device::gpu(0));
  dm.assign("model.layers.1.self_attn", Device::gpu(0));
  dm.assign("model.layers.1.mlp.gate_proj", Device::cpu());
  dm.assign("model.layers.1.mlp.up_proj", Device::cpu());
  dm.assign("model.layers.10", Device::cpu());
  dm.assign("lm_head", Device::cpu());
  clean_device_map(dm);
  const auto items = dm.items();
  REQUIRE(items.size() == 6);
  CHECK(items[2].first == "model.layers.1.self_attn");
  CHECK(items[3].first == "model.layers.10");  // "model.layers.1." is not a prefix of it
  CHECK(items.back().first == "model.layers.1.mlp");
  CHECK(items.back().second == Device::cpu());

  DeviceMap all;
  all.assign("model", Device::gpu(0));
  all.assign("lm_head", Device::gpu(0));
  clean_device_map(all);
  REQUIRE(all.size() == 1);
  CHECK(all.items()[0].first.empty());  // "" = the whole model

  DeviceMap single;
  single.assign("model.layers.0.mlp", Device::cpu());  // one sub-entry: never merged
  single.assign("model.layers.1", Device::gpu(0));
  clean_device_map(single);
  CHECK(single.items()[0].first == "model.layers.0.mlp");
}

TEST_CASE("balanced caps: per-GPU share plus buffer, last GPU untouched, low_0 formula", "[unit]") {
  const ModuleTree t = tree_from(kModels[0]);
  SizingOptions so;
  so.rule = SizingRule::kTransformersV5;
  so.dtype = DType::kFloat16;
  const ModuleSizes sizes = compute_module_sizes(t, so);
  BalanceInput in;
  in.tree = &t;
  in.sizes = &sizes;
  in.flavour = BalanceFlavour::kTransformersV5;
  in.no_split = t.no_split_modules;
  in.max_memory = parse_max_memory_flag("0=100GB,1=100GB,2=100GB,cpu=100GB", "test");
  const Bits total = sizes.total();
  const Bits layer = sizes.of(t.find("model.layers.0"));
  const Bytes buffer = balanced_buffer_bytes(in);
  CHECK(buffer == static_cast<Bytes>(1.25 * static_cast<double>(layer / 8)));  // the block beats the mean leaf
  const MaxMemory b = get_balanced_memory(in);
  const Bits share = (total / 8 / 3) * 8 + buffer * 8;
  CHECK(*b.get(Device::gpu(0)) == share);
  CHECK(*b.get(Device::gpu(1)) == share);
  CHECK(*b.get(Device::gpu(2)) == bytes_to_bits(100000000000LL));  // last GPU keeps its cap
  CHECK(*b.get(Device::cpu()) == bytes_to_bits(100000000000LL));

  in.low_zero = true;
  const MaxMemory z = get_balanced_memory(in);
  const Bits share_low = (total / 8 / 2) * 8 + buffer * 8;
  CHECK(*z.get(Device::gpu(1)) == share_low);
  CHECK(*z.get(Device::gpu(0)) == std::max<Bits>(0, total - share_low - bytes_to_bits(100000000000LL)));

  // A single GPU the user did not cap keeps 90% of it; an explicit cap is left alone.
  in.low_zero = false;
  in.max_memory = parse_max_memory_flag("0=10GB,cpu=100GB", "test");
  CHECK(*get_balanced_memory(in).get(Device::gpu(0)) == bytes_to_bits(10000000000LL));
  in.user_gave_max_memory = false;
  CHECK(*get_balanced_memory(in).get(Device::gpu(0)) == bytes_to_bits(9000000000LL));

  // accelerate's flavour fails on a disk key, as torch.device("disk") does; v5 accepts it.
  in.user_gave_max_memory = true;
  in.max_memory = parse_max_memory_flag("0=1GB,1=1GB,cpu=1GB,disk=1TB", "test");
  CHECK_NOTHROW(get_balanced_memory(in));
  SizingOptions ao;
  ao.dtype = DType::kFloat16;
  const ModuleSizes asz = compute_module_sizes(t, ao);
  in.sizes = &asz;
  in.flavour = BalanceFlavour::kAccelerate;
  CHECK_THROWS_AS(get_balanced_memory(in), InputError);
}

TEST_CASE("hand-written maps: nearest ancestor covers, errors name the culprit", "[unit]") {
  const ModuleTree t = tree_from(kModels[0]);
  std::vector<std::pair<std::string, Device>> entries = {
      {"model.embed_tokens", Device::gpu(0)}, {"model.layers", Device::gpu(0)},    {"model.layers.21", Device::cpu()},
      {"model.norm", Device::cpu()},          {"model.rotary_emb", Device::cpu()}, {"lm_head", Device::disk()}};
  const DeviceMap dm = validate_manual_map(t, entries, "map.yaml");
  CHECK(device_of(t, dm, t.find("model.layers.21.mlp.up_proj.weight")) == Device::cpu());
  CHECK(device_of(t, dm, t.find("model.layers.20.mlp.up_proj.weight")) == Device::gpu(0));
  CHECK(device_of(t, dm, t.find("lm_head.weight")) == Device::disk());

  auto bad = entries;
  bad.push_back({"model.layers.99", Device::cpu()});
  CHECK_THROWS_WITH(validate_manual_map(t, bad, "map.yaml"), Catch::Contains("'model.layers.99'"));
  auto uncovered = entries;
  uncovered.pop_back();  // lm_head
  CHECK_THROWS_WITH(validate_manual_map(t, uncovered, "map.yaml"), Catch::Contains("lm_head.weight"));
  // Non-persistent buffers (rotary inv_freq) need no entry, like accelerate's check_device_map.
  auto no_rotary = entries;
  no_rotary.erase(no_rotary.begin() + 4);
  CHECK_NOTHROW(validate_manual_map(t, no_rotary, "map.yaml"));
  CHECK(whole_model_map(Device::cpu()).items()[0].first.empty());
}

TEST_CASE("properties: every parameter once, caps respected, deterministic", "[unit]") {
  const char* caps_list[] = {
      "0=0.2,cpu=10",         // most on cpu
      "0=0.45,cpu=10",        // split around the middle
      "0=0.3,1=0.3,cpu=0.2",  // two GPUs, cpu too small: disk
      "0=0.3,1=0.3,2=0.3,cpu=10",
      "0=0.05,1=0.5,2=0.4,cpu=10",
      "0=2,cpu=2",
  };
  int maps = 0;
  for (const char* yaml : kModels) {
    const ModuleTree t = tree_from(yaml);
    SizingOptions so;
    so.rule = SizingRule::kTransformersV5;
    so.dtype = DType::kFloat16;
    const Bits total = compute_module_sizes(t, so).total();
    for (const char* caps : caps_list) {
      MaxMemory user;
      std::string spec = caps;
      size_t start = 0;
      while (start < spec.size()) {
        size_t c = spec.find(',', start);
        if (c == std::string::npos) c = spec.size();
        const std::string item = spec.substr(start, c - start);
        const size_t eq = item.find('=');
        user.set(*parse_device(item.substr(0, eq)),
                 static_cast<Bits>(std::stod(item.substr(eq + 1)) * static_cast<double>(total)) / 8 * 8);
        start = c + 1;
      }
      for (int variant = 0; variant < 7; ++variant) {
        PlanRequest req;
        req.tree = &t;
        req.max_memory = user;
        req.dtype = DType::kFloat16;
        if (variant < 2) {
          req.entry = Entry::kInferAutoDeviceMap;
          if (variant == 1) req.no_split = t.no_split_modules;
        } else {
          req.entry = Entry::kFromPretrained;
          req.strategy = static_cast<Strategy>((variant - 2) % 4);
          req.pipeline = variant == 6 ? Pipeline::kTransformersV4 : Pipeline::kTransformersV5;
        }
        INFO(t.model_type << " caps " << caps << " variant " << variant);
        const PlanResult r = plan_device_map(req);
        check_exactly_once(t, r.sizes, r.device_map);
        check_caps(t, r.sizes, r.device_map, r.effective_max_memory);
        const PlanResult again = plan_device_map(req);
        CHECK(again.device_map.items() == r.device_map.items());
        ++maps;
      }
    }
  }
  CHECK(maps == 8 * 6 * 7);
}

TEST_CASE("cap equal to the model size gives the whole model on GPU 0; one byte less does not", "[unit]") {
  for (const char* yaml : kModels) {
    const ModuleTree t = tree_from(yaml);
    PlanRequest req;
    req.tree = &t;
    req.entry = Entry::kInferAutoDeviceMap;
    req.dtype = DType::kFloat16;
    SizingOptions so;
    so.dtype = DType::kFloat16;
    const Bits total = compute_module_sizes(t, so).total();
    req.max_memory.set(Device::gpu(0), total / 8 * 8 == total ? total : (total / 8 + 1) * 8);
    req.max_memory.set(Device::cpu(), bytes_to_bits(1LL << 40));
    INFO(t.model_type);
    const DeviceMap whole = plan_device_map(req).device_map;
    REQUIRE(whole.size() == 1);
    // "" unless the root has a single child (ChatGLM: {"transformer": 0}; a lone sub-entry is
    // never merged by clean_device_map).
    const std::string expect = t.node(t.root()).children.size() == 1 ? t.node(t.node(t.root()).children[0]).name : "";
    CHECK(whole.items()[0].first == expect);
    req.max_memory.set(Device::gpu(0), *req.max_memory.get(Device::gpu(0)) - 8);
    CHECK(plan_device_map(req).device_map.size() > 1);
  }
}

TEST_CASE("fallback_allocation pulls a smaller item onto an otherwise empty GPU", "[unit]") {
  const ModuleTree t = tree_from(kModels[0]);
  PlanRequest req;
  req.tree = &t;
  req.entry = Entry::kInferAutoDeviceMap;
  req.dtype = DType::kFloat16;
  req.no_split = t.no_split_modules;
  SizingOptions so;
  so.dtype = DType::kFloat16;
  const ModuleSizes s = compute_module_sizes(t, so);
  // GPU 0 just big enough for one norm beside the reserve (the embedding): nothing fits in
  // order, so without fallback the GPU stays empty.
  req.max_memory.set(Device::gpu(0), s.of(t.find("model.embed_tokens")) + s.of(t.find("model.norm")) + 8);
  req.max_memory.set(Device::cpu(), bytes_to_bits(1LL << 40));
  const DeviceMap plain = plan_device_map(req).device_map;
  for (const auto& [n, d] : plain.items()) CHECK(d == Device::cpu());
  req.fallback_allocation = true;
  const DeviceMap fb = plan_device_map(req).device_map;
  bool some_on_gpu = false;
  for (const auto& [n, d] : fb.items()) some_on_gpu |= d == Device::gpu(0);
  CHECK(some_on_gpu);
}
