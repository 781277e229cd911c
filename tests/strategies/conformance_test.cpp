// Conformance: every case, module-size listing and cap sweep computed by accelerate's real
// code (../shared/accelerate) must be reproduced exactly. The folder is found beside the
// project, or through DMAP_ACCELERATE_CASES; when absent the tests say so and skip — except in
// CI (CI=true in the environment), where a missing folder fails: a CI run that checked nothing
// must not pass.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "core/module_sizes.h"
#include "core/scenario.h"
#include "core/units.h"
#include "core/yaml_io.h"
#include "strategies/plan.h"

namespace fs = std::filesystem;
using namespace dmap;
using namespace dmap::strategies;

namespace {

fs::path cases_root() {
  if (const char* env = std::getenv("DMAP_ACCELERATE_CASES")) return env;
  return fs::path(DMAP_SOURCE_DIR) / ".." / "shared" / "accelerate";
}

std::vector<fs::path> yaml_files(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".yaml") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool skip_if_absent(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return false;
  const char* ci = std::getenv("CI");
  if (ci && std::string(ci) == "true") {
    FAIL("accelerate conformance data not found at "
         << dir.string()
         << " and CI=true: CI must run the conformance cases "
            "(put ../shared beside the project or set DMAP_ACCELERATE_CASES)");
  }
  WARN("accelerate conformance data not found at " << dir.string() << " (set DMAP_ACCELERATE_CASES); skipping");
  return true;
}

std::string device_text(const YAML::Node& n) { return n.Scalar(); }

std::vector<std::pair<std::string, std::string>> expected_pairs(const YAML::Node& list) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& p : list) out.emplace_back(p[0].IsNull() ? "" : p[0].Scalar(), device_text(p[1]));
  return out;
}

std::vector<std::pair<std::string, std::string>> actual_pairs(const DeviceMap& dm) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [n, d] : dm.items()) out.emplace_back(n, d.str());
  return out;
}

std::string render(const std::vector<std::pair<std::string, std::string>>& v) {
  std::ostringstream os;
  for (const auto& [n, d] : v) os << "    [" << n << ", " << d << "]\n";
  return os.str();
}

// Caps in the expected block: {0: 123, cpu: 456.0}; compared exactly in bits.
std::string caps_mismatch(const YAML::Node& expected, const MaxMemory& actual) {
  if (!expected.IsDefined() || expected.IsNull()) return "";
  std::ostringstream os;
  size_t count = 0;
  for (const auto& kv : expected) {
    ++count;
    auto dev = parse_device(kv.first.Scalar());
    const double want = std::stod(kv.second.Scalar());
    const std::optional<Bits> got = dev ? actual.get(*dev) : std::nullopt;
    const std::string got_text = got.has_value() ? format_bits_as_bytes(got.value()) : std::string("none");
    if (!got.has_value() || static_cast<double>(got.value()) != want * 8.0) {
      os << " " << kv.first.Scalar() << ": want " << kv.second.Scalar() << " got " << got_text;
    }
  }
  if (count != actual.entries().size()) os << " (device count differs)";
  return os.str();
}

// The model_type of a case or listing file (its `model:` mapping), "" when not given inline.
std::string model_type_of(const fs::path& f) {
  const YAML::Node root = load_yaml_file(f.string());
  const YAML::Node m = root["model"];
  return m.IsMap() && m["model_type"].IsScalar() ? m["model_type"].Scalar() : "";
}

bool supported(const std::string& model_type) {
  const auto& known = supported_model_types();
  return std::find(known.begin(), known.end(), model_type) != known.end();
}

// Files of `dir` whose family dmap builds; the others are counted (families still to come).
std::vector<fs::path> supported_files(const fs::path& dir, int& unsupported) {
  std::vector<fs::path> out;
  unsupported = 0;
  for (const auto& f : yaml_files(dir)) {
    if (supported(model_type_of(f))) {
      out.push_back(f);
    } else {
      ++unsupported;
    }
  }
  return out;
}

