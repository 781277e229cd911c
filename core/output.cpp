// Output paths and atomic writes (see output.h).
#include "core/output.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <system_error>

#include "core/error.h"
#include "core/interrupt.h"

namespace dmap {

namespace fs = std::filesystem;

namespace {

// A hidden sibling of `target`, unique to this process and call: `.<name>.<pid>.<n>.<kind>`.
// (Built with append: GCC 12 warns falsely on chains of operator+ here.)
fs::path sibling(const fs::path& target, const char* kind) {
  static std::atomic<unsigned> counter{0};
  std::string name(".");
  name.append(target.filename().string());
  name.append(".").append(std::to_string(::getpid()));
  name.append(".").append(std::to_string(counter++));
  name.append(".").append(kind);
  return target.parent_path() / name;
}

}  // namespace

std::string unsafe_name_reason(const std::string& name) {
  if (name.empty()) return "it is empty";
  if (name.size() > 100) return "it is longer than 100 characters";
  if (name == "." || name == "..") return "it names a folder ('.' or '..')";
  if (name.front() == '.') return "it starts with '.'";
  for (unsigned char c : name) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return "it holds a character other than letters, digits, '.', '_' and '-'";
  }
  return "";
}

std::string quote_for_message(const std::string& text, size_t limit) {
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < limit; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out.append(buf);
    }
  }
  out.append("'");
  if (text.size() > limit) out.append(" (" + std::to_string(text.size()) + " characters)");
  return out;
}

void check_output_folder(const std::string& dir, const std::string& what) {
  if (dir.empty()) throw InputError(what + ": an empty path");
  std::error_code ec;
  const fs::path p(dir);
  if (fs::exists(p, ec) && !fs::is_directory(p, ec))
    throw InputError(what + ": " + dir + " exists and is not a folder");
  fs::create_directories(p, ec);
  if (ec) throw InputError(what + ": cannot create " + dir + " (" + ec.message() + ")");
  if (::access(dir.c_str(), W_OK | X_OK) != 0) throw InputError(what + ": cannot write into " + dir);
}

void check_output_file(const std::string& path, const std::string& what) {
  if (path.empty()) throw InputError(what + ": an empty path");
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw InputError(what + ": " + path + " is a folder; give a file name");
  const fs::path p(path);
  check_output_folder(p.has_parent_path() ? p.parent_path().string() : ".", what);
}

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const fs::path target(path);
  const fs::path tmp = sibling(target, "tmp");
  const RemoveOnInterrupt guard(tmp.string());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    try {
      write(out);
    } catch (...) {
      out.close();
      std::error_code ec;
      fs::remove(tmp, ec);
      throw;
    }
    out.flush();
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw RuntimeFailure("cannot write " + tmp.string());
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw RuntimeFailure("cannot rename " + tmp.string() + " to " + path + ": " + ec.message());
  }
}

void write_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, [&](std::ostream& out) { out << text; });
}

StagedFolder::StagedFolder(std::string target) : target_(std::move(target)) {
  const fs::path t(target_);
  staging_ = sibling(t, "staging").string();
  std::error_code ec;
  guard_ = std::make_unique<RemoveOnInterrupt>(staging_);
  fs::create_directories(staging_, ec);
  if (ec) throw RuntimeFailure("cannot create " + staging_ + ": " + ec.message());
}

StagedFolder::~StagedFolder() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(staging_, ec);
}

void StagedFolder::commit() {
  const fs::path t(target_);
  const fs::path old = sibling(t, "old");
  std::error_code ec;
  const bool had = fs::exists(t, ec);
  if (had) {
    fs::rename(t, old, ec);
    if (ec) throw RuntimeFailure("cannot move " + target_ + " aside: " + ec.message());
  }
  fs::rename(staging_, t, ec);
  if (ec) {
    std::error_code ignored;
    if (had) fs::rename(old, t, ignored);  // put the previous folder back
    throw RuntimeFailure("cannot move " + staging_ + " to " + target_ + ": " + ec.message());
  }
  committed_ = true;
  if (had) fs::remove_all(old, ec);
}

}  // namespace dmap
