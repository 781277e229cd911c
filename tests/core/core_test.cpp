// Unit tests of the core library.
#include <catch2/catch.hpp>

#include "core/device_map.h"
