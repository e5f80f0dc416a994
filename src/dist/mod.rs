//! Data-parallel plumbing on PyTorch's collective engine, c10d: the world torchrun describes in the
//! environment, a TCPStore rendezvous, a process group (Gloo on CPU, NCCL on CUDA) and its
//! collectives, through a small C++ shim (`csrc/`) that build.rs compiles against libtorch's
//! headers. This module is the only code that touches the shim.
//!
//! Every collective has a timeout, and every failure is a one-line [`DistError`]. When a collective
//! fails, the [`Group`] asks the store which ranks have stopped beating (each rank bumps a counter
//! every second from a thread of its own) and names them: `rank 0: lost rank 1 during …`.

mod c10d;
mod ffi;
pub mod launch;

pub use c10d::{Backend, ProcessGroup, ReduceOp, Store};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tch::Tensor;

/// A failure of the distributed layer, as one line that starts with the reporting rank.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DistError(pub String);

/// How often each rank bumps its heartbeat counter in the store.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The ranks of a data-parallel run, as torchrun describes them: `RANK`, `WORLD_SIZE`,
/// `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT` (plus `TORCHELASTIC_USE_AGENT_STORE` and
/// `TORCHELASTIC_RESTART_COUNT` when torchrun's agent hosts the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    /// This process's global rank.
    pub rank: usize,
    /// Number of ranks.
    pub size: usize,
    /// This process's rank on its machine (its CUDA device).
    pub local_rank: usize,
    /// Host of the rendezvous store.
    pub master_addr: String,
    /// Port of the rendezvous store.
    pub master_port: u16,
    /// torchrun's agent hosts the store (every rank is a client); otherwise rank 0 hosts it.
    pub agent_store: bool,
    /// torchrun's restart count: keys live under `freet/<count>/`, so a restarted group never
    /// reads a previous attempt's keys.
    pub restart: u64,
}

impl World {
    /// The world in the environment, or None when `WORLD_SIZE` is unset (a plain single process).
    pub fn from_env() -> Result<Option<World>, DistError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`World::from_env`] over any variable lookup (for tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<World>, DistError> {
        let Some(size) = var("WORLD_SIZE") else { return Ok(None) };
        let num = |name: &str, v: &str| -> Result<u64, DistError> {
            v.trim().parse().map_err(|_| DistError(format!("{name}={v:?} is not a non-negative integer")))
        };
        let size = num("WORLD_SIZE", &size)? as usize;
        let need = |name: &str| var(name).ok_or_else(|| DistError(format!("WORLD_SIZE is set but {name} is not")));
        let rank = num("RANK", &need("RANK")?)? as usize;
        let local_rank = match var("LOCAL_RANK") {
            Some(v) => num("LOCAL_RANK", &v)? as usize,
            None => rank,
        };
        let master_addr = need("MASTER_ADDR")?.trim().to_string();
        let port = need("MASTER_PORT")?;
        let master_port = u16::try_from(num("MASTER_PORT", &port)?)
            .map_err(|_| DistError(format!("MASTER_PORT={port:?} is not a port number")))?;
        if size == 0 || rank >= size {
            return Err(DistError(format!("RANK={rank} must lie in 0..WORLD_SIZE={size}")));
        }
        if master_addr.is_empty() {
            return Err(DistError("MASTER_ADDR is empty".into()));
        }
        let agent_store = var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.trim() == "True");
        let restart = match var("TORCHELASTIC_RESTART_COUNT") {
            Some(v) => num("TORCHELASTIC_RESTART_COUNT", &v)?,
            None => 0,
        };
        Ok(Some(World { rank, size, local_rank, master_addr, master_port, agent_store, restart }))
    }

    /// Whether the store's host is this machine's loopback (then Gloo binds to it too).
    pub fn is_loopback(&self) -> bool {
        let a = self.master_addr.as_str();
        a == "localhost" || a == "::1" || a.starts_with("127.")
    }

    /// `MASTER_ADDR:MASTER_PORT`.
    pub fn store_address(&self) -> String {
        format!("{}:{}", self.master_addr, self.master_port)
    }
}

/// Bumps this rank's heartbeat counter every [`HEARTBEAT`] on a store connection of its own, until
/// dropped or the store stops answering.
struct Heartbeat {
    stop: Arc<AtomicBool>,
}

impl Heartbeat {
    fn start(store: Store, rank: usize) -> Heartbeat {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            let key = format!("heartbeat/{rank}");
            while !flag.load(Ordering::Relaxed) {
                if store.add(&key, 1).is_err() {
                    return;
                }
                std::thread::sleep(HEARTBEAT);
            }
        });
        Heartbeat { stop }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// This process's membership of a world: the store, the process group and the heartbeat.
pub struct Group {
    world: World,
    store: Store,
    pg: ProcessGroup,
    _heartbeat: Heartbeat,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("world", &self.world).finish_non_exhaustive()
    }
}

/// Silences c10's own stderr log (c10d's retries and failures, with C++ backtraces) below FATAL,
/// since every failure comes back as a one-line [`DistError`]; `TORCH_CPP_LOG_LEVEL`, when set,
/// keeps libtorch's own choice.
fn quiet_c10_log() {
    if std::env::var_os("TORCH_CPP_LOG_LEVEL").is_none() {
        // SAFETY: sets an int flag of libc10; called before any collective thread runs.
        unsafe { ffi::freet_c10d_set_log_level(3) }
    }
}

