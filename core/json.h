// A small streaming JSON writer (RFC 8259 output: valid UTF-8 passed through, invalid bytes as
// U+FFFD, control characters escaped).
//
// Example:
//   JsonWriter w;
//   w.begin_object(); w.key("device_map"); w.begin_array(); ... w.end_array(); w.end_object();
//   std::cout << w.str();
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dmap {

class JsonWriter {
 public:
  explicit JsonWriter(bool pretty = false) : pretty_(pretty) {}

  void begin_object();
  void end_object();
  void begin_array();
  void end_array();
  void key(std::string_view k);
  void value(std::string_view s);
  void value(const char* s) { value(std::string_view(s)); }
  void value(int64_t v);
  void value(int v) { value(static_cast<int64_t>(v)); }
  void value(double v);
  void value(bool v);
  void null();
  // Inserts already-formatted JSON (e.g. an exact decimal produced elsewhere).
  void raw(std::string_view json);

  const std::string& str() const { return out_; }

  static std::string quote(std::string_view s);

 private:
  void before_value();
  void newline();

  std::string out_;
  std::vector<bool> first_;  // per open container: no element written yet
  bool pretty_;
  bool after_key_ = false;
};

}  // namespace dmap
