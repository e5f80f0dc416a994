// Constants shared by the shim's translation units and mirrored in src/dist/ffi.rs.
#pragma once

#define FREET_BACKEND_GLOO 0
#define FREET_BACKEND_NCCL 1

#define FREET_OP_SUM 0
#define FREET_OP_AVG 1
#define FREET_OP_MIN 2
#define FREET_OP_MAX 3
