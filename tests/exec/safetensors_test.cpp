// The strict safetensors reader: valid files and shards load; every malformed input is an
// InputError naming the file (and the tensor), never a crash; random corruption of a valid file
// never escapes as anything but InputError (a CI-sized version of tests/fuzz/).
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "exec/safetensors.h"

using dmap::InputError;
using dmap::exec::Checkpoint;
using dmap::exec::SafetensorsFile;
using dmap::exec::StDType;

namespace fs = std::filesystem;

namespace {

std::vector<std::byte> make_file(const std::string& header, size_t data_bytes, uint8_t fill = 0x3f) {
  std::vector<std::byte> out(8 + header.size() + data_bytes);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, header.data(), header.size());
  for (size_t i = 0; i < data_bytes; ++i) out[8 + header.size() + i] = static_cast<std::byte>(fill + i);
  return out;
}

const std::string kGood = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                          R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]}})";

std::string parse_error(const std::string& header, size_t data_bytes) {
  const auto f = make_file(header, data_bytes);
  try {
    SafetensorsFile::parse(f.data(), f.size(), "t.safetensors");
  } catch (const InputError& e) {
    CHECK(e.file() == "t.safetensors");
    return e.message();
  }
  return "";
}

struct TempDir {
  fs::path dir;
  TempDir() {
    dir = fs::temp_directory_path() / ("dmap_st_" + std::to_string(::getpid()) + "_" + std::to_string(std::rand()));
    fs::create_directories(dir);
  }
  ~TempDir() { fs::remove_all(dir); }
  std::string write(const std::string& name, const std::vector<std::byte>& bytes) const {
    std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return (dir / name).string();
  }
};

}  // namespace

TEST_CASE("a valid file parses with shapes, dtypes, data and metadata", "[unit][exec][safetensors]") {
  const auto f = make_file(kGood, 32);
  auto st = SafetensorsFile::parse(f.data(), f.size(), "t.safetensors");
  REQUIRE(st->tensors().size() == 2);
  const auto* a = st->find("a");
  REQUIRE(a);
  CHECK(a->dtype == StDType::kF32);
  CHECK(a->shape == std::vector<int64_t>{2, 3});
  CHECK(a->numel() == 6);
  CHECK(a->bytes == 24);
  CHECK(std::to_integer<int>(a->data[0]) == 0x3f);
  const auto* b = st->find("b");
  REQUIRE(b);
  CHECK(std::to_integer<int>(b->data[0]) == 0x3f + 24);
  CHECK(st->metadata().at("format") == "pt");
  CHECK(st->find("c") == nullptr);
}

TEST_CASE("malformed files are InputErrors that say what is wrong", "[unit][exec][safetensors]") {
  CHECK_THAT(
      parse_error("", 0).substr(0, 0) +
          [] {
            std::vector<std::byte> tiny(5);
            try {
              SafetensorsFile::parse(tiny.data(), tiny.size(), "t.safetensors");
            } catch (const InputError& e) {
              return e.message();
            }
            return std::string();
          }(),
      Catch::Contains("shorter than the 8-byte header length"));
  {
    auto f = make_file(kGood, 32);
    f[0] = std::byte{0xff};  // header length far past the end
    f[1] = std::byte{0xff};
    f[2] = std::byte{0x01};
    try {
      SafetensorsFile::parse(f.data(), f.size(), "t.safetensors");
      FAIL("no error");
    } catch (const InputError& e) {
      CHECK_THAT(e.message(), Catch::Contains("runs past the end"));
    }
  }
  CHECK_THAT(parse_error("[1,2]", 0), Catch::Contains("not a JSON object"));
  CHECK_THAT(parse_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 8),
             Catch::Contains("malformed JSON"));
  CHECK_THAT(parse_error(R"({"a":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}})", 8),
             Catch::Contains("tensor 'a': unknown dtype 'F31'"));
  CHECK_THAT(parse_error(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
             Catch::Contains("tensor 'a': shape entries must be non-negative"));
  CHECK_THAT(parse_error(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
             Catch::Contains("tensor 'a': 8 bytes for F32 of 3 elements (needs 12)"));
  CHECK_THAT(parse_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4),
             Catch::Contains("tensor 'a': data_offsets end 8 lies past the data region"));
  CHECK_THAT(
      parse_error(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
          12),
      Catch::Contains("overlaps"));
  CHECK_THAT(parse_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
             Catch::Contains("hole in the data region before tensor 'a'"));
  CHECK_THAT(parse_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 10),
             Catch::Contains("2 bytes after the last tensor"));
  CHECK_THAT(
      parse_error(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
          16),
      Catch::Contains("duplicate key"));
  CHECK_THAT(parse_error(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
             Catch::Contains("overflows"));
  CHECK_THAT(parse_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8),
             Catch::Contains("not ordered"));
  CHECK_THAT(parse_error(R"({"a":{"dtype":"F32","shape":[2],"offsets":[0,8]}})", 8),
             Catch::Contains("unknown field 'offsets'"));
  CHECK_THAT(parse_error(R"({"__metadata__":{"k":1}})", 0), Catch::Contains("is not a string"));
}

