// Formatting of errors.
#include "core/error.h"

#include <algorithm>

namespace dmap {

namespace {
std::string compose(const std::string& file, int line, int column, const std::string& message) {
  std::string out;
  out.reserve(file.size() + message.size() + 24);
  if (!file.empty()) {
    out.append(file);
    if (line > 0) {
      out.append(":").append(std::to_string(line));
      if (column > 0) out.append(":").append(std::to_string(column));
    }
    out.append(": ");
  }
  out.append(message);
  return out;
}
}  // namespace

InputError::InputError(std::string file, int line, int column, std::string message)
    : std::runtime_error(compose(file, line, column, message)),
      text_(compose(file, line, column, message)),
      file_(std::move(file)),
      line_(line),
      column_(column),
      message_(std::move(message)) {}

std::string printable(const std::string& text) {
  // A message quotes user text; a quote that escaped its limit must not flood the terminal.
  constexpr size_t kLimit = 4096;
  std::string out;
  out.reserve(std::min(text.size(), kLimit));
  for (size_t i = 0; i < text.size() && i < kLimit; ++i) {
    const char ch = text[i];
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\n') || c == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out.append("\\x").push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    } else {
      out.push_back(ch);
    }
  }
  if (text.size() > kLimit) out.append(" ... (" + std::to_string(text.size()) + " characters; cut)");
  return out;
}

void throw_check_failure(const char* expr, const char* file, int line, const std::string& msg) {
  throw InternalError(std::string("internal check failed: ") + expr + " at " + file + ":" + std::to_string(line) +
                      ": " + msg);
}

}  // namespace dmap
