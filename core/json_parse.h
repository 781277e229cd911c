// A strict JSON reader (RFC 8259) for untrusted input such as safetensors headers: a small
// DOM, integers kept exact (int64), nesting depth bounded, every error a message with the byte
// offset. No recursion deeper than `max_depth`, no reads past the end.
//
// Example:
//   JsonValue v = parse_json(text, "model.safetensors header");   // throws InputError
//   const JsonValue* shape = v.find("shape");
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dmap {

struct JsonValue {
  enum class Kind { kNull, kBool, kInt, kDouble, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  bool b = false;
  int64_t i = 0;
  double d = 0;
  std::string s;
  std::vector<JsonValue> items;   // array elements; object values (aligned with keys)
  std::vector<std::string> keys;  // object keys, in file order

  const JsonValue* find(std::string_view key) const;  // first member named key, or nullptr
  bool is_int() const { return kind == Kind::kInt; }
};

// Parses one JSON value filling all of `text` (whitespace around it allowed). Throws
// InputError(origin, 0, 0, "...at byte N") on any error, including duplicate object keys.
JsonValue parse_json(std::string_view text, const std::string& origin, int max_depth = 64);

}  // namespace dmap
