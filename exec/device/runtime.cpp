// The device runtime's shared pieces (see runtime.h).
#include "exec/device/runtime.h"

#include "core/units.h"

namespace dmap::exec {

OutOfDeviceMemory::OutOfDeviceMemory(int device, size_t asked, size_t free, size_t total, const std::string& what)
    : RuntimeFailure("cuda:" + std::to_string(device) + " is out of memory: " + what + " asked for " +
                     format_bytes_human(static_cast<double>(asked)) + " (" + std::to_string(asked) + " bytes) with " +
                     format_bytes_human(static_cast<double>(free)) + " free of " +
                     format_bytes_human(static_cast<double>(total))),
      asked_(asked) {}

}  // namespace dmap::exec
