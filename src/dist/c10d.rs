//! Safe owners of the shim's handles: a [`Store`] (TCPStore) and a [`ProcessGroup`] (Gloo or NCCL).
//! Every call has a timeout and returns C++ exceptions as one-line `String` errors.

use super::ffi;
use crate::util::error::one_line;
use std::cell::Cell;
use std::ffi::{CStr, CString, c_char};
use std::time::Duration;
use tch::Tensor;
use torch_sys::C_tensor;

/// Turns a shim return value into a result, freeing the error string.
fn check(err: *mut c_char) -> Result<(), String> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string malloc'd by the shim, freed once here.
    let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
    unsafe { ffi::freet_c10d_free_string(err) };
    Err(one_line(&msg))
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} holds a NUL byte"))
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// A c10d TCPStore client (or the server and a client, on the rank that hosts it), every key under
/// a prefix.
#[derive(Debug)]
pub struct Store {
    ptr: *mut ffi::Store,
}

// SAFETY: a c10d store is used by one thread at a time here (each thread has its own clone), and
// TCPStore serialises its own socket operations.
unsafe impl Send for Store {}

impl Store {
    /// Connects to (or, with `is_server`, hosts) the TCPStore at `host:port`, retrying until
    /// `timeout`; keys are prefixed with `prefix`.
    pub fn connect(
        host: &str,
        port: u16,
        is_server: bool,
        world: usize,
        timeout: Duration,
        prefix: &str,
    ) -> Result<Store, String> {
        let (h, p) = (cstring(host)?, cstring(prefix)?);
        let mut ptr = std::ptr::null_mut();
        // SAFETY: valid C strings and out-pointer; the shim owns nothing of ours after returning.
        check(unsafe {
            ffi::freet_store_new(
                h.as_ptr(),
                port,
                is_server.into(),
                world as i32,
                millis(timeout),
                p.as_ptr(),
                &mut ptr,
            )
        })?;
        Ok(Store { ptr })
    }

    /// A second connection to the same store (for another thread).
    pub fn try_clone(&self) -> Result<Store, String> {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: self.ptr is live; out-pointer valid.
        check(unsafe { ffi::freet_store_clone(self.ptr, &mut ptr) })?;
        Ok(Store { ptr })
    }

    /// How long `get` waits for a missing key (and other calls for the server).
    pub fn set_timeout(&self, timeout: Duration) -> Result<(), String> {
        // SAFETY: self.ptr is live.
        check(unsafe { ffi::freet_store_set_timeout(self.ptr, millis(timeout)) })
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let k = cstring(key)?;
        // SAFETY: self.ptr is live; value is a valid slice for the call.
        check(unsafe { ffi::freet_store_set(self.ptr, k.as_ptr(), value.as_ptr(), value.len()) })
    }

    /// The value of `key`, waiting for it up to the store's timeout.
    pub fn get(&self, key: &str) -> Result<Vec<u8>, String> {
        let k = cstring(key)?;
        let (mut p, mut len) = (std::ptr::null_mut(), 0usize);
        // SAFETY: self.ptr is live; out-pointers valid.
        check(unsafe { ffi::freet_store_get(self.ptr, k.as_ptr(), &mut p, &mut len) })?;
        // SAFETY: on success the shim malloc'd `len` bytes at p, freed once here.
        let v = unsafe { std::slice::from_raw_parts(p, len) }.to_vec();
        unsafe { ffi::freet_c10d_free_bytes(p) };
        Ok(v)
    }

    /// Adds `delta` to the integer at `key` (created at 0) and returns the new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64, String> {
        let k = cstring(key)?;
        let mut v = 0i64;
        // SAFETY: self.ptr is live; out-pointer valid.
        check(unsafe { ffi::freet_store_add(self.ptr, k.as_ptr(), delta, &mut v) })?;
        Ok(v)
    }

    /// Whether `key` is set.
    pub fn check(&self, key: &str) -> Result<bool, String> {
        let k = cstring(key)?;
        let mut present = 0i32;
        // SAFETY: self.ptr is live; out-pointer valid.
        check(unsafe { ffi::freet_store_check(self.ptr, k.as_ptr(), &mut present) })?;
        Ok(present != 0)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: self.ptr came from the shim and is freed once.
        unsafe { ffi::freet_store_free(self.ptr) }
    }
}

/// Which c10d backend runs the collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// ProcessGroupGloo: CPU tensors.
    Gloo,
    /// ProcessGroupNCCL: CUDA tensors, on the given device index.
    Nccl(i32),
}

/// A reduction of [`ProcessGroup::all_reduce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Elementwise sum.
    Sum,
    /// Elementwise mean over ranks (Gloo: the sum divided by the world size).
    Avg,
    /// Elementwise minimum.
    Min,
    /// Elementwise maximum.
    Max,
}

