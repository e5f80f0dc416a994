// The NCCL half of freet's c10d shim (see c10d_shim.cpp): a ProcessGroupNCCL bound to one CUDA
// device. build.rs defines FREET_WITH_NCCL when the CUDA runtime and NCCL headers of the venv's
// nvidia packages are found; otherwise asking for NCCL is an error at run time, never at build.

#include <chrono>
#include <cstdlib>

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#ifdef FREET_WITH_NCCL
#define USE_C10D_NCCL 1
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

// The CUDA and NCCL headers found at build time must give libtorch's layout: 1112 bytes is what
// libtorch_cuda 2.11.0's deleting destructor of ProcessGroupNCCL frees (objdump of
// _ZN4c10d16ProcessGroupNCCLD0Ev).
static_assert(sizeof(c10d::ProcessGroupNCCL) == 1112,
              "ProcessGroupNCCL's size differs from libtorch 2.11.0's: the CUDA/NCCL headers do not match this torch");
#endif

c10::intrusive_ptr<c10d::Backend> freet_make_nccl(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, int device, std::chrono::milliseconds timeout) {
#ifdef FREET_WITH_NCCL
  // Errors come back from Work::wait as exceptions (blocking wait) instead of the watchdog tearing
  // the process down; a user's own setting wins.
  setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
  setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "0", 0);
  TORCH_CHECK(device >= 0, "NCCL needs a CUDA device index");
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, opts);
#else
  (void)store;
  (void)rank;
  (void)size;
  (void)device;
  (void)timeout;
  TORCH_CHECK(false, "this freet was built without NCCL (the CUDA runtime or NCCL headers were not found at build time)");
#endif
}
