//! What unit tests across the crate share: a fresh directory of their own, and a file held
//! in memory to read through [`ReadAt`].

use super::io::ReadAt;
use std::path::PathBuf;

/// An empty directory for one test, `replica-<name>-<pid>` under the system's temporary
/// directory, emptied first if an earlier run left it.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("replica-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A file held in memory: reads past its end come back short.
pub struct InMemory(pub Vec<u8>);

impl ReadAt for InMemory {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let from = usize::try_from(offset).map_or(self.0.len(), |o| o.min(self.0.len()));
        let n = buf.len().min(self.0.len() - from);
        buf[..n].copy_from_slice(&self.0[from..from + n]);
        Ok(n)
    }
}
