// Opaque declarations for ProcessGroupGloo.hpp (see README.md): not Gloo itself.
#pragma once

namespace gloo {
namespace transport {

// Held by ProcessGroupGloo::Options::devices through std::shared_ptr only.
class Device {
 public:
  virtual ~Device();
};

// Held by ProcessGroupGloo's send/receive work items through std::unique_ptr only.
class UnboundBuffer {
 public:
  virtual ~UnboundBuffer();
};

} // namespace transport
} // namespace gloo
