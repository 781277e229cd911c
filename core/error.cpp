// Formatting of errors.
#include "core/error.h"

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
      file_(std::move(file)),
      line_(line),
      column_(column),
      message_(std::move(message)) {}

void throw_check_failure(const char* expr, const char* file, int line, const std::string& msg) {
  throw InternalError(std::string("internal check failed: ") + expr + " at " + file + ":" +
                      std::to_string(line) + ": " + msg);
}

}  // namespace dmap
