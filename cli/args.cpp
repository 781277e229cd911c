// Command-line parsing and config lookup.
#include "cli/args.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <limits>
#include <filesystem>

#include "core/error.h"
#include "core/output.h"
#include "core/yaml_io.h"

namespace dmap::cli {

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& value_flags,
           const std::set<std::string>& switches) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.rfind("--", 0) != 0 || a == "--") {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2);
    std::optional<std::string> inline_value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (switches.count(name)) {
      if (inline_value) throw InputError("option --" + name + " takes no value");
      switches_on_.insert(name);
    } else if (value_flags.count(name)) {
      if (inline_value) {
        values_[name] = *inline_value;
      } else {
        if (i + 1 >= argv.size()) throw InputError("option --" + name + " needs a value");
        values_[name] = argv[++i];
      }
    } else {
      throw InputError("unknown option --" + name + " (see --help)");
    }
  }
}

std::optional<std::string> Args::get(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

bool Args::has(const std::string& flag) const { return switches_on_.count(flag) > 0 || values_.count(flag) > 0; }

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t c = text.find(',', start);
    if (c == std::string::npos) c = text.size();
    if (c > start) out.push_back(text.substr(start, c - start));
    start = c + 1;
  }
  return out;
}

std::string models_dir() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("DMAP_MODELS_DIR")) return env;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path p = exe.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path()) {
      if (fs::is_directory(p / "configs" / "models", ec)) return (p / "configs" / "models").string();
    }
  }
#ifdef DMAP_SOURCE_DIR
  return std::string(DMAP_SOURCE_DIR) + "/configs/models";
#else
  return "configs/models";
#endif
}

std::string config_dir() { return std::filesystem::path(models_dir()).parent_path().string(); }

int64_t integer_flag(const Args& args, const char* flag, int64_t fallback, int64_t min, int64_t max) {
  auto v = args.get(flag);
  if (!v) return fallback;
  int64_t x = 0;
  const char* end = v->data() + v->size();
  const auto [ptr, ec] = std::from_chars(v->data(), end, x);
  const bool whole = ec == std::errc() && ptr == end && !v->empty();
  if (!whole || x < min || x > max) {
    std::string range = max == std::numeric_limits<int64_t>::max()
                            ? (min == 1   ? "a positive integer"
                               : min == 0 ? "a non-negative integer"
                                          : "an integer >= " + std::to_string(min))
                            : "an integer from " + std::to_string(min) + " to " + std::to_string(max);
    throw InputError(std::string("--") + flag + ": expected " + range + ", not " + quote_for_message(*v));
  }
  return x;
}

std::vector<double> fractions_flag(const Args& args, const char* flag, const std::string& fallback) {
  std::vector<double> out;
  for (const auto& s : split_commas(args.get(flag).value_or(fallback))) {
    double f = -1;
    try {
      size_t used = 0;
      f = std::stod(s, &used);
      if (used != s.size()) f = -1;
    } catch (...) {
    }
    if (!(f >= 0 && f < 1)) {
      throw InputError(std::string("--") + flag + ": " + quote_for_message(s) + " is not a fraction in [0, 1)");
    }
    out.push_back(f);
  }
  return out;
}

int64_t positive_flag(const Args& args, const char* flag, int64_t fallback) {
  return integer_flag(args, flag, fallback, 1, std::numeric_limits<int64_t>::max());
}

int64_t nonnegative_flag(const Args& args, const char* flag, int64_t fallback) {
  return integer_flag(args, flag, fallback, 0, std::numeric_limits<int64_t>::max());
}

int threads_flag(const Args& args) {
  const int64_t cores = std::max<long>(1, sysconf(_SC_NPROCESSORS_ONLN));
  return static_cast<int>(integer_flag(args, "threads", cores, 1, std::max<int64_t>(4, 4 * cores)));
}

}  // namespace dmap::cli
