//! Positioned reads of a file something else opened (the FFI layer reads through SQLite's
//! own file handles; tests read plain files), and the open flags std does not name. It owns
//! nothing else.

/// Positioned reads of a file.
pub trait ReadAt {
    /// Reads `buf.len()` bytes at `offset`; returns `buf.len()`, or 0 at/after end of file.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;
}

/// Open flags for `std::os::unix::fs::OpenOptionsExt::custom_flags` that std does not name,
/// with the target's own values (they differ between architectures: `O_NOFOLLOW` is
/// 0o400000 on x86-64 and 0o100000 on aarch64, where 0o400000 is `O_LARGEFILE`).
/// Fail rather than follow a symlink in the last component.
pub const O_NOFOLLOW: i32 = libc::O_NOFOLLOW;
/// Do not wait opening a FIFO (nor on its reads).
pub const O_NONBLOCK: i32 = libc::O_NONBLOCK;