impl Group {
    /// Joins `world`: connects to (rank 0 without torchrun's agent: hosts) the store at
    /// `MASTER_ADDR:MASTER_PORT`, then creates the process group; `timeout` bounds the rendezvous
    /// and every later collective.
    pub fn join(world: &World, backend: Backend, timeout: Duration) -> Result<Group, DistError> {
        quiet_c10_log();
        let me = world.rank;
        let host_store = !world.agent_store && me == 0;
        let prefix = format!("freet/{}", world.restart);
        let store = Store::connect(&world.master_addr, world.master_port, host_store, world.size, timeout, &prefix)
            .map_err(|e| {
                let what = if host_store { "host" } else { "reach" };
                DistError(format!(
                    "rank {me}: cannot {what} the rendezvous store at {} (MASTER_ADDR:MASTER_PORT): {e}",
                    world.store_address()
                ))
            })?;
        let gloo_host = world.is_loopback().then_some("127.0.0.1");
        let pg = ProcessGroup::new(&store, me, world.size, backend, gloo_host, timeout).map_err(|e| {
            DistError(format!(
                "rank {me}: cannot form the process group of {} ranks ({backend:?}, store {}, timeout {} s): {e}",
                world.size,
                world.store_address(),
                timeout.as_secs()
            ))
        })?;
        let beat = store.try_clone().map_err(|e| DistError(format!("rank {me}: {e}")))?;
        Ok(Group { world: world.clone(), store, pg, _heartbeat: Heartbeat::start(beat, me) })
    }

    /// The world this group spans.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.world.rank
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.world.size
    }

    /// [`ProcessGroup::all_reduce`]; `what` names the data in errors.
    pub fn all_reduce(&self, what: &str, tensors: &[&Tensor], op: ReduceOp) -> Result<(), DistError> {
        self.pg.all_reduce(tensors, op).map_err(|e| self.explain(&format!("all-reduce of {what}"), &e))
    }

    /// [`ProcessGroup::broadcast`]; `what` names the data in errors.
    pub fn broadcast(&self, what: &str, tensors: &[&Tensor], root: usize) -> Result<(), DistError> {
        self.pg.broadcast(tensors, root).map_err(|e| self.explain(&format!("broadcast of {what}"), &e))
    }

    /// [`ProcessGroup::barrier`]; `what` names the point in errors.
    pub fn barrier(&self, what: &str) -> Result<(), DistError> {
        self.pg.barrier().map_err(|e| self.explain(&format!("barrier ({what})"), &e))
    }

    /// The error of a failed `what`: which ranks stopped beating, or why no rank could be named.
    /// A call refused before it started (the group still usable) is reported as it is.
    fn explain(&self, what: &str, err: &str) -> DistError {
        let me = self.world.rank;
        if !self.pg.is_poisoned() {
            return DistError(format!("rank {me}: {what}: {err}"));
        }
        let msg = match self.lost_ranks() {
            Ok(lost) if !lost.is_empty() => {
                let names: Vec<String> = lost.iter().map(usize::to_string).collect();
                let s = if lost.len() > 1 { "s" } else { "" };
                format!("rank {me}: lost rank{s} {} during {what} (heartbeat stopped): {err}", names.join(", "))
            }
            Ok(_) => format!("rank {me}: {what} failed while every rank is alive (one is stuck or out of step): {err}"),
            Err(_) if !self.world.agent_store && me != 0 => format!(
                "rank {me}: lost rank 0 during {what} (it hosts the rendezvous store at {}, which no longer answers): {err}",
                self.world.store_address()
            ),
            Err(e) => format!(
                "rank {me}: {what} failed and the rendezvous store at {} no longer answers ({e}): {err}",
                self.world.store_address()
            ),
        };
        DistError(msg)
    }

    /// Ranks (other than this one) whose heartbeat counter does not move over three beats.
    fn lost_ranks(&self) -> Result<Vec<usize>, String> {
        self.store.set_timeout(Duration::from_secs(5))?;
        let read = || -> Result<Vec<i64>, String> {
            (0..self.world.size).map(|r| self.store.add(&format!("heartbeat/{r}"), 0)).collect()
        };
        let before = read()?;
        std::thread::sleep(3 * HEARTBEAT);
        let after = read()?;
        Ok((0..self.world.size).filter(|&r| r != self.world.rank && after[r] == before[r]).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(vars: &[(&str, &str)]) -> Result<Option<World>, DistError> {
        World::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn world_comes_from_torchruns_variables() {
        assert_eq!(world(&[]).unwrap(), None);
        let w = world(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "10.0.0.2"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((w.rank, w.size, w.local_rank, w.master_port, w.restart), (3, 4, 1, 29500, 2));
        assert!(w.agent_store && !w.is_loopback());
        let base = [("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")];
        let w = world(&base).unwrap().unwrap();
        assert!(w.is_loopback() && !w.agent_store && w.local_rank == 0);
    }

    #[test]
    fn bad_worlds_are_one_line_errors() {
        let cases: [(&[(&str, &str)], &str); 4] = [
            (&[("WORLD_SIZE", "2")], "RANK is not"),
            (&[("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")], "must lie in"),
            (&[("WORLD_SIZE", "x")], "WORLD_SIZE=\"x\""),
            (&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "70000")], "not a port"),
        ];
        for (vars, want) in cases {
            let e = world(vars).unwrap_err().0;
            assert!(e.contains(want) && !e.contains('\n'), "{e}");
        }
    }
}
