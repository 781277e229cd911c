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

// memcpy(dst, src, bytes) by up to `threads` threads, one contiguous slice each (split at 4 KiB
// boundaries; serial below 1 MiB a slice): how DiskReader copies a tensor out of its map.
void copy_in_slices(uint8_t* dst, const uint8_t* src, size_t bytes, int threads);

// Reads disk-offloaded tensors from their files, through a read-only memory map of each file
// kept for the reader's lifetime (as accelerate reads offloaded weights through np.memmap /
// safetensors' mmap), copied into the caller's host buffer. Cold-disk runs first unmap the
// tensor's pages and evict them from the page cache.
//
// A tensor of a few MiB or more is copied warm by the executor's threads together, one
// contiguous slice each (cold, by one thread: see read()). Measured on the 2-vCPU AMD EPYC VM
// (2026-12-07, a 512 MiB file warm in the page cache, 12 MiB tensors, medians of 9 interleaved
// passes): one thread copied 18.7 GB/s with the other asleep, and as little as 3.6 GB/s in some
// passes while the other spun (as a libgomp worker does between parallel regions); two threads
// copied 34.2 GB/s (min 29.9).
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
  // Copies `r`'s bytes into dst (weight_bytes(r.w) of room), warm with up to `threads` threads;
  // returns the bytes read. RuntimeFailure when the file cannot be opened or is shorter than the
  // tensor.
  size_t read(const WeightRef& r, void* dst, bool drop_page_cache, int threads = 1);
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
