// The two error kinds dmap distinguishes, and the always-on invariant check.
// InputError: the user's input is wrong (exit code 2). It names the file, the line and
// column where known (1-based; 0 = unknown), and what is wrong.
// RuntimeFailure: the input is fine but something at run time failed (exit code 1).
#pragma once

#include <stdexcept>
#include <string>

namespace dmap {

class InputError : public std::runtime_error {
 public:
  InputError(std::string file, int line, int column, std::string message);
  explicit InputError(std::string message) : InputError("", 0, 0, std::move(message)) {}

  const std::string& file() const { return file_; }
  int line() const { return line_; }
  int column() const { return column_; }
  const std::string& message() const { return message_; }
  // "file:line:col: message", whole (what() stops at a NUL byte that user text may carry).
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  std::string file_;
  int line_;
  int column_;
  std::string message_;
};

class RuntimeFailure : public std::runtime_error {
 public:
  explicit RuntimeFailure(const std::string& message) : std::runtime_error(message), text_(message) {}
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

// `text` with every control character but the newline, and DEL, written as \xNN, so that
// user text in a message can neither hide part of it (NUL) nor drive the terminal (ESC); cut
// after 4096 characters.
std::string printable(const std::string& text);

// An internal invariant was broken: a bug in dmap, not the user's fault.
class InternalError : public std::logic_error {
 public:
  explicit InternalError(const std::string& message) : std::logic_error(message) {}
};

[[noreturn]] void throw_check_failure(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace dmap

// Always-on invariant check (never compiled out, unlike assert).
#define DMAP_CHECK(cond, msg)                                                   \
  do {                                                                          \
    if (!(cond)) ::dmap::throw_check_failure(#cond, __FILE__, __LINE__, (msg)); \
  } while (0)
