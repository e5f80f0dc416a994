// Opaque declarations for ProcessGroupGloo.hpp (see README.md): not Gloo itself.
#pragma once
#include <chrono>

namespace gloo {

// Held through std::shared_ptr; ProcessGroupGloo.hpp's inline setTimeout names this member.
class Context {
 public:
  virtual ~Context();
  void setTimeout(std::chrono::milliseconds timeout);
};

} // namespace gloo
