// cuBLAS is loaded on first use, not at start-up (exec/cuda/cublas_lazy.cpp). Runs without a GPU:
// the status functions need only the library.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>

#include <cublas_v2.h>

namespace {

bool cublas_mapped() {
  std::ifstream maps("/proc/self/maps");
  std::stringstream s;
  s << maps.rdbuf();
  return s.str().find("libcublas") != std::string::npos;
}

}  // namespace

TEST_CASE("cuBLAS is loaded when first called, not when the process starts", "[cublas]") {
  REQUIRE_FALSE(cublas_mapped());
  CHECK(std::string(cublasGetStatusName(CUBLAS_STATUS_SUCCESS)) == "CUBLAS_STATUS_SUCCESS");
  CHECK(std::string(cublasGetStatusName(CUBLAS_STATUS_INVALID_VALUE)) == "CUBLAS_STATUS_INVALID_VALUE");
  CHECK_FALSE(std::string(cublasGetStatusString(CUBLAS_STATUS_INVALID_VALUE)).empty());
  CHECK(cublas_mapped());
}
