// Input-file checks (see input_file.h).
#include "core/input_file.h"

#include <filesystem>
#include <system_error>

#include "core/error.h"

namespace dmap {

namespace fs = std::filesystem;

void check_input_file(const std::string& path, int64_t max_bytes) {
  std::error_code ec;
  const fs::file_status link = fs::symlink_status(path, ec);
  if (ec || !fs::exists(link)) throw InputError(path, 0, 0, "cannot open: no such file");
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw InputError(path, 0, 0, "cannot open: a symbolic link to a missing file");
  if (fs::is_directory(st)) throw InputError(path, 0, 0, "cannot open: a folder, not a file");
  if (!fs::is_regular_file(st))
    throw InputError(path, 0, 0, "cannot open: not a regular file (a FIFO, socket or device)");
  if (max_bytes > 0) {
    const auto size = fs::file_size(path, ec);
    if (!ec && size > static_cast<uintmax_t>(max_bytes)) {
      throw InputError(path, 0, 0,
                       "is " + std::to_string(size >> 20) + " MiB, more than a config or scenario can be (" +
                           std::to_string(max_bytes >> 20) + " MiB)");
    }
  }
}

}  // namespace dmap
