// Devices, memory strings and device maps.
#include "core/device_map.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "core/json.h"

namespace dmap {

std::string Device::str() const {
  switch (kind) {
    case Kind::kGpu: return std::to_string(index);
    case Kind::kMps: return "mps";
    case Kind::kCpu: return "cpu";
    case Kind::kDisk: return "disk";
  }
  return "?";
}

std::string Device::json() const {
  if (kind == Kind::kGpu) return std::to_string(index);
  std::string out(1, '"');
  out.append(str()).push_back('"');
  return out;
}

namespace {
bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}
std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}
}  // namespace

std::optional<Device> parse_device(std::string_view raw) {
  std::string text = trim(raw);
  if (text == "cpu") return Device::cpu();
  if (text == "disk") return Device::disk();
  if (text == "mps") return Device::mps();
  if (text == "cuda" || text == "gpu") return Device::gpu(0);
  for (std::string_view prefix : {"cuda:", "gpu:"}) {
    if (text.rfind(prefix, 0) == 0) text = text.substr(prefix.size());
  }
  if (all_digits(text) && text.size() < 9) return Device::gpu(std::atoi(text.c_str()));
  return std::nullopt;
}

std::optional<Bytes> parse_memory_size(std::string_view raw) {
  // Mirrors accelerate's convert_file_size_to_int: binary suffixes (GiB/MiB/KiB), decimal
  // ones (GB/MB/KB), a lowercase trailing "b" meaning bits (divided by 8), plain integers.
  std::string text = trim(raw);
  if (text.empty()) return std::nullopt;
  if (all_digits(text)) {
    if (text.size() > 18) return std::nullopt;
    return std::strtoll(text.c_str(), nullptr, 10);
  }
  // Case-insensitive suffix, as accelerate upper-cases before matching; for the decimal
  // suffixes a lowercase final 'b' means bits. TiB/TB are dmap extensions.
  std::string upper = text;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  struct Suffix {
    const char* s;
    double mult;
    bool decimal;
  };
  static const Suffix kSuffixes[] = {
      {"TIB", 1099511627776.0, false},
      {"GIB", 1073741824.0, false},
      {"MIB", 1048576.0, false},
      {"KIB", 1024.0, false},
      {"TB", 1e12, true},
      {"GB", 1e9, true},
      {"MB", 1e6, true},
      {"KB", 1e3, true},
  };
  for (const Suffix& suf : kSuffixes) {
    const size_t n = std::char_traits<char>::length(suf.s);
    if (upper.size() > n && upper.compare(upper.size() - n, n, suf.s) == 0) {
      std::string num = trim(std::string_view(text).substr(0, text.size() - n));
      if (num.empty() || num[0] == '-') return std::nullopt;
      char* end = nullptr;
      double v = std::strtod(num.c_str(), &end);
      if (end == num.c_str() || *end != '\0' || !std::isfinite(v) || v < 0 || v * suf.mult > 9e18) return std::nullopt;
      // accelerate: int(float(value) * multiplier), then // 8 when the unit is bits.
      Bytes b = static_cast<Bytes>(v * suf.mult);
      if (suf.decimal && text.back() == 'b') b /= 8;
      return b;
    }
  }
  return std::nullopt;
}

void MaxMemory::set(Device d, Bits cap) {
  for (auto& e : entries_) {
    if (e.first == d) {
      e.second = cap;
      return;
    }
  }
  auto pos = std::upper_bound(entries_.begin(), entries_.end(), d,
                              [](const Device& a, const std::pair<Device, Bits>& b) { return a < b.first; });
  entries_.insert(pos, {d, cap});
}

std::optional<Bits> MaxMemory::get(Device d) const {
  for (const auto& e : entries_) {
    if (e.first == d) return e.second;
  }
  return std::nullopt;
}

std::vector<Device> MaxMemory::gpus() const {
  std::vector<Device> out;
  for (const auto& e : entries_) {
    if (e.first.is_gpu()) out.push_back(e.first);
  }
  return out;
}

MaxMemory parse_max_memory_flag(const std::string& text, const std::string& origin) {
  MaxMemory mm;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string item = trim(std::string_view(text).substr(start, comma - start));
    start = comma + 1;
    if (item.empty()) {
      if (comma == text.size()) break;
      continue;
    }
    const size_t eq = item.find_first_of("=:");
    // "cuda:0=10GB" contains a ':' inside the device; split at the last '='.
    const size_t split = item.rfind('=') != std::string::npos ? item.rfind('=') : eq;
    if (split == std::string::npos) {
      throw InputError(origin, 0, 0, "max_memory entry '" + item + "' is not DEVICE=SIZE (e.g. 0=11.5GB,cpu=64GiB)");
    }
    auto dev = parse_device(item.substr(0, split));
    if (!dev) throw InputError(origin, 0, 0, "max_memory: unknown device '" + item.substr(0, split) + "'");
    const std::string size_text = trim(std::string_view(item).substr(split + 1));
    if (!size_text.empty() && size_text[0] == '-') {
      throw InputError(origin, 0, 0, "max_memory: negative cap '" + size_text + "' for device " + dev->str());
    }
    auto bytes = parse_memory_size(size_text);
    if (!bytes) {
      throw InputError(origin, 0, 0,
                       "max_memory: cannot read size '" + size_text + "' for device " + dev->str() +
                           " (use e.g. 10GiB, 11.5GB, 500MB or a byte count)");
    }
    if (mm.has(*dev)) throw InputError(origin, 0, 0, "max_memory: device " + dev->str() + " given twice");
    if (*bytes > kMaxMemoryBytes) {
      throw InputError(origin, 0, 0,
                       "max_memory: " + size_text + " for device " + dev->str() + " is beyond dmap's limit of 64 PiB");
    }
    mm.set(*dev, bytes_to_bits(*bytes));
  }
  return mm;
}

void DeviceMap::assign(const std::string& name, Device d) {
  auto it = index_.find(name);
  if (it != index_.end() && !erased_[it->second]) {
    entries_[it->second].second = d;
    return;
  }
  index_[name] = entries_.size();
  entries_.emplace_back(name, d);
  erased_.push_back(0);
  ++live_;
}

void DeviceMap::erase(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end() || erased_[it->second]) return;
  erased_[it->second] = 1;
  index_.erase(it);
  --live_;
}

std::optional<Device> DeviceMap::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end() || erased_[it->second]) return std::nullopt;
  return entries_[it->second].second;
}

std::vector<std::pair<std::string, Device>> DeviceMap::items() const {
  std::vector<std::pair<std::string, Device>> out;
  out.reserve(live_);
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (!erased_[i]) out.push_back(entries_[i]);
  }
  return out;
}

std::string device_map_to_json(const DeviceMap& dm) {
  JsonWriter w;
  w.begin_object();
  for (const auto& [name, dev] : dm.items()) {
    w.key(name);
    w.raw(dev.json());
  }
  w.end_object();
  return w.str();
}

std::string device_map_to_pairs_json(const DeviceMap& dm) {
  JsonWriter w;
  w.begin_array();
  for (const auto& [name, dev] : dm.items()) {
    w.begin_array();
    w.value(name);
    w.raw(dev.json());
    w.end_array();
  }
  w.end_array();
  return w.str();
}

std::string max_memory_to_json(const MaxMemory& mm) {
  JsonWriter w;
  w.begin_object();
  for (const auto& [dev, cap] : mm.entries()) {
    w.key(dev.str());
    w.raw(format_bits_as_bytes(cap));
  }
  w.end_object();
  return w.str();
}

}  // namespace dmap
