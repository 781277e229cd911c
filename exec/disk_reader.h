// Reads disk-offloaded weights from their files (see DiskReader).
//
// Example:
//   DiskReader disk;
//   disk.read(weights.get("model.layers.3.mlp.up_proj.weight"), buffer, /*drop_page_cache=*/false);
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "exec/weights.h"

namespace dmap::exec {

// Reads disk-offloaded tensors from their files, through a read-only memory map of each file
// kept for the reader's lifetime (as accelerate reads offloaded weights through np.memmap /
// safetensors' mmap), copied into the caller's host buffer. Cold-disk runs first unmap the
// tensor's pages and evict them from the page cache.
//
// The maps ask for transparent huge pages (MADV_HUGEPAGE): page faults on such a map read ahead
// into 2 MiB page-cache folios, whereas one pread() of a whole cold tensor fills the cache with
// 4 KiB pages, whose later warm copies ran at 5.5-7.3 GB/s instead of 9 GB/s on the 2-vCPU
// VM, varying with how fragmented free memory was (docs/PERFORMANCE.md).
class DiskReader {
 public:
  DiskReader() = default;
  ~DiskReader();
  DiskReader(const DiskReader&) = delete;
  DiskReader& operator=(const DiskReader&) = delete;
  // Copies `r`'s bytes into dst (weight_bytes(r.w) of room); returns the bytes read.
  // RuntimeFailure when the file cannot be opened or is shorter than the tensor.
  size_t read(const WeightRef& r, void* dst, bool drop_page_cache);
  uint64_t bytes_read() const { return bytes_read_; }
  // Wall time spent in read() (page-cache copies, or device reads when cold).
  double seconds_reading() const { return seconds_reading_; }

 private:
  struct Mapped {
    int fd = -1;
    const uint8_t* data = nullptr;  // the whole file
    size_t size = 0;
  };
  const Mapped& map_file(const std::string& file);
  std::map<std::string, Mapped> files_;
  uint64_t bytes_read_ = 0;
  double seconds_reading_ = 0;
};

}  // namespace dmap::exec
