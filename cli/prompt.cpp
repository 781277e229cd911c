// The prompt flags (see prompt.h).
#include "cli/prompt.h"

#include <charconv>
#include <random>

#include "core/error.h"
#include "core/yaml_io.h"

namespace dmap::cli {

std::vector<int32_t> parse_ids(const std::string& text, const std::string& origin) {
  std::vector<int32_t> out;
  if (text.find(",,") != std::string::npos || (!text.empty() && (text.front() == ',' || text.back() == ','))) {
    throw InputError(origin + ": an empty token id in '" + text.substr(0, 60) + "'");
  }
  for (const auto& part : split_commas(text)) {
    if (!is_int_literal(part)) throw InputError(origin + ": not a token id: '" + part.substr(0, 60) + "'");
    int64_t v = -1;
    const auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (ec != std::errc() || ptr != part.data() + part.size() || v < 0 || v > 0x7fffffff) {
      throw InputError(origin + ": token id out of range (0 to 2147483647): " + part.substr(0, 60));
    }
    out.push_back(static_cast<int32_t>(v));
  }
  if (out.empty()) throw InputError(origin + ": no token ids");
  return out;
}

std::vector<int32_t> read_prompt(const Args& args, int64_t vocab, int64_t seed) {
  std::vector<int32_t> prompt;
  if (auto ids = args.get("prompt-ids")) {
    prompt = parse_ids(*ids, "--prompt-ids");
  } else if (auto f = args.get("prompt-file")) {
    const YAML::Node n = load_yaml_file(*f);
    const YAML::Node list = n.IsMap() ? n["prompt_ids"] : n;
    if (!list.IsDefined() || !list.IsSequence() || list.size() == 0)
      fail_at(*f, n, "expected a JSON list of token ids (or {\"prompt_ids\": [...]})");
    for (const auto& v : list) {
      const int64_t id = yaml_int(*f, v, "token id");
      if (id < 0 || id >= vocab)
        fail_at(*f, v,
                "token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(vocab - 1) + ")");
      prompt.push_back(static_cast<int32_t>(id));
    }
  } else {
    const int64_t p = integer_flag(args, "prompt-tokens", 16, 1, kMaxTokensFlag);
    std::mt19937_64 rng(static_cast<uint64_t>(seed) + 1);
    for (int64_t i = 0; i < p; ++i) prompt.push_back(static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab)));
  }
  for (int32_t id : prompt) {
    if (id >= vocab)
      throw InputError("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                       std::to_string(vocab - 1) + ")");
  }
  return prompt;
}

}  // namespace dmap::cli
