//! The `extern "C"` surface of the c10d shim (`csrc/c10d_shim.cpp`, `csrc/c10d_nccl.cpp`). Every
//! fallible function returns a malloc'd error string, or null on success. Only `dist` uses this.

use std::ffi::c_char;
use torch_sys::C_tensor;

/// A `c10::intrusive_ptr<c10d::Store>` (a TCPStore, possibly behind a PrefixStore).
#[repr(C)]
pub struct Store {
    _private: [u8; 0],
}

/// A `c10::intrusive_ptr<c10d::Backend>` (ProcessGroupGloo or ProcessGroupNCCL).
#[repr(C)]
pub struct Pg {
    _private: [u8; 0],
}

/// `FREET_BACKEND_GLOO` in `csrc/c10d_shim.h`.
pub const BACKEND_GLOO: i32 = 0;
/// `FREET_BACKEND_NCCL`.
pub const BACKEND_NCCL: i32 = 1;
/// `FREET_OP_SUM`.
pub const OP_SUM: i32 = 0;
/// `FREET_OP_AVG`.
pub const OP_AVG: i32 = 1;
/// `FREET_OP_MIN`.
pub const OP_MIN: i32 = 2;
/// `FREET_OP_MAX`.
pub const OP_MAX: i32 = 3;

unsafe extern "C" {
    pub fn freet_c10d_free_string(s: *mut c_char);
    pub fn freet_c10d_free_bytes(p: *mut u8);
    pub fn freet_c10d_set_log_level(level: i32);
    pub fn freet_store_new(
        host: *const c_char,
        port: u16,
        is_server: i32,
        world: i32,
        timeout_ms: i64,
        prefix: *const c_char,
        out: *mut *mut Store,
    ) -> *mut c_char;
    pub fn freet_store_clone(s: *mut Store, out: *mut *mut Store) -> *mut c_char;
    pub fn freet_store_set_timeout(s: *mut Store, timeout_ms: i64) -> *mut c_char;
    pub fn freet_store_set(s: *mut Store, key: *const c_char, value: *const u8, len: usize) -> *mut c_char;
    pub fn freet_store_get(s: *mut Store, key: *const c_char, value: *mut *mut u8, len: *mut usize) -> *mut c_char;
    pub fn freet_store_add(s: *mut Store, key: *const c_char, delta: i64, value: *mut i64) -> *mut c_char;
    pub fn freet_store_check(s: *mut Store, key: *const c_char, present: *mut i32) -> *mut c_char;
    pub fn freet_store_free(s: *mut Store);
    pub fn freet_pg_new(
        s: *mut Store,
        rank: i32,
        size: i32,
        backend: i32,
        device: i32,
        gloo_host: *const c_char,
        timeout_ms: i64,
        out: *mut *mut Pg,
    ) -> *mut c_char;
    pub fn freet_pg_allreduce(
        pg: *mut Pg,
        tensors: *const *mut C_tensor,
        n: usize,
        op: i32,
        timeout_ms: i64,
    ) -> *mut c_char;
    pub fn freet_pg_broadcast(
        pg: *mut Pg,
        tensors: *const *mut C_tensor,
        n: usize,
        root: i32,
        timeout_ms: i64,
    ) -> *mut c_char;
    pub fn freet_pg_barrier(pg: *mut Pg, timeout_ms: i64) -> *mut c_char;
    pub fn freet_pg_free(pg: *mut Pg);
}
