//! Durable file writes: fsync'd files and atomic replacement (temp file, fsync, rename, fsync of
//! the directory), used by checkpoints, reports and plots.

use anyhow::{Context, Result};
use std::fs;
use std::path::Path;

pub fn fsync_file(path: &Path) -> Result<()> {
    fs::File::open(path).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {}", path.display()))
}

pub fn fsync_dir(path: &Path) -> Result<()> {
    // Directory fsync makes renames durable; some filesystems refuse it, which is not an error.
    if let Ok(f) = fs::File::open(path) {
        let _ = f.sync_all();
    }
    Ok(())
}

pub fn write_file_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    f.sync_all().with_context(|| format!("cannot sync {}", path.display()))
}

/// Replaces `path` atomically with `bytes` (temp file, fsync, rename, fsync of the directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = write_file_synced(&tmp, bytes)
        .and_then(|_| fs::rename(&tmp, path).with_context(|| format!("cannot rename into {}", path.display())));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res?;
    fsync_dir(dir)
}
