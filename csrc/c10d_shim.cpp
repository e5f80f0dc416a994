// freet's binding to c10d, PyTorch's collective engine: a TCPStore rendezvous, a process group
// (Gloo on CPU here; NCCL in c10d_nccl.cpp), all-reduce, broadcast and barrier, each with a
// timeout. Every function is `extern "C"`, catches every C++ exception and returns it as a
// malloc'd one-line string (NULL on success), freed with freet_c10d_free_string. Only
// src/dist/ffi.rs calls these functions.
//
// Tensors cross the boundary as tch's raw tensor pointers, which are `at::Tensor*`.

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#define USE_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include "c10d_shim.h"

// ProcessGroupGloo is parsed against the opaque declarations of csrc/gloo-decl; its layout must be
// libtorch's. 488 bytes is what libtorch_cpu 2.11.0's deleting destructor frees (the operand of
// `operator delete` in `objdump -d` of _ZN4c10d16ProcessGroupGlooD0Ev).
static_assert(sizeof(c10d::ProcessGroupGloo) == 488,
              "ProcessGroupGloo's size differs from libtorch 2.11.0's: check csrc/gloo-decl against this torch");

namespace {

using Ms = std::chrono::milliseconds;

char* dup_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

}  // namespace

// Runs `body`, turning any exception into an error string.
template <typename F>
char* freet_guard(F&& body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    return dup_string(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return dup_string(e.what());
  } catch (...) {
    return dup_string("unknown C++ exception");
  }
}

struct freet_store {
  c10::intrusive_ptr<c10d::Store> store;
};

struct freet_pg {
  c10::intrusive_ptr<c10d::Backend> backend;
  bool nccl;
  int device;
};

// Defined in c10d_nccl.cpp: a ProcessGroupNCCL, or an error when built without NCCL.
c10::intrusive_ptr<c10d::Backend> freet_make_nccl(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, int device, Ms timeout);

namespace {

// Waits for `work` until `timeout`, polling so that the deadline is ours whatever the backend's
// own notion of a timeout; rethrows the work's error.
void wait_for(const c10::intrusive_ptr<c10d::Work>& work, Ms timeout, const char* what) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::microseconds(20);
  while (!work->isCompleted()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error(std::string(what) + " timed out after " + std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
  work->wait();  // completed: returns at once, or rethrows the collective's exception
}

std::vector<at::Tensor> tensors_of(at::Tensor* const* ts, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    TORCH_CHECK(ts[i] != nullptr && ts[i]->defined(), "tensor ", i, " is undefined");
    out.push_back(*ts[i]);
  }
  return out;
}

// One contiguous buffer holding every tensor of `ts` (the tensor itself when there is one and it
// is contiguous); all must share dtype and device.
at::Tensor flatten(const std::vector<at::Tensor>& ts) {
  TORCH_CHECK(!ts.empty(), "no tensor given");
  for (const auto& t : ts) {
    TORCH_CHECK(t.scalar_type() == ts[0].scalar_type(), "tensors of one call must share a dtype");
    TORCH_CHECK(t.device() == ts[0].device(), "tensors of one call must share a device");
  }
  if (ts.size() == 1 && ts[0].is_contiguous()) {
    return ts[0];
  }
  std::vector<at::Tensor> flat;
  flat.reserve(ts.size());
  for (const auto& t : ts) {
    flat.push_back(t.reshape({-1}));
  }
  return at::cat(flat);
}

// Copies `buf` back into `ts` when `flatten` made a new buffer.
void unflatten(const at::Tensor& buf, std::vector<at::Tensor>& ts) {
  if (ts.size() == 1 && buf.is_same(ts[0])) {
    return;
  }
  int64_t off = 0;
  for (auto& t : ts) {
    t.copy_(buf.narrow(0, off, t.numel()).view(t.sizes()));
    off += t.numel();
  }
}

}  // namespace

extern "C" {

void freet_c10d_free_string(char* s) { std::free(s); }

// c10's minimum log severity (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL): c10d logs its retries and
// failures to stderr, with C++ backtraces, before the exception that the shim returns.
void freet_c10d_set_log_level(int level) { FLAGS_caffe2_log_level = level; }

char* freet_store_new(const char* host, uint16_t port, int is_server, int world, int64_t timeout_ms,
                      const char* prefix, freet_store** out) {
  return freet_guard([&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server != 0;
    opts.numWorkers = static_cast<size_t>(world);
    opts.waitWorkers = false;
    opts.timeout = Ms(timeout_ms);
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    c10::intrusive_ptr<c10d::Store> store = tcp;
    if (prefix != nullptr && prefix[0] != '\0') {
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store);
    }
    *out = new freet_store{store};
  });
}

