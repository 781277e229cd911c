// Units carried in type names: byte counts, bit counts and the conversions between them.
// Sizes inside the planner are kept in *bits* so that accelerate's fractional element
// sizes (bool = 1/8 byte, int4 = 1/2 byte, int2 = 1/4 byte) stay exact integers.
#pragma once

#include <cstdint>
#include <string>

namespace dmap {

using Bytes = int64_t;  // a whole number of bytes
using Bits = int64_t;   // a size in bits (1/8 byte); accelerate's "bytes" = Bits / 8

constexpr Bits kBitsPerByte = 8;

constexpr Bits bytes_to_bits(Bytes b) { return b * kBitsPerByte; }

// The largest memory size dmap accepts anywhere (a cap, a GPU's memory, RAM): 64 PiB. Sizes in
// bits and sums of a few such sizes then stay far inside 63 bits.
constexpr Bytes kMaxMemoryBytes = Bytes{1} << 56;

// Exact decimal rendering of a bit count as bytes: "1234" or "1234.125" (no trailing zeros).
std::string format_bits_as_bytes(Bits b);

// Human rendering with binary units, e.g. "11.50 GiB", "512 B".
std::string format_bytes_human(double bytes);

}  // namespace dmap
