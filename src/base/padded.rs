//! A value alone on its cache lines: state one thread writes on every commit and another
//! reads or writes as often (the capture lock, the count of log writes in flight) must not
//! share a line with state the other thread changes, or each change moves the line between
//! cores for both.

use std::ops::Deref;

/// `T`, aligned to and padded out to 128 bytes (two 64-byte lines: adjacent-line prefetch
/// pairs them on current x86 cores).
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct Padded<T>(pub T);

impl<T> Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_padded_values_never_share_a_line() {
        let pair = [Padded(1u8), Padded(2u8)];
        let (a, b) = (&pair[0] as *const _ as usize, &pair[1] as *const _ as usize);
        assert_eq!(a % 128, 0);
        assert!(b - a >= 128);
        assert_eq!(*pair[1], 2);
    }
}