char* freet_store_clone(freet_store* s, freet_store** out) {
  return freet_guard([&] { *out = new freet_store{s->store->clone()}; });
}

char* freet_store_set_timeout(freet_store* s, int64_t timeout_ms) {
  return freet_guard([&] { s->store->setTimeout(Ms(timeout_ms)); });
}

char* freet_store_set(freet_store* s, const char* key, const uint8_t* value, size_t len) {
  return freet_guard([&] { s->store->set(std::string(key), std::vector<uint8_t>(value, value + len)); });
}

char* freet_store_get(freet_store* s, const char* key, uint8_t** value, size_t* len) {
  return freet_guard([&] {
    auto v = s->store->get(std::string(key));
    *len = v.size();
    *value = static_cast<uint8_t*>(std::malloc(v.size() + 1));
    TORCH_CHECK(*value != nullptr, "out of memory");
    std::memcpy(*value, v.data(), v.size());
  });
}

void freet_c10d_free_bytes(uint8_t* p) { std::free(p); }

char* freet_store_add(freet_store* s, const char* key, int64_t delta, int64_t* value) {
  return freet_guard([&] { *value = s->store->add(std::string(key), delta); });
}

char* freet_store_check(freet_store* s, const char* key, int* present) {
  return freet_guard([&] { *present = s->store->check({std::string(key)}) ? 1 : 0; });
}

void freet_store_free(freet_store* s) {
  try {
    delete s;
  } catch (...) {
  }
}

char* freet_pg_new(freet_store* s, int rank, int size, int backend, int device, const char* gloo_host,
                   int64_t timeout_ms, freet_pg** out) {
  return freet_guard([&] {
    auto timeout = Ms(timeout_ms);
    if (backend == FREET_BACKEND_NCCL) {
      *out = new freet_pg{freet_make_nccl(s->store, rank, size, device, timeout), true, device};
      return;
    }
    TORCH_CHECK(backend == FREET_BACKEND_GLOO, "unknown backend ", backend);
    auto opts = c10d::ProcessGroupGloo::Options::create_default(timeout);
    if (gloo_host != nullptr && gloo_host[0] != '\0') {
      opts->devices.clear();
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(std::string(gloo_host)));
    }
    opts->threads = 1;
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(s->store, rank, size, opts);
    *out = new freet_pg{pg, false, -1};
  });
}

char* freet_pg_allreduce(freet_pg* pg, at::Tensor* const* ts, size_t n, int op, int64_t timeout_ms) {
  return freet_guard([&] {
    at::NoGradGuard no_grad;
    auto tensors = tensors_of(ts, n);
    std::vector<at::Tensor> buf{flatten(tensors)};
    c10d::AllreduceOptions opts;
    opts.timeout = Ms(timeout_ms);
    bool divide = false;
    switch (op) {
      case FREET_OP_SUM: opts.reduceOp = c10d::ReduceOp::SUM; break;
      case FREET_OP_AVG:
        // Gloo has no AVG: sum, then divide by the world size.
        opts.reduceOp = pg->nccl ? c10d::ReduceOp::AVG : c10d::ReduceOp::SUM;
        divide = !pg->nccl;
        break;
      case FREET_OP_MIN: opts.reduceOp = c10d::ReduceOp::MIN; break;
      case FREET_OP_MAX: opts.reduceOp = c10d::ReduceOp::MAX; break;
      default: TORCH_CHECK(false, "unknown reduce op ", op);
    }
    wait_for(pg->backend->allreduce(buf, opts), Ms(timeout_ms), "all-reduce");
    if (divide) {
      buf[0].div_(pg->backend->getSize());
    }
    unflatten(buf[0], tensors);
  });
}

char* freet_pg_broadcast(freet_pg* pg, at::Tensor* const* ts, size_t n, int root, int64_t timeout_ms) {
  return freet_guard([&] {
    at::NoGradGuard no_grad;
    auto tensors = tensors_of(ts, n);
    std::vector<at::Tensor> buf{flatten(tensors)};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = Ms(timeout_ms);
    wait_for(pg->backend->broadcast(buf, opts), Ms(timeout_ms), "broadcast");
    unflatten(buf[0], tensors);
  });
}

char* freet_pg_barrier(freet_pg* pg, int64_t timeout_ms) {
  return freet_guard([&] {
    c10d::BarrierOptions opts;
    opts.timeout = Ms(timeout_ms);
    if (pg->nccl) {
      opts.device_ids = {pg->device};
      opts.device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(pg->device));
    }
    wait_for(pg->backend->barrier(opts), Ms(timeout_ms), "barrier");
  });
}

void freet_pg_free(freet_pg* pg) {
  try {
    delete pg;
  } catch (...) {
  }
}

}  // extern "C"