void check_module_sizes(const std::vector<fs::path>& files) {
  for (const auto& f : files) {
    const YAML::Node root = load_yaml_file(f.string());
    const ModelSpec spec = model_spec_from_node(root["model"], f.string());
    const ModuleTree tree = build_module_tree(spec);
    const DType dtype = *parse_dtype(root["dtype"].Scalar());

    struct Listing {
      const char* key;
      SizingRule rule;
    };
    for (const Listing& l :
         {Listing{"accelerate", SizingRule::kAccelerate}, Listing{"transformers_v5", SizingRule::kTransformersV5}}) {
      SizingOptions so;
      so.rule = l.rule;
      so.dtype = dtype;
      const ModuleSizes sizes = compute_module_sizes(tree, so);
      const YAML::Node listing = root[l.key];
      REQUIRE(listing.IsSequence());
      std::vector<std::string> got_order;
      for (int id : sizes.order) got_order.push_back(tree.node(id).name);
      std::vector<std::string> want_order;
      int mismatches = 0;
      for (const auto& kv : listing) {
        const std::string name = kv[0].Scalar();
        want_order.push_back(name);
        const int id = tree.find(name);
        const double want = std::stod(kv[1].Scalar());
        if (id < 0 || static_cast<double>(sizes.of(id)) != want * 8.0) {
          if (++mismatches <= 5) {
            UNSCOPED_INFO(f.filename().string()
                          << " " << l.key << ": " << name << " want " << kv[1].Scalar() << " got "
                          << (id < 0 ? std::string("missing") : format_bits_as_bytes(sizes.of(id))));
          }
        }
      }
      CHECK(mismatches == 0);
      CHECK(got_order == want_order);
    }
    // v5's second mapping: bytes held directly by each tensor-owning module.
    SizingOptions so;
    so.rule = SizingRule::kTransformersV5;
    so.dtype = dtype;
    const ModuleSizes sizes = compute_module_sizes(tree, so);
    std::vector<std::pair<std::string, double>> got, want;
    for (const auto& [id, bits] : sizes.direct) got.emplace_back(tree.node(id).name, static_cast<double>(bits) / 8.0);
    for (const auto& kv : root["transformers_v5_leaves"]) want.emplace_back(kv[0].Scalar(), std::stod(kv[1].Scalar()));
    INFO(f.filename().string());
    CHECK(got == want);
  }
}

}  // namespace

TEST_CASE("module sizes match accelerate and transformers v5 listings", "[conformance]") {
  const fs::path dir = cases_root() / "module_sizes";
  if (skip_if_absent(dir)) return;
  const auto files = yaml_files(dir);
  REQUIRE(!files.empty());
  check_module_sizes(files);
}

// The 2025-2026 families (qwen3, phi3, olmo2, gemma2, granite, and the MoE families).
TEST_CASE("module sizes of the 2025-2026 families match their listings", "[conformance]") {
  const fs::path dir = cases_root() / "families2026" / "module_sizes";
  if (skip_if_absent(dir)) return;
  int unsupported = 0;
  const auto files = supported_files(dir, unsupported);
  std::cout << "families2026 module sizes: " << files.size() << " listings checked, " << unsupported
            << " of families dmap does not build yet\n";
  REQUIRE(files.size() >= 5);
  check_module_sizes(files);
}

namespace {

// clean_device_map appends the parents it merges at the end of the map, visiting siblings in
// Python set order (string-hash order, docs/ACCELERATE.md §4.5): when merges happen in two subtrees
// (two split layers' experts modules), their relative order changes from run to run, and a case
// generated in one run may not be flagged unstable. True when the maps agree up to a trailing
// block that is such an appended block — out of placement order (its first entry precedes, in
// the tree's registration order, the entry before it) — and the same entries in both.
bool merged_block_in_hash_order(const ModuleTree& tree, const std::vector<std::pair<std::string, std::string>>& want,
                                const std::vector<std::pair<std::string, std::string>>& got) {
  if (want.size() != got.size()) return false;
  size_t k = 0;
  while (k < want.size() && want[k] == got[k]) ++k;
  if (k == 0 || k == want.size()) return false;
  auto a = std::vector(want.begin() + static_cast<long>(k), want.end());
  auto b = std::vector(got.begin() + static_cast<long>(k), got.end());
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  if (a != b) return false;
  auto order = [&](const std::string& name) { return name.empty() ? 0 : tree.find(name); };
  for (const auto* m : {&want, &got}) {
    if (order((*m)[k].first) < 0 || order((*m)[k].first) >= order((*m)[k - 1].first)) return false;
  }
  return true;
}

// Runs every case file; returns how many were exact (failures are reported and checked).
int check_cases(const std::vector<fs::path>& files) {
  const std::string models_dir = (fs::path(DMAP_SOURCE_DIR) / "configs" / "models").string();
  int passed = 0;
  std::vector<std::string> failures;
  for (const auto& f : files) {
    std::ostringstream why;
    try {
      const Scenario sc = load_scenario(f.string(), models_dir);
      const ModuleTree tree = build_module_tree(sc.model);
      const PlanRequest req = plan_request_for(sc, tree);
      const PlanResult res = plan_device_map(req);
      auto want = expected_pairs(sc.expected["device_map"]);
      auto got = actual_pairs(res.device_map);
      const bool stable =
          !sc.expected["device_map_order_stable"].IsDefined() || sc.expected["device_map_order_stable"].as<bool>();
      if (!stable) {
        std::sort(want.begin(), want.end());
        std::sort(got.begin(), got.end());
      } else if (want != got && merged_block_in_hash_order(tree, want, got)) {
        got = want;
      }
      if (want != got) why << "  device_map differs\n  want:\n" << render(want) << "  got:\n" << render(got);
      const std::string b = caps_mismatch(sc.expected["balanced_max_memory"], res.balanced_max_memory);
      if (!b.empty()) why << "  balanced_max_memory:" << b << "\n";
      const std::string e = caps_mismatch(sc.expected["effective_max_memory"], res.effective_max_memory);
      if (!e.empty()) why << "  effective_max_memory:" << e << "\n";
    } catch (const std::exception& ex) {
      why << "  threw: " << ex.what() << "\n";
    }
    if (why.str().empty()) {
      ++passed;
    } else {
      failures.push_back(f.filename().string() + "\n" + why.str());
    }
  }
  for (const auto& fail : failures) UNSCOPED_INFO(fail);
  CHECK(failures.empty());
  return passed;
}

}  // namespace

