// Every file dmap writes goes through here, so that no input can make it write outside the
// folder it was given and no error or kill leaves a half-written file or a mix of old and new
// files:
//   * names made from user input (a scenario's id) become file names only if they pass
//     `unsafe_name_reason` (letters, digits, '.', '_', '-'; 1-100 characters; not "." or "..",
//     not starting with '.');
//   * an output folder is checked before any work (`check_output_folder`);
//   * a file is written whole to a temporary beside it, unique per process and call, and
//     renamed into place (`write_file_atomic`);
//   * a folder of several files is built aside and swapped in whole (`StagedFolder`).
//
// Example:
//   check_output_folder(out, "--out");                  // InputError before any work
//   StagedFolder dir(out + "/" + id);
//   write_file_atomic(dir.path() + "/index.md", text);
//   dir.commit();                                      // out/id now holds exactly these files
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "core/interrupt.h"

namespace dmap {

// "" when `name` may be used as a file name; else what is wrong with it.
std::string unsafe_name_reason(const std::string& name);

// `text` cut to `limit` characters for an error message, with non-printable bytes escaped.
std::string quote_for_message(const std::string& text, size_t limit = 60);

// Creates `dir` if needed and checks that files can be created in it; InputError naming
// `what` (the flag or key that gave it) otherwise: an empty path, a file, no permission.
void check_output_folder(const std::string& dir, const std::string& what);

// Checks, before any work, that a file can be written at `path`: not empty, not a folder, its
// folder creatable and writable; InputError naming `what` otherwise.
void check_output_file(const std::string& path, const std::string& what);

// Writes `text` to `path` through a temporary file in the same folder, renamed into place;
// RuntimeFailure when that fails (the temporary is removed).
void write_file_atomic(const std::string& path, const std::string& text);
// The same with the contents streamed by `write` (large files: GGUF exports); whatever `write`
// throws removes the temporary and passes on.
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write);

// A folder built aside (`<parent>/.<name>.<pid>.<n>.staging`) and swapped in for `target` by
// commit(); removed, with whatever it holds, when not committed.
class StagedFolder {
 public:
  explicit StagedFolder(std::string target);
  ~StagedFolder();
  StagedFolder(const StagedFolder&) = delete;
  StagedFolder& operator=(const StagedFolder&) = delete;

  const std::string& path() const { return staging_; }
  // Replaces `target` (if any) by the staged folder.
  void commit();

 private:
  std::string target_, staging_;
  std::unique_ptr<RemoveOnInterrupt> guard_;  // an interrupt removes the staging folder
  bool committed_ = false;
};

}  // namespace dmap
