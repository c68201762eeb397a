//! The one system call the safe modules need that std makes only through a path: a lookup
//! relative to a held directory's descriptor. Through `/proc/self/fd/<fd>/<name>` (how
//! `base::held_dir` reaches what is inside) the kernel walks procfs first, which costs tens
//! of µs on a cold cache; a log restart on the committing thread looks for hand-offs so.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;

/// Whether the directory `dir` has an entry `name` (a symlink is not followed); an error
/// when the lookup failed for another reason than there being none.
pub(super) fn holds_entry(dir: &File, name: &str) -> std::io::Result<bool> {
    let name = CString::new(name).map_err(std::io::Error::other)?;
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a descriptor `dir` keeps open, a NUL-terminated name, and room for one `stat`
    // for the kernel to fill (never read here).
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            stat.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_files_directories_and_symlinks_by_name_and_says_when_there_is_none() {
        let dir = crate::base::testing::fresh_dir("holds-entry");
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("file"), b"x").unwrap();
        std::os::unix::fs::symlink("/nonexistent-target", dir.join("dangling")).unwrap();
        let held = File::open(&dir).unwrap();
        assert!(holds_entry(&held, "sub").unwrap());
        assert!(holds_entry(&held, "file").unwrap());
        assert!(
            holds_entry(&held, "dangling").unwrap(),
            "the link itself, not its target"
        );
        assert!(!holds_entry(&held, "missing").unwrap());
        assert!(
            holds_entry(&held, "file/below").is_err(),
            "ENOTDIR is no answer"
        );
        assert!(holds_entry(&held, "nul\0name").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
