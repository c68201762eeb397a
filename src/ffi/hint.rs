//! CPU hints the layers below may not issue themselves (they are `unsafe` intrinsics): the
//! spool asks for the memory its next record will be built in, so that the commit path's
//! copy of a page does not wait for cache lines the spool writer thread last held.

/// Asks the CPU to bring `len` bytes from `start` into this core's cache, for writing.
pub(crate) fn prefetch_for_write(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        for line in (0..len).step_by(64) {
            // SAFETY: a prefetch is a hint that never faults or changes memory, whatever the
            // address (wrapping_add makes no claim on it either); the SSE it needs is part of
            // the x86-64 baseline.
            unsafe { _mm_prefetch::<_MM_HINT_ET0>(start.wrapping_add(line) as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}
