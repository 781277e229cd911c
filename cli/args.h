// A minimal command-line parser for the dmap subcommands: positional arguments, `--flag value`,
// `--flag=value` and boolean switches. Unknown flags are InputErrors (exit code 2).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace dmap::cli {

class Args {
 public:
  // `value_flags` take a value; `switches` do not. Both without the leading "--".
  Args(const std::vector<std::string>& argv, const std::set<std::string>& value_flags,
       const std::set<std::string>& switches);

  const std::vector<std::string>& positional() const { return positional_; }
  std::optional<std::string> get(const std::string& flag) const;
  bool has(const std::string& flag) const;

 private:
  std::vector<std::string> positional_;
  std::map<std::string, std::string> values_;
  std::set<std::string> switches_on_;
};

// The value of --flag as an integer in [min, max] (`fallback` when absent); anything else —
// not a number, trailing text, out of range, too large for 64 bits — is an InputError.
int64_t integer_flag(const Args& args, const char* flag, int64_t fallback, int64_t min, int64_t max);
// The same for a positive integer.
int64_t positive_flag(const Args& args, const char* flag, int64_t fallback);
// The same for a non-negative integer (0 allowed).
int64_t nonnegative_flag(const Args& args, const char* flag, int64_t fallback);

// Limits of the executor's workload flags (--batch, --prompt-tokens, --new-tokens): far beyond
// what a CPU or one GPU runs, small enough that no buffer size derived from them overflows.
constexpr int64_t kMaxBatchFlag = 4096;
constexpr int64_t kMaxTokensFlag = int64_t{1} << 20;

// --threads: 1 to 4 x the online cores (at least 4); the online cores when absent.
int threads_flag(const Args& args);

// "a,b,,c" -> {"a", "b", "c"}.
std::vector<std::string> split_commas(const std::string& text);

// --flag as comma-separated fractions in [0, 1) (`fallback`, the same form, when absent); anything
// else is an InputError naming the item.
std::vector<double> fractions_flag(const Args& args, const char* flag, const std::string& fallback);

// The directory holding preset model files: $DMAP_MODELS_DIR, else configs/models beside the
// binary's project, else the source tree's.
std::string models_dir();

// The configs/ folder (models/, hardware/, scenarios/, calibrations/): the parent of models_dir().
std::string config_dir();

}  // namespace dmap::cli
