// Rendering of byte and bit counts.
#include "core/units.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace dmap {

std::string format_bits_as_bytes(Bits b) {
  const bool negative = b < 0;
  const uint64_t mag = negative ? static_cast<uint64_t>(-(b + 1)) + 1 : static_cast<uint64_t>(b);
  const uint64_t whole = mag / 8;
  const uint64_t frac_eighths = mag % 8;
  std::string out = negative ? "-" : "";
  out += std::to_string(whole);
  if (frac_eighths != 0) {
    // eighths are exact in decimal: 1/8 = 0.125
    static const char* const kFrac[8] = {"", ".125", ".25", ".375", ".5", ".625", ".75", ".875"};
    out += kFrac[frac_eighths];
  }
  return out;
}

std::string format_bytes_human(double bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int unit = 0;
  double v = bytes;
  while (std::fabs(v) >= 1024.0 && unit < 5) {
    v /= 1024.0;
    ++unit;
  }
  char buf[64];
  if (unit == 0) {
    std::snprintf(buf, sizeof buf, "%.0f %s", v, kUnits[unit]);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f %s", v, kUnits[unit]);
  }
  return buf;
}

}  // namespace dmap
