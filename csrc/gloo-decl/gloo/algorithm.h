// Opaque declarations for ProcessGroupGloo.hpp (see README.md): not Gloo itself.
#pragma once
#include "gloo/context.h"
