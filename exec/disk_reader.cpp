// Disk-offloaded weights read from their files (see disk_reader.h).
#include "exec/disk_reader.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <omp.h>
#include <unistd.h>

#include "core/error.h"
#include "exec/parallel.h"

namespace dmap::exec {

namespace {

// Below this a slice is not worth a parallel region (a few microseconds).
constexpr int64_t kMinSliceBytes = int64_t{1} << 18;

// Pages: each thread's slice starts on a page boundary.
constexpr int64_t kSliceAlign = 4096;

// pread() until [lo, hi) is read; errno's message, "" when done, or "the file ends early".
std::string pread_range(int fd, uint64_t offset, uint8_t* dst, size_t lo, size_t hi) {
  while (lo < hi) {
    const ssize_t n = ::pread(fd, dst + lo, hi - lo, static_cast<off_t>(offset + lo));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::strerror(errno);
    if (n == 0) return "the file ends early";
    lo += static_cast<size_t>(n);
  }
  return "";
}

}  // namespace

void copy_in_slices(uint8_t* dst, const uint8_t* src, size_t bytes, int threads) {
  parallel_ranges(
      static_cast<int64_t>(bytes), kMinSliceBytes, threads,
      [&](int64_t lo, int64_t hi) { std::memcpy(dst + lo, src + lo, static_cast<size_t>(hi - lo)); }, kSliceAlign);
}

void pread_in_slices(int fd, uint64_t offset, uint8_t* dst, size_t bytes, int threads, const std::string& name,
                     const std::string& file) {
  std::vector<std::string> why(static_cast<size_t>(std::max(1, threads)));  // each range's error, if any
  parallel_ranges(
      static_cast<int64_t>(bytes), kMinSliceBytes, threads,
      [&](int64_t lo, int64_t hi) {
        why[static_cast<size_t>(omp_get_thread_num())] =
            pread_range(fd, offset, dst, static_cast<size_t>(lo), static_cast<size_t>(hi));
      },
      kSliceAlign);
  for (const std::string& w : why) {
    if (!w.empty()) throw RuntimeFailure("cannot read " + name + " from " + file + ": " + w);
  }
}

DiskReader::~DiskReader() {
  for (const auto& [file, m] : files_) {
    if (m.data) ::munmap(const_cast<uint8_t*>(m.data), m.size);
    ::close(m.fd);
  }
}

const DiskReader::Mapped& DiskReader::map_file(const std::string& file) {
  auto it = files_.find(file);
  if (it != files_.end()) return it->second;
  Mapped m;
  m.fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (m.fd < 0) throw RuntimeFailure("cannot open offloaded weights " + file + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(m.fd, &st) != 0) {
    const std::string why = std::strerror(errno);
    ::close(m.fd);
    throw RuntimeFailure("cannot stat offloaded weights " + file + ": " + why);
  }
  m.size = static_cast<size_t>(st.st_size);
  if (m.size > 0) {
    void* p = ::mmap(nullptr, m.size, PROT_READ, MAP_SHARED, m.fd, 0);
    if (p == MAP_FAILED) {
      const std::string why = std::strerror(errno);
      ::close(m.fd);
      throw RuntimeFailure("cannot map offloaded weights " + file + ": " + why);
    }
    ::madvise(p, m.size, MADV_HUGEPAGE);  // a hint: kernels without file THP ignore it
    m.data = static_cast<const uint8_t*>(p);
  }
  return files_.emplace(file, m).first->second;
}

const DiskReader::Mapped& DiskReader::checked(const WeightRef& r) {
  const Mapped& m = map_file(r.file);
  const size_t bytes = weight_bytes(r.w);
  // Checked before touching the map: a copy past the end of a file faults (SIGBUS).
  if (r.offset > m.size || bytes > m.size - r.offset) {
    throw RuntimeFailure("short read of " + r.name + " from " + r.file + ": the file holds " + std::to_string(m.size) +
                         " bytes, the tensor needs " + std::to_string(bytes) + " at offset " +
                         std::to_string(r.offset));
  }
  return m;
}

void DiskReader::open(const WeightRef& r) { checked(r); }

std::string DiskReader::read_part(const WeightRef& r, size_t from, size_t bytes, void* dst) const {
  const auto it = files_.find(r.file);
  if (it == files_.end()) return "not opened";  // (open(r) first)
  if (from > weight_bytes(r.w) || bytes > weight_bytes(r.w) - from) return "a part past the tensor's end";
  return pread_range(it->second.fd, r.offset + from, static_cast<uint8_t*>(dst), 0, bytes);
}

size_t DiskReader::read(const WeightRef& r, void* dst, bool drop_page_cache, int threads) {
  const Mapped& m = checked(r);
  const size_t bytes = weight_bytes(r.w);
  const auto t0 = std::chrono::steady_clock::now();
  if (bytes > 0 && drop_page_cache) {
    // Mapped pages cannot be evicted: unmap this tensor's pages from the map first. The range is
    // widened to whole pages (a neighbour sharing a page is faulted back in on its next read).
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const size_t lo = r.offset / page * page, hi = std::min(m.size, (r.offset + bytes + page - 1) / page * page);
    ::madvise(const_cast<uint8_t*>(m.data) + lo, hi - lo, MADV_DONTNEED);
    posix_fadvise(m.fd, static_cast<off_t>(lo), static_cast<off_t>(hi - lo), POSIX_FADV_DONTNEED);
    // Then read through the map by one thread: its page faults read ahead into 2 MiB page-cache
    // folios (the map asks for huge pages), one stream the kernel reads ahead of (Qwen3-0.6B
    // bfloat16, 14/28 layers on disk, every read cold: 125-154 ms/token by one thread, 206-250 by
    // two). A cold pread() filled the cache with small folios instead, and every later warm read
    // paid for them (TinyLlama float32, 11/22 layers on disk: decode 258 against 143 ms/token).
    std::memcpy(dst, m.data + r.offset, bytes);
  } else if (bytes >= kMapCopyBytes) {
    // Warm and large, copied out of the map by the threads (see the class comment).
    copy_in_slices(static_cast<uint8_t*>(dst), m.data + r.offset, bytes, threads);
  } else if (bytes > 0) {
    // Warm, by pread() from the page cache, each thread its slice (see the class comment).
    pread_in_slices(m.fd, r.offset, static_cast<uint8_t*>(dst), bytes, threads, r.name, r.file);
  }
  bytes_read_ += bytes;
  seconds_reading_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return bytes;
}

}  // namespace dmap::exec
