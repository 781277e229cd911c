#include "profile/llama_probe.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/json_parse.h"
#include "core/stats.h"
#include "profile/subprocess.h"

#ifndef DMAP_LLAMA_PROBE_PATH
#define DMAP_LLAMA_PROBE_PATH ""
#endif

namespace dmap::profile {
namespace {

namespace fs = std::filesystem;

fs::path scratch_file(const std::string& dir, const char* what) {
  static std::atomic<int> serial{0};
  const fs::path d = dir.empty() ? fs::temp_directory_path() : fs::path(dir);
  std::string name = "dmap_llama_";
  name.append(what).append("_").append(std::to_string(::getpid())).append("_").append(std::to_string(serial++));
  return d / (name + ".json");
}

std::string run_to_json(const std::vector<std::string>& argv, const fs::path& out, const std::string& what) {
  std::vector<std::string> a = argv;
  a.push_back("--out");
  a.push_back(out.string());
  const int rc = run_command(a, false);
  std::error_code ec;
  if (rc != 0) {
    fs::remove(out, ec);
    std::string cmd;
    for (const auto& s : argv) cmd += (cmd.empty() ? "" : " ") + s;
    throw RuntimeFailure("the llama.cpp probe (" + cmd + ") failed with exit status " + std::to_string(rc) + " (" +
                         what + ")");
  }
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  fs::remove(out, ec);
  return text.str();
}

const JsonValue& need(const JsonValue& v, const char* key, const std::string& origin) {
  const JsonValue* n = v.find(key);
  if (!n) throw InputError(origin, 0, 0, std::string("the llama.cpp probe's output lacks '") + key + "'");
  return *n;
}

double number(const JsonValue& v, const char* key, const std::string& origin) {
  if (v.kind == JsonValue::Kind::kInt) return static_cast<double>(v.i);
  if (v.kind != JsonValue::Kind::kDouble) throw InputError(origin, 0, 0, std::string(key) + ": expected a number");
  return v.d;
}

}  // namespace

double LlamaProbe::prefill() const {
  std::vector<double> v;
  for (const auto& r : rounds) v.push_back(r.prefill_s);
  return median(v);
}
double LlamaProbe::decode() const {
  std::vector<double> v;
  for (const auto& r : rounds) v.push_back(r.decode_s);
  return median(v);
}

LlamaProbe parse_llama_probe(const std::string& json, const std::string& origin) {
  const JsonValue root = parse_json(json, origin);
  if (root.kind != JsonValue::Kind::kObject) throw InputError(origin, 0, 0, "the probe's output must be an object");
  LlamaProbe p;
  const JsonValue& version = need(root, "llama_cpp", origin);
  const JsonValue& system = need(root, "system", origin);
  if (version.kind != JsonValue::Kind::kString || system.kind != JsonValue::Kind::kString) {
    throw InputError(origin, 0, 0, "llama_cpp and system: expected strings");
  }
  p.version = version.s;
  p.system = system.s;
  p.threads = static_cast<int>(number(need(root, "threads", origin), "threads", origin));
  p.prompt = static_cast<int64_t>(number(need(root, "prompt", origin), "prompt", origin));
  p.new_tokens = static_cast<int64_t>(number(need(root, "new_tokens", origin), "new_tokens", origin));
  const JsonValue& rounds = need(root, "rounds", origin);
  if (rounds.kind != JsonValue::Kind::kArray || rounds.items.empty()) {
    throw InputError(origin, 0, 0, "rounds: expected a non-empty list");
  }
  for (const JsonValue& r : rounds.items) {
    LlamaRound x;
    x.prefill_s = number(need(r, "prefill_s", origin), "prefill_s", origin);
    x.decode_s = number(need(r, "decode_s", origin), "decode_s", origin);
    if (!(x.prefill_s > 0 && x.prefill_s < 1e5) || !(x.decode_s > 0 && x.decode_s < 1e5)) {
      throw InputError(origin, 0, 0, "rounds: times in seconds expected");
    }
    p.rounds.push_back(x);
  }
  return p;
}

bool llama_probe_available() {
  if (const char* env = std::getenv("DMAP_LLAMA_PROBE"); env && *env) return ::access(env, X_OK) == 0;
  return *DMAP_LLAMA_PROBE_PATH && ::access(DMAP_LLAMA_PROBE_PATH, X_OK) == 0;
}

std::string find_llama_probe() {
  if (const char* env = std::getenv("DMAP_LLAMA_PROBE"); env && *env) {
    if (::access(env, X_OK) != 0) throw RuntimeFailure(std::string("DMAP_LLAMA_PROBE=") + env + " is not executable");
    return env;
  }
  if (*DMAP_LLAMA_PROBE_PATH && ::access(DMAP_LLAMA_PROBE_PATH, X_OK) == 0) return DMAP_LLAMA_PROBE_PATH;
  throw RuntimeFailure(
      "the llama.cpp runtime needs dmap's llama.cpp probe, which this build lacks: scripts/setup.sh installs "
      "node-llama-cpp's prebuilt llama.cpp (npm ci in probes/llama_cpp) and the build then makes build/llama_probe; "
      "or set DMAP_LLAMA_PROBE");
}

LlamaProbe run_llama_probe(const LlamaProbeOptions& opt) {
  const fs::path out = scratch_file(opt.scratch_dir, "probe");
  std::vector<std::string> argv = {opt.probe,      opt.gguf,
                                   "--threads",    std::to_string(opt.threads),
                                   "--prompt",     std::to_string(opt.prompt),
                                   "--new-tokens", std::to_string(opt.new_tokens),
                                   "--rounds",     std::to_string(opt.rounds)};
  if (opt.no_mmap) argv.push_back("--no-mmap");
  const std::string json = run_to_json(argv, out, "timing " + opt.gguf);
  return parse_llama_probe(json, "the llama.cpp probe's output (" + out.string() + ")");
}

std::vector<LlamaMatvec> run_llama_matvec(const std::string& probe, const std::vector<LlamaMatvecShape>& shapes,
                                          int threads, int rounds, const std::string& scratch_dir) {
  std::string spec;
  for (const auto& s : shapes) {
    if (!spec.empty()) spec += ',';
    spec += s.type + ":" + std::to_string(s.n) + ":" + std::to_string(s.k);
  }
  const fs::path out = scratch_file(scratch_dir, "matvec");
  const std::string origin = "the llama.cpp probe's products (" + out.string() + ")";
  const JsonValue root = parse_json(
      run_to_json({probe, "--matvec", spec, "--threads", std::to_string(threads), "--rounds", std::to_string(rounds)},
                  out, "one-row products"),
      origin);
  const JsonValue& list = need(root, "matvec", origin);
  if (list.kind != JsonValue::Kind::kArray || list.items.size() != shapes.size()) {
    throw InputError(origin, 0, 0, "matvec: expected one entry per shape");
  }
  std::vector<LlamaMatvec> v;
  for (const JsonValue& e : list.items) {
    LlamaMatvec m;
    const JsonValue& type = need(e, "type", origin);
    if (type.kind != JsonValue::Kind::kString) throw InputError(origin, 0, 0, "matvec: type must be a string");
    m.type = type.s;
    m.n = static_cast<int64_t>(number(need(e, "n", origin), "n", origin));
    m.k = static_cast<int64_t>(number(need(e, "k", origin), "k", origin));
    m.seconds = number(need(e, "s", origin), "s", origin);
    m.gbs = number(need(e, "gbs", origin), "gbs", origin);
    if (!(m.seconds > 0) || !(m.gbs > 0)) throw InputError(origin, 0, 0, "matvec: positive times expected");
    v.push_back(m);
  }
  return v;
}

std::vector<float> llama_logits(const std::string& probe, const std::string& gguf, const std::vector<int32_t>& ids,
                                const std::string& scratch_dir) {
  std::string list;
  for (int32_t t : ids) {
    if (!list.empty()) list += ',';
    list += std::to_string(t);
  }
  const fs::path out = scratch_file(scratch_dir, "logits");
  const std::string origin = "the llama.cpp probe's logits (" + out.string() + ")";
  const JsonValue root = parse_json(run_to_json({probe, gguf, "--threads", "1", "--logits", list}, out, gguf), origin);
  const JsonValue& l = need(root, "logits", origin);
  if (l.kind != JsonValue::Kind::kArray) throw InputError(origin, 0, 0, "logits: expected a list");
  std::vector<float> v;
  for (const JsonValue& x : l.items) v.push_back(static_cast<float>(number(x, "logits", origin)));
  return v;
}

}  // namespace dmap::profile
