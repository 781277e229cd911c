// Devices, memory caps (`max_memory`) and device maps, with the parsing and printing rules
// accelerate and transformers use.
//
// Example:
//   MaxMemory caps = parse_max_memory_flag("0=11.5GB,cpu=64GiB");   // ordered: 0, cpu
//   DeviceMap dm;  dm.assign("model.embed_tokens", Device::gpu(0));
//   std::cout << device_map_to_json(dm);   // {"model.embed_tokens": 0}
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/units.h"

namespace dmap {

struct Device {
  enum class Kind { kGpu, kMps, kCpu, kDisk };
  Kind kind = Kind::kCpu;
  int index = 0;  // GPU ordinal (kGpu only)

  static Device gpu(int i) { return {Kind::kGpu, i}; }
  static Device cpu() { return {Kind::kCpu, 0}; }
  static Device disk() { return {Kind::kDisk, 0}; }
  static Device mps() { return {Kind::kMps, 0}; }

  bool is_gpu() const { return kind == Kind::kGpu; }
  bool operator==(const Device& o) const { return kind == o.kind && (kind != Kind::kGpu || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
  // accelerate's order: GPUs by ordinal, then mps, cpu, disk.
  bool operator<(const Device& o) const {
    if (kind != o.kind) return static_cast<int>(kind) < static_cast<int>(o.kind);
    return kind == Kind::kGpu && index < o.index;
  }

  std::string str() const;   // "0", "mps", "cpu", "disk"
  std::string json() const;  // 0, "mps", "cpu", "disk"
};

// Parses a device as users write it: 0, "0", "cuda", "cuda:1", "gpu:1", "mps", "cpu", "disk".
std::optional<Device> parse_device(std::string_view text);

// accelerate's convert_file_size_to_int: "10GiB", "11.5GB", "500MB", "5Gb" (bits), "1024",
// "12KiB"; result in whole bytes (truncated). nullopt when malformed.
std::optional<Bytes> parse_memory_size(std::string_view text);

// Memory caps per device, in accelerate's order. Caps are kept in bits so fractional caps
// (balanced_low_0 with bool buffers) stay exact.
class MaxMemory {
 public:
  void set(Device d, Bits cap);  // keeps the order sorted by Device
  std::optional<Bits> get(Device d) const;
  bool has(Device d) const { return get(d).has_value(); }
  const std::vector<std::pair<Device, Bits>>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }
  std::vector<Device> gpus() const;

 private:
  std::vector<std::pair<Device, Bits>> entries_;
};

// "0=11.5GB,cpu=64GiB" (flag form). Errors are InputErrors naming `origin`.
MaxMemory parse_max_memory_flag(const std::string& text, const std::string& origin);

// An ordered map from module name to device, as accelerate returns it. Assigning an
// existing key updates it in place (Python dict semantics).
class DeviceMap {
 public:
  void assign(const std::string& name, Device d);
  void erase(const std::string& name);
  std::optional<Device> get(const std::string& name) const;
  size_t size() const { return live_; }
  bool empty() const { return live_ == 0; }
  // Entries in order, erased ones dropped.
  std::vector<std::pair<std::string, Device>> items() const;

 private:
  std::vector<std::pair<std::string, Device>> entries_;  // in insertion order, erased ones flagged
  std::vector<char> erased_;
  std::unordered_map<std::string, size_t> index_;
  size_t live_ = 0;
};

// {"name": device, ...} as transformers accepts for device_map=.
std::string device_map_to_json(const DeviceMap& dm);
// [["name", device], ...] as accelerate returns it (ordered pairs).
std::string device_map_to_pairs_json(const DeviceMap& dm);
// {"0": bytes, "cpu": bytes} with exact (possibly fractional) byte values.
std::string max_memory_to_json(const MaxMemory& mm);

}  // namespace dmap