TEST_CASE("every accelerate case is reproduced exactly", "[conformance]") {
  const fs::path dir = cases_root() / "cases";
  if (skip_if_absent(dir)) return;
  const auto files = yaml_files(dir);
  REQUIRE(!files.empty());
  const int passed = check_cases(files);
  std::cout << "accelerate cases: " << passed << " of " << files.size() << " exact\n";
}

TEST_CASE("every case of the 2025-2026 families dmap builds is reproduced exactly", "[conformance]") {
  const fs::path dir = cases_root() / "families2026" / "cases";
  if (skip_if_absent(dir)) return;
  int unsupported = 0;
  const auto files = supported_files(dir, unsupported);
  REQUIRE(files.size() >= 50);
  const int passed = check_cases(files);
  std::cout << "families2026 cases: " << passed << " of " << files.size() << " exact (" << unsupported
            << " of families dmap does not build yet)\n";
}

// The sweeps list, per interval, the map and its byte-exact ends. We require: the map at every
// interval's last cap; and at every first cap, that the previous interval's map has ended.
// At 48 first caps of the two Llama sweeps the planner (following accelerate's code step by step:
// a split layer's norms, or a split attention's k_proj, still going to cpu) yields a short-lived
// intermediate map the sweep does not list (16 KiB / 8 MiB wide); those are counted, not hidden.
TEST_CASE("cap sweeps: every byte-exact interval boundary gives its map", "[conformance]") {
  const fs::path dir = cases_root() / "sweeps";
  if (skip_if_absent(dir)) return;
  const auto files = yaml_files(dir);
  REQUIRE(!files.empty());
  int checked = 0, intermediate = 0;
  std::vector<std::string> failures;
  for (const auto& f : files) {
    const YAML::Node root = load_yaml_file(f.string());
    const ModelSpec spec = model_spec_from_node(root["model"], f.string());
    const ModuleTree tree = build_module_tree(spec);
    const DType dtype = *parse_dtype(root["dtype"].Scalar());
    const YAML::Node tmpl = root["max_memory_template"];
    auto map_at = [&](int64_t cap) {
      PlanRequest req;
      req.tree = &tree;
      req.entry = Entry::kInferAutoDeviceMap;
      req.dtype = dtype;
      for (const auto& kv : tmpl) {
        const Device d = *parse_device(kv.first.Scalar());
        req.max_memory.set(d, bytes_to_bits(kv.second.Scalar() == "<cap>" ? cap : kv.second.as<int64_t>()));
      }
      if (root["no_split_module_classes"].IsDefined() && !root["no_split_module_classes"].IsNull()) {
        req.no_split = root["no_split_module_classes"].as<std::vector<std::string>>();
      }
      return actual_pairs(plan_device_map(req).device_map);
    };
    std::vector<std::pair<std::string, std::string>> previous;
    for (const auto& interval : root["intervals"]) {
      const auto want = expected_pairs(interval["device_map"]);
      const int64_t first = interval["first_cap"].as<int64_t>();
      const int64_t last = interval["last_cap"].as<int64_t>();
      const auto at_last = map_at(last);
      const auto at_first = map_at(first);
      checked += 2;
      if (at_last != want) failures.push_back(f.filename().string() + " last_cap=" + std::to_string(last));
      if (!previous.empty() && at_first == previous) {
        failures.push_back(f.filename().string() + " previous map still at first_cap=" + std::to_string(first));
      }
      if (at_first != want) ++intermediate;
      previous = want;
    }
  }
  for (const auto& fail : failures) UNSCOPED_INFO(fail);
  std::cout << "sweep boundaries checked: " << checked << " (" << intermediate
            << " first caps open a short intermediate map the sweep does not list)\n";
  CHECK(failures.empty());
}
