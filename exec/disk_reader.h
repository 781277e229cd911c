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

// pread(fd, dst, bytes, offset) by up to `threads` threads, one contiguous slice each (split at
// 4 KiB boundaries; one thread below 256 KiB a slice): how DiskReader reads a tensor warm.
// RuntimeFailure naming the tensor and file when a read fails or the file ends early.
void pread_in_slices(int fd, uint64_t offset, uint8_t* dst, size_t bytes, int threads, const std::string& name,
                     const std::string& file);

// memcpy(dst, src, bytes) by up to `threads` threads, one contiguous slice each (the same split):
// how DiskReader copies a large tensor warm out of its file's map.
void copy_in_slices(uint8_t* dst, const uint8_t* src, size_t bytes, int threads);

// Warm tensors from this size on are copied out of the file's map instead of read by pread(), which
// was slower for them — likely (not verified) because glibc's memcpy streams copies this large past
// the caches and the kernel's copy does not. Measured on the AMD EPYC VM (2026-12-07,
// Qwen3-30B-A3B's 4-layer validation model, the fused experts of 2 layers on disk, 400-800 MB
// tensors in bfloat16, 2 interleaved pairs): copying took 124 and 308 ms per token by pread against
// 88 and 73 out of the map. Sizes between 44 MiB (pread no slower) and 400 MB were not measured.
constexpr size_t kMapCopyBytes = size_t{64} << 20;

// Reads disk-offloaded tensors from their files into the caller's host buffer, every forward,
// as accelerate re-reads offloaded weights (through np.memmap / safetensors' mmap). Each file is
// opened and memory-mapped once for the reader's lifetime.
//
// Warm (served by the page cache), a tensor is read with pread() by the executor's threads
// together, one contiguous slice each (from kMapCopyBytes on, copied out of the map by them).
// Measured on the 2-vCPU AMD EPYC VM (2026-12-07, dmap run --cold-start, 4 interleaved pairs,
// medians): against copying out of the file's map, decode 1.14x faster with TinyLlama bfloat16 6/22
// layers on disk (65.4 -> 57.6 ms/token; copies 22.6 -> 15.7) and 1.18x with Qwen3-0.6B float32
// 14/28 (75.5 -> 64.2). Out of the map, the first copy of each module ran at a third of the others'
// rate, whichever tensor it was (the cause is not pinned down; the kernel's copy goes through its
// own mapping of the cache, not this process's map of the file); by pread() it runs at 0.6 of the
// others' rate. One thread alone is also slower: it copied 18.7 GB/s out of the map with the other
// asleep and as little as 3.6 GB/s while the other spun as a libgomp worker does; two copied 34.2
// GB/s.
//
// Cold-disk runs unmap the tensor's pages, evict them from the page cache and read them back
// through the map by one thread (see read()).
//
// The dense layers' decode products (fewer than 16 rows of x) do not read whole tensors here: each
// thread reads chunks of rows through open() / read_part() and multiplies each at once
// (CpuModel::linear_streamed); the figures above were measured before that, on whole reads.
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
  // For a caller that reads a tensor in parts from its own threads (CpuModel's streamed products):
  // open(r) opens and maps r's file (RuntimeFailure as read()) and checks that it holds r's bytes;
  // read_part then preads `bytes` of r from byte `from` of the tensor into dst by the calling thread
  // and may run on several threads at once (it only reads the reader). It returns "" or why it
  // failed (the caller throws outside its parallel region); its reads are counted by count().
  void open(const WeightRef& r);
  std::string read_part(const WeightRef& r, size_t from, size_t bytes, void* dst) const;
  void count(uint64_t bytes, double seconds) {
    bytes_read_ += bytes;
    seconds_reading_ += seconds;
  }
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
  // map_file and the check that the file holds r's bytes.
  const Mapped& checked(const WeightRef& r);
  std::map<std::string, Mapped> files_;
  uint64_t bytes_read_ = 0;
  double seconds_reading_ = 0;
};

}  // namespace dmap::exec