/// A c10d process group. After a failed collective it is *poisoned*: later calls are refused, and
/// dropping it leaks the C++ object instead of destroying it, because destruction joins the
/// backend's worker threads, which may still be inside the failed collective until its timeout.
#[derive(Debug)]
pub struct ProcessGroup {
    ptr: *mut ffi::Pg,
    rank: usize,
    size: usize,
    timeout: Duration,
    poisoned: Cell<bool>,
}

impl ProcessGroup {
    /// Joins the group of `size` ranks as `rank`, rendezvousing through `store`; waits for every
    /// rank up to `timeout`, which also bounds every later collective. Gloo binds to `gloo_host`
    /// when given (e.g. `127.0.0.1`), else to c10d's default device (`GLOO_SOCKET_IFNAME`, or the
    /// address of this machine's hostname).
    pub fn new(
        store: &Store,
        rank: usize,
        size: usize,
        backend: Backend,
        gloo_host: Option<&str>,
        timeout: Duration,
    ) -> Result<ProcessGroup, String> {
        let (code, device) = match backend {
            Backend::Gloo => (ffi::BACKEND_GLOO, -1),
            Backend::Nccl(d) => (ffi::BACKEND_NCCL, d),
        };
        let host = cstring(gloo_host.unwrap_or(""))?;
        let mut ptr = std::ptr::null_mut();
        // SAFETY: store.ptr is live; strings and out-pointer valid.
        check(unsafe {
            ffi::freet_pg_new(
                store.ptr,
                rank as i32,
                size as i32,
                code,
                device,
                host.as_ptr(),
                millis(timeout),
                &mut ptr,
            )
        })?;
        Ok(ProcessGroup { ptr, rank, size, timeout, poisoned: Cell::new(false) })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether a collective has failed (the group is then unusable).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.get()
    }

    /// Runs one shim collective, poisoning the group when it fails.
    fn run(&self, f: impl FnOnce(i64) -> *mut c_char) -> Result<(), String> {
        if self.poisoned.get() {
            return Err("the process group is unusable after an earlier failed collective".into());
        }
        let res = check(f(millis(self.timeout)));
        if res.is_err() {
            self.poisoned.set(true);
        }
        res
    }

    /// In place, over every rank: `tensors` (one dtype and device; flattened into one buffer, one
    /// collective) become their elementwise reduction.
    pub fn all_reduce(&self, tensors: &[&Tensor], op: ReduceOp) -> Result<(), String> {
        let ptrs = tensor_ptrs(tensors)?;
        let code = match op {
            ReduceOp::Sum => ffi::OP_SUM,
            ReduceOp::Avg => ffi::OP_AVG,
            ReduceOp::Min => ffi::OP_MIN,
            ReduceOp::Max => ffi::OP_MAX,
        };
        // SAFETY: self.ptr is live; ptrs point to live tensors borrowed for the call.
        self.run(|ms| unsafe { ffi::freet_pg_allreduce(self.ptr, ptrs.as_ptr(), ptrs.len(), code, ms) })
    }

    /// In place: `tensors` (one dtype and device, one collective) take rank `root`'s values.
    pub fn broadcast(&self, tensors: &[&Tensor], root: usize) -> Result<(), String> {
        let ptrs = tensor_ptrs(tensors)?;
        // SAFETY: as for all_reduce.
        self.run(|ms| unsafe { ffi::freet_pg_broadcast(self.ptr, ptrs.as_ptr(), ptrs.len(), root as i32, ms) })
    }

    /// Waits until every rank has called `barrier`.
    pub fn barrier(&self) -> Result<(), String> {
        // SAFETY: self.ptr is live.
        self.run(|ms| unsafe { ffi::freet_pg_barrier(self.ptr, ms) })
    }
}

/// The tensors' C++ handles, once they are checked to be defined and to share one dtype and one
/// device (a mistake of the caller, refused before any collective starts: the group stays usable).
fn tensor_ptrs(tensors: &[&Tensor]) -> Result<Vec<*mut C_tensor>, String> {
    let Some(first) = tensors.first() else { return Err("no tensor given".into()) };
    if tensors.iter().any(|t| !t.defined()) {
        return Err("an undefined tensor was given".into());
    }
    if tensors.iter().any(|t| t.kind() != first.kind() || t.device() != first.device()) {
        return Err("tensors of one call must share a dtype and a device".into());
    }
    Ok(tensors.iter().map(|t| t.as_ptr() as *mut C_tensor).collect())
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if !self.poisoned.get() {
            // SAFETY: self.ptr came from the shim and is freed once.
            unsafe { ffi::freet_pg_free(self.ptr) }
        }
    }
}
