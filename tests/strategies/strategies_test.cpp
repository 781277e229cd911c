// Unit and property tests of the strategies library.
#include <catch2/catch.hpp>

#include "strategies/plan.h"
