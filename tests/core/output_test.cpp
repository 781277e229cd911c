// Output paths and atomic writes (core/output.h): which names may become file names, that a
// file is replaced whole and leaves no temporary, and that a staged folder replaces its target
// whole on commit and leaves nothing when abandoned.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "core/output.h"

using namespace dmap;
namespace fs = std::filesystem;

namespace {

struct Scratch {
  fs::path path;
  Scratch() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("dmap_output_test_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int entries(const fs::path& dir) {
  int n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

}  // namespace

TEST_CASE("only plain names become file names", "[unit][core][output]") {
  for (const char* ok : {"llama31_8b_fp16_rtx3060", "a", "A-b.c_1", "x.yaml"}) CHECK(unsafe_name_reason(ok).empty());
  for (const char* bad : {"", ".", "..", "../escape", "a/b", ".hidden", "a b", "a\\b", "tab\there", "é"}) {
    INFO(bad);
    CHECK_FALSE(unsafe_name_reason(bad).empty());
  }
  CHECK(unsafe_name_reason(std::string(100, 'x')).empty());
  CHECK_FALSE(unsafe_name_reason(std::string(101, 'x')).empty());
  CHECK_FALSE(unsafe_name_reason(std::string("a\0b", 3)).empty());
  // Messages quote at most a prefix, with control bytes escaped.
  CHECK(quote_for_message(std::string(1000, 'y')) == "'" + std::string(60, 'y') + "' (1000 characters)");
  CHECK(quote_for_message(std::string("a\0\n", 3)) == "'a\\x00\\x0a'");
}

TEST_CASE("a file is replaced whole, through a temporary that does not stay", "[unit][core][output]") {
  Scratch s;
  const fs::path f = s.path / "golden.json";
  write_file_atomic(f.string(), "first");
  write_file_atomic(f.string(), "second");
  CHECK(read(f) == "second");
  CHECK(entries(s.path) == 1);
  CHECK_THROWS_AS(write_file_atomic((s.path / "missing" / "x.json").string(), "x"), RuntimeFailure);
  CHECK(entries(s.path) == 1);
}

TEST_CASE("an output folder is checked before any work", "[unit][core][output]") {
  Scratch s;
  CHECK_THROWS_WITH(check_output_folder("", "--out"), Catch::Contains("--out: an empty path"));
  std::ofstream(s.path / "file") << "x";
  CHECK_THROWS_WITH(check_output_folder((s.path / "file").string(), "--out"),
                    Catch::Contains("exists and is not a folder"));
  CHECK_THROWS_AS(check_output_folder((s.path / "file" / "below").string(), "--out"), InputError);
  check_output_folder((s.path / "new" / "deeper").string(), "--out");
  CHECK(fs::is_directory(s.path / "new" / "deeper"));
}

TEST_CASE("a staged folder replaces its target whole, or leaves nothing", "[unit][core][output]") {
  Scratch s;
  const fs::path target = s.path / "report";
  fs::create_directories(target);
  std::ofstream(target / "stale.svg") << "old";
  std::ofstream(target / "index.md") << "old";
  {
    StagedFolder abandoned(target.string());
    write_file_atomic(abandoned.path() + "/index.md", "never");
  }  // an error before commit: the target is as it was, the staging folder gone
  CHECK(read(target / "index.md") == "old");
  CHECK(entries(s.path) == 1);
  StagedFolder dir(target.string());
  write_file_atomic(dir.path() + "/index.md", "new");
  dir.commit();
  CHECK(read(target / "index.md") == "new");
  CHECK_FALSE(fs::exists(target / "stale.svg"));
  CHECK(entries(s.path) == 1);  // no staging or old folder left beside it
  StagedFolder fresh((s.path / "first_time").string());
  fresh.commit();
  CHECK(fs::is_directory(s.path / "first_time"));
}