TEST_CASE("files and shards load from disk; the checkpoint checks names, dtypes and shapes",
          "[unit][exec][safetensors]") {
  TempDir tmp;
  tmp.write("model-00001-of-00002.safetensors",
            make_file(R"({"w1":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}})", 8));
  tmp.write("model-00002-of-00002.safetensors",
            make_file(R"({"w2":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})", 4));
  const std::string idx =
      R"({"metadata":{"total_size":12},"weight_map":{"w1":"model-00001-of-00002.safetensors","w2":"model-00002-of-00002.safetensors"}})";
  std::ofstream(tmp.dir / "model.safetensors.index.json") << idx;
  const Checkpoint ck = Checkpoint::open(tmp.dir.string());
  CHECK(ck.names() == std::vector<std::string>{"w1", "w2"});
  CHECK(ck.require("w1", {2, 2}).dtype == StDType::kF16);
  CHECK_THROWS_WITH(ck.require("w1", {4}), Catch::Contains("has shape [2, 2], the model needs [4]"));
  CHECK_THROWS_WITH(ck.require("w2"), Catch::Contains("is I32; dmap runs F32, F16 and BF16"));
  CHECK_THROWS_WITH(ck.require("w3"), Catch::Contains("missing tensor 'w3'"));

  // An index naming a tensor its shard lacks, and one naming a missing shard.
  std::ofstream(tmp.dir / "model.safetensors.index.json")
      << R"({"weight_map":{"w1":"model-00001-of-00002.safetensors","w9":"model-00001-of-00002.safetensors"}})";
  CHECK_THROWS_WITH(Checkpoint::open(tmp.dir.string()), Catch::Contains("tensor 'w9' is listed for"));
  std::ofstream(tmp.dir / "model.safetensors.index.json") << R"({"weight_map":{"w1":"gone.safetensors"}})";
  CHECK_THROWS_WITH(Checkpoint::open(tmp.dir.string()),
                    Catch::Contains("gone.safetensors") && Catch::Contains("cannot open"));
  fs::remove(tmp.dir / "model.safetensors.index.json");
  CHECK_THROWS_WITH(Checkpoint::open(tmp.dir.string()), Catch::Contains("no model.safetensors"));
  // A single file.
  const std::string single = tmp.write("model.safetensors", make_file(kGood, 32));
  CHECK(Checkpoint::open(tmp.dir.string()).find("b") != nullptr);
  CHECK(Checkpoint::open(single).find("a")->numel() == 6);
  // An empty file.
  const std::string empty = tmp.write("empty.safetensors", {});
  CHECK_THROWS_WITH(Checkpoint::open(empty), Catch::Contains("shorter than the 8-byte header"));
}

TEST_CASE("random corruption of a valid file is either accepted or an InputError", "[unit][exec][safetensors][fuzz]") {
  const auto good = make_file(kGood, 32);
  std::mt19937 rng(1234);
  int accepted = 0, rejected = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<std::byte> f = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 4) {
        case 0: f[rng() % f.size()] = static_cast<std::byte>(rng() & 0xff); break;  // byte
        case 1: f.resize(rng() % (f.size() + 1)); break;                            // truncate
        case 2:
          if (!f.empty()) f.erase(f.begin() + static_cast<long>(rng() % f.size()));
          break;
        default:
          f.insert(f.begin() + static_cast<long>(rng() % (f.size() + 1)),
                   static_cast<std::byte>("{}[],:\"0123456789"[rng() % 17]));
      }
      if (f.empty()) break;
    }
    try {
      auto st = SafetensorsFile::parse(f.data(), f.size(), "fuzz");
      // Whatever was accepted must be internally consistent.
      for (const auto& t : st->tensors()) {
        REQUIRE(t.data >= f.data());
        REQUIRE(t.data + t.bytes <= f.data() + f.size());
        REQUIRE(t.bytes == static_cast<size_t>(t.numel()) * dmap::exec::st_dtype_size(t.dtype));
      }
      ++accepted;
    } catch (const InputError&) {
      ++rejected;
    }
  }
  CHECK(rejected > 1000);
  CHECK(accepted > 0);  // some edits (metadata bytes, data bytes) keep the file valid
}
