//! `--nproc N`: runs N local ranks of this executable with the variables torchrun would set, on
//! 127.0.0.1 and a free port, and waits for them.

use super::DistError;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, read and released: another process could take it first,
/// as with torchrun's own choice), never one this process has returned before.
pub fn free_port() -> Result<u16, DistError> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..64 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| DistError(format!("cannot find a free port on 127.0.0.1: {e}")))?;
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    Err(DistError("cannot find a free port on 127.0.0.1 that was not given out before".into()))
}

/// Runs `nproc` copies of this executable with `args`, rank r with `RANK = LOCAL_RANK = r`,
/// `WORLD_SIZE = nproc`, `MASTER_ADDR = 127.0.0.1` and a free `MASTER_PORT`; rank 0 hosts the
/// store. Forwards SIGTERM to every rank once `stop` is raised. When a rank fails, the others get
/// `grace` to notice and exit on their own (they name the lost rank), then are killed. Returns an
/// error naming the first rank that failed.
pub fn run_local(nproc: usize, args: &[OsString], stop: &AtomicBool, grace: Duration) -> Result<(), DistError> {
    let exe = std::env::current_exe().map_err(|e| DistError(format!("cannot find this executable: {e}")))?;
    let port = free_port()?;
    let mut children: Vec<Option<Child>> = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let mut child = Command::new(&exe);
        child
            .args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env_remove("TORCHELASTIC_USE_AGENT_STORE")
            // Own process group: a terminal's Ctrl-C reaches the launcher only, which forwards
            // one SIGTERM (a second signal would make a rank stop at once, without checkpoint).
            .process_group(0);
        // SAFETY: prctl(2) is async-signal-safe; ranks get SIGTERM if the launcher dies.
        let child = unsafe {
            child.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            })
        }
        .spawn();
        match child {
            Ok(c) => children.push(Some(c)),
            Err(e) => {
                kill_all(&mut children);
                return Err(DistError(format!("cannot start rank {rank} ({}): {e}", exe.display())));
            }
        }
    }
    supervise(children, stop, grace)
}

/// Waits for every rank; see [`run_local`].
fn supervise(mut children: Vec<Option<Child>>, stop: &AtomicBool, grace: Duration) -> Result<(), DistError> {
    let mut failed: Option<(usize, String)> = None;
    let mut deadline: Option<Instant> = None;
    let mut forwarded = false;
    while children.iter().any(Option::is_some) {
        if stop.load(Ordering::SeqCst) && !forwarded {
            forwarded = true;
            children.iter().flatten().for_each(terminate);
        }
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            match child.try_wait() {
                Ok(Some(status)) => {
                    *slot = None;
                    if !status.success() && failed.is_none() {
                        failed = Some((rank, describe(status)));
                        deadline = Some(Instant::now() + grace);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    *slot = None;
                    failed.get_or_insert((rank, format!("cannot be waited for: {e}")));
                }
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            kill_all(&mut children);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match failed {
        Some((rank, how)) => Err(DistError(format!("rank {rank} of the local launch {how}"))),
        None => Ok(()),
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "failed".into(),
    }
}

/// Asks a rank to stop cleanly (SIGTERM: it checkpoints at the next step, decided with the others).
fn terminate(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on a child we spawned and have not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

fn kill_all(children: &mut [Option<Child>]) {
    for c in children.iter_mut().flatten() {
        let _ = c.kill();
        let _ = c.wait();
    }
    children.iter_mut().for_each(|c| *c = None);
}
