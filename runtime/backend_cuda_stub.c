// backend_cuda_stub.c - lmp_backend_cuda_new for builds without CUDA: refuses with a clear message. A build
// with CUDA (make CUDA=1, which defines LMP_WITH_CUDA) gets the real one from cuda/ and compiles this file
// to nothing.
#include "runtime/backend.h"

#ifndef LMP_WITH_CUDA
lmp_status lmp_backend_cuda_new(const lmp_backend_opts *opts, lmp_backend **out, lmp_error *err) {
    (void)opts;
    *out = NULL;
    return lmp_err(err, LMP_E_UNSUPPORTED, "this lmpress was built without CUDA (rebuild with make CUDA=1 on a "
                                           "machine with nvcc); use --device cpu");
}
#else
typedef int lmp_backend_cuda_stub_unused;  // ISO C forbids an empty translation unit
#endif
