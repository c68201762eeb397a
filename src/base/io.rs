//! Positioned reads of a file something else opened (the FFI layer reads through SQLite's
//! own file handles; tests read plain files). It owns the trait only.

/// Positioned reads of a file.
pub trait ReadAt {
    /// Reads `buf.len()` bytes at `offset`; returns `buf.len()`, or 0 at/after end of file.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;
}
