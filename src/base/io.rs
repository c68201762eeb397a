//! Positioned reads of a file something else opened (the FFI layer reads through SQLite's
//! own file handles; tests read plain files), and the open flags std does not name. It owns
//! nothing else.

/// Positioned reads of a file.
pub trait ReadAt {
    /// Reads `buf.len()` bytes at `offset`; returns `buf.len()`, or 0 at/after end of file.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;
}

/// Open flags for `std::os::unix::fs::OpenOptionsExt::custom_flags` that std does not name
/// (`libc` is not a dependency). The values are Linux's on x86_64 and aarch64; elsewhere
/// they differ, and 0 (no flag) stands in: callers must be safe without them (creating with
/// `create_new`, which never follows a symlink, checking the file type first).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod flags {
    /// Fail rather than follow a symlink in the last component.
    pub const O_NOFOLLOW: i32 = 0o400000;
    /// Do not wait opening a FIFO (nor on its reads).
    pub const O_NONBLOCK: i32 = 0o4000;
}
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod flags {
    pub const O_NOFOLLOW: i32 = 0;
    pub const O_NONBLOCK: i32 = 0;
}
pub use flags::{O_NOFOLLOW, O_NONBLOCK};
