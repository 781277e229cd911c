// The executor's element types (see exec_dtype.h).
#include "exec/exec_dtype.h"

#include <string>

#include "core/error.h"

namespace dmap::exec {

void require_exec_dtype(DType t, const char* what) {
  if (!is_exec_dtype(t)) {
    throw InternalError(std::string(what) + ": the executor computes in float32, float16 or bfloat16, not " +
                        std::string(dtype_name(t)));
  }
}

}  // namespace dmap::exec
