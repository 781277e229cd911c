// The prompt of `dmap run` and friends: --prompt-ids 1,2,3, --prompt-file (a JSON list of ids or a
// reference.json with "prompt_ids"), else --prompt-tokens P seeded random ids. Every id is checked
// against the vocabulary; errors are InputErrors naming the flag or the file and line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cli/args.h"

namespace dmap::cli {

// "1,2,3" as token ids (0 .. 2^31-1); `origin` names the flag in errors.
std::vector<int32_t> parse_ids(const std::string& text, const std::string& origin);

// The prompt the flags ask for, for a model of `vocab` tokens; random ids are drawn with `seed`.
std::vector<int32_t> read_prompt(const Args& args, int64_t vocab, int64_t seed);

}  // namespace dmap::cli
