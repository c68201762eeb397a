//! The rollback journal an apply writes before it changes the copy: SQLite's own format
//! (`<db>-journal`: a header sector, then each page the apply overwrites as it was, with its
//! number and checksum), so that a copy an apply left half-written is a database with a hot
//! journal. SQLite then refuses it to read-only readers instead of serving a torn state,
//! and the next connection that may write (the follower's own) plays it back before
//! anything else. Deleting the journal is the apply's commit. The encoding is pure; the
//! writer takes the copy and returns when the journal is on disk.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// SQLite's journal magic.
const MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
/// The journal's header takes one sector of this size (SQLite's default sector size).
const SECTOR: u32 = 4096;

/// `<db>-journal`, where SQLite looks for a hot journal.
pub fn path_of(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-journal");
    PathBuf::from(name)
}

/// The header sector: `records` page records, checksummed with `nonce`, for a database of
/// `orig_pages` pages of `page_size` bytes (SQLite truncates the file back to that size).
pub fn header(records: u32, nonce: u32, orig_pages: u32, page_size: u32) -> Vec<u8> {
    let mut h = vec![0u8; SECTOR as usize];
    h[..8].copy_from_slice(&MAGIC);
    for (i, v) in [records, nonce, orig_pages, SECTOR, page_size]
        .iter()
        .enumerate()
    {
        h[8 + 4 * i..12 + 4 * i].copy_from_slice(&v.to_be_bytes());
    }
    h
}

/// A page's checksum in the journal: the nonce plus every 200th byte from the end.
pub fn checksum(nonce: u32, page: &[u8]) -> u32 {
    let mut sum = nonce;
    let mut i = page.len() as isize - 200;
    while i > 0 {
        sum = sum.wrapping_add(u32::from(page[i as usize]));
        i -= 200;
    }
    sum
}

/// Writes and syncs the journal of an apply that will overwrite `pages` of `copy`, a
/// database of `orig_pages` pages of `page_size` bytes; pages past its end are not
/// journaled (the playback truncates them away).
pub fn write(
    journal: &Path,
    mode: u32,
    copy: &File,
    (orig_pages, page_size): (u32, u32),
    pages: &[u32],
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // The lock-byte page is never a database page; SQLite's playback stops at it.
    let lock_page = crate::ltx::lock_pgno(page_size);
    let kept: Vec<u32> = (pages.iter().copied())
        .filter(|&p| p >= 1 && p <= orig_pages && p != lock_page)
        .collect();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5eed, |d| d.subsec_nanos() | 1);
    let mut out = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(crate::base::private_fs::O_NOFOLLOW)
            .open(journal)?,
    );
    out.write_all(&header(kept.len() as u32, nonce, orig_pages, page_size))?;
    let mut page = vec![0u8; page_size as usize];
    for pgno in kept {
        page.fill(0);
        let _ = copy.read_at(&mut page, u64::from(pgno - 1) * u64::from(page_size))?;
        out.write_all(&pgno.to_be_bytes())?;
        out.write_all(&page)?;
        out.write_all(&checksum(nonce, &page).to_be_bytes())?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    sync_dir(journal) // its name, too, must survive a crash before any page is written
}

fn sync_dir(file: &Path) -> std::io::Result<()> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
    File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

/// Deletes the journal (the apply's commit) and syncs its directory, so that a crash
/// cannot bring it back to roll a finished apply back.
pub fn commit(journal: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(journal) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(journal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_sqlites() {
        let h = header(3, 0xabcd, 7, 4096);
        assert_eq!(h.len(), 4096);
        assert_eq!(&h[..8], &MAGIC);
        let word = |i: usize| u32::from_be_bytes(h[i..i + 4].try_into().unwrap());
        assert_eq!(
            [word(8), word(12), word(16), word(20), word(24)],
            [3, 0xabcd, 7, 4096, 4096]
        );
        assert!(h[28..].iter().all(|&b| b == 0));
    }

    #[test]
    fn the_checksum_adds_every_200th_byte_from_the_end_to_the_nonce() {
        let mut page = vec![0u8; 1024];
        assert_eq!(checksum(5, &page), 5);
        // Offsets 824, 624, 424, 224, 24 count; 0 does not.
        for i in [824, 624, 424, 224, 24, 0, 825] {
            page[i] = 1;
        }
        assert_eq!(checksum(5, &page), 10);
        assert_eq!(checksum(u32::MAX, &page), 4);
    }
}
