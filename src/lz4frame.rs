//! The LZ4 frame format (lz4.org, "LZ4 Frame Format Description" 1.6.x), which Litestream 0.3
//! wraps every snapshot and WAL segment in (and ltx v0.5.0-0.5.1 every page, which
//! `ltx::frame` reads with this module's descriptor), decoded as a stream: magic, frame descriptor
//! (its header checksum verified), blocks of at most the declared block size (their
//! checksums verified when present; linked blocks decoded against the previous 64 KiB),
//! the end mark, the content checksum and the content size when declared. One frame per
//! object: anything after it is refused, and so is a frame that ends before its end mark
//! (a truncated object). Memory is bounded by the declared block size (at most 4 MiB)
//! whatever the declared content size says. `xxh32` is the checksum the format uses.

use std::fmt;
use std::io::{self, Read};

const MAGIC: u32 = 0x184D_2204;
/// The window a linked block may refer back into.
const WINDOW: usize = 64 << 10;

/// What is wrong with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lz4Error {
    Truncated,
    Invalid(String),
}

impl fmt::Display for Lz4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lz4Error::Truncated => write!(f, "truncated LZ4 frame (it ends before its end mark)"),
            Lz4Error::Invalid(why) => write!(f, "invalid LZ4 frame: {why}"),
        }
    }
}

impl std::error::Error for Lz4Error {}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Lz4Error::Invalid(why.into()))
}

/// Fills `buf` from `r`; a short read is a truncated frame.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            io::Error::new(io::ErrorKind::InvalidData, Lz4Error::Truncated)
        }
        _ => e,
    })
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    read_full(r, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// The frame descriptor's flags that matter for decoding.
#[derive(Debug, Clone, Copy)]
pub struct Descriptor {
    pub independent: bool,
    pub block_checksums: bool,
    pub content_size: Option<u64>,
    pub content_checksum: bool,
    pub block_max: usize,
}

impl Descriptor {
    /// Its length in the frame, magic and header checksum included.
    pub fn encoded_len(&self) -> u64 {
        7 + if self.content_size.is_some() { 8 } else { 0 }
    }
}

/// A frame's magic and descriptor, its header checksum verified.
pub fn read_descriptor(r: &mut impl Read) -> io::Result<Descriptor> {
    let magic = read_u32(r)?;
    if magic.to_le_bytes() == *b"age-" {
        return Err(invalid(
            "the object is age-encrypted (age-encryption.org): libreplica decrypts its own LTX replicas (`age:`), not Litestream 0.3's encrypted objects",
        ));
    }
    if magic != MAGIC {
        return Err(invalid(format!("magic {magic:#010x}, not {MAGIC:#010x}")));
    }
    let mut fd = [0u8; 2];
    read_full(r, &mut fd)?;
    let (flg, bd) = (fd[0], fd[1]);
    if flg >> 6 != 1 || flg & 0b10 != 0 || bd & 0x8F != 0 {
        return Err(invalid(format!(
            "unknown version or reserved bits (FLG {flg:#04x}, BD {bd:#04x})"
        )));
    }
    if flg & 1 != 0 {
        return Err(invalid("it needs a dictionary"));
    }
    let block_max = match (bd >> 4) & 7 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        n => return Err(invalid(format!("block size code {n}"))),
    };
    let mut hashed = fd.to_vec();
    let content_size = if flg & 0b1000 != 0 {
        let mut b = [0u8; 8];
        read_full(r, &mut b)?;
        hashed.extend_from_slice(&b);
        Some(u64::from_le_bytes(b))
    } else {
        None
    };
    let mut hc = [0u8; 1];
    read_full(r, &mut hc)?;
    if hc[0] != (xxh32(&hashed, 0) >> 8) as u8 {
        return Err(invalid("frame descriptor checksum mismatch"));
    }
    Ok(Descriptor {
        independent: flg & 0b10_0000 != 0,
        block_checksums: flg & 0b1_0000 != 0,
        content_size,
        content_checksum: flg & 0b100 != 0,
        block_max,
    })
}

/// Decodes one LZ4 frame from `inner` as a stream of its content.
pub struct FrameReader<R: Read> {
    inner: R,
    desc: Option<Descriptor>,
    /// Decoded bytes: a linked block's window, then the current block at `pos..end`.
    /// Sized once per frame, to the window and the declared block size.
    out: Vec<u8>,
    end: usize,
    pos: usize,
    src: Vec<u8>,
    hasher: Xxh32,
    content_len: u64,
    done: bool,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader {
            inner,
            desc: None,
            out: Vec::new(),
            end: 0,
            pos: 0,
            src: Vec::new(),
            hasher: Xxh32::new(0),
            content_len: 0,
            done: false,
        }
    }

    /// Decodes the next block into `out`; `false` at the end of the frame (all checked).
    fn next_block(&mut self) -> io::Result<bool> {
        let d = match self.desc {
            Some(d) => d,
            None => {
                let d = *self.desc.insert(read_descriptor(&mut self.inner)?);
                self.out = vec![0; if d.independent { 0 } else { WINDOW } + d.block_max];
                d
            }
        };
        let word = read_u32(&mut self.inner)?;
        if word == 0 {
            return self.finish_frame(d).map(|()| false);
        }
        let (stored, len) = (word & 0x8000_0000 != 0, (word & 0x7FFF_FFFF) as usize);
        if len > d.block_max {
            return Err(invalid(format!(
                "a block of {len} bytes in a frame of {}-byte blocks",
                d.block_max
            )));
        }
        self.src.resize(len, 0);
        read_full(&mut self.inner, &mut self.src)?;
        if d.block_checksums && read_u32(&mut self.inner)? != xxh32(&self.src, 0) {
            return Err(invalid("block checksum mismatch"));
        }
        // Keep the last 64 KiB of output for a linked block to refer to.
        let keep = if d.independent {
            0
        } else {
            self.end.min(WINDOW)
        };
        self.out.copy_within(self.end - keep..self.end, 0);
        let n = if stored {
            self.out[keep..keep + len].copy_from_slice(&self.src);
            len
        } else {
            let (dict, dst) = self.out.split_at_mut(keep);
            lz4_flex::block::decompress_into_with_dict(&self.src, &mut dst[..d.block_max], dict)
                .map_err(|e| invalid(format!("corrupt block: {e}")))?
        };
        self.end = keep + n;
        self.hasher.update(&self.out[keep..self.end]);
        self.content_len += n as u64;
        self.pos = keep;
        Ok(true)
    }

    fn finish_frame(&mut self, d: Descriptor) -> io::Result<()> {
        if d.content_checksum && read_u32(&mut self.inner)? != self.hasher.finish() {
            return Err(invalid("content checksum mismatch"));
        }
        if let Some(want) = d.content_size.filter(|&w| w != self.content_len) {
            return Err(invalid(format!(
                "{} bytes of content, {want} declared",
                self.content_len
            )));
        }
        let mut extra = [0u8; 1];
        if self.inner.read(&mut extra)? != 0 {
            return Err(invalid("bytes after the end of the frame"));
        }
        self.done = true;
        Ok(())
    }
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.end {
            if self.done || !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.end - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

const P1: u32 = 2_654_435_761;
const P2: u32 = 2_246_822_519;
const P3: u32 = 3_266_489_917;
const P4: u32 = 668_265_263;
const P5: u32 = 374_761_393;

/// XXH32, streaming.
#[derive(Debug, Clone)]
struct Xxh32 {
    seed: u32,
    v: [u32; 4],
    buf: [u8; 16],
    buffered: usize,
    total: u64,
}

fn round(acc: u32, lane: u32) -> u32 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(13)
        .wrapping_mul(P1)
}

fn lane(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl Xxh32 {
    fn new(seed: u32) -> Xxh32 {
        Xxh32 {
            seed,
            v: [
                seed.wrapping_add(P1).wrapping_add(P2),
                seed.wrapping_add(P2),
                seed,
                seed.wrapping_sub(P1),
            ],
            buf: [0; 16],
            buffered: 0,
            total: 0,
        }
    }

    fn stripe(v: &mut [u32; 4], s: &[u8]) {
        for (i, acc) in v.iter_mut().enumerate() {
            *acc = round(*acc, lane(&s[4 * i..]));
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.buffered > 0 {
            let take = (16 - self.buffered).min(data.len());
            self.buf[self.buffered..self.buffered + take].copy_from_slice(&data[..take]);
            self.buffered += take;
            data = &data[take..];
            if self.buffered < 16 {
                return;
            }
            let buf = self.buf;
            Self::stripe(&mut self.v, &buf);
            self.buffered = 0;
        }
        let mut stripes = data.chunks_exact(16);
        for s in &mut stripes {
            Self::stripe(&mut self.v, s);
        }
        let rest = stripes.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buffered = rest.len();
    }

    fn finish(&self) -> u32 {
        let [v1, v2, v3, v4] = self.v;
        let mut h = if self.total >= 16 {
            v1.rotate_left(1)
                .wrapping_add(v2.rotate_left(7))
                .wrapping_add(v3.rotate_left(12))
                .wrapping_add(v4.rotate_left(18))
        } else {
            self.seed.wrapping_add(P5)
        };
        h = h.wrapping_add(self.total as u32);
        let mut words = self.buf[..self.buffered].chunks_exact(4);
        for w in &mut words {
            h = h
                .wrapping_add(lane(w).wrapping_mul(P3))
                .rotate_left(17)
                .wrapping_mul(P4);
        }
        for &b in words.remainder() {
            h = h
                .wrapping_add(u32::from(b).wrapping_mul(P5))
                .rotate_left(11)
                .wrapping_mul(P1);
        }
        h ^= h >> 15;
        h = h.wrapping_mul(P2);
        h ^= h >> 13;
        h = h.wrapping_mul(P3);
        h ^ (h >> 16)
    }
}

/// `data` as one LZ4 frame the way Litestream 0.3 writes them (independent 4 MiB blocks,
/// a content checksum): for tests and tools that build 0.3 replicas.
pub fn encode_frame(data: &[u8]) -> Vec<u8> {
    let mut f = MAGIC.to_le_bytes().to_vec();
    let fd = [0b0110_0100u8, 0x70];
    f.extend_from_slice(&fd);
    f.push((xxh32(&fd, 0) >> 8) as u8);
    for chunk in data.chunks(4 << 20) {
        let c = lz4_flex::block::compress(chunk);
        f.extend_from_slice(&(c.len() as u32).to_le_bytes());
        f.extend_from_slice(&c);
    }
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&xxh32(data, 0).to_le_bytes());
    f
}

/// XXH32 of `data` with `seed`.
pub fn xxh32(data: &[u8], seed: u32) -> u32 {
    let mut h = Xxh32::new(seed);
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An LZ4 frame of `data` in blocks of `block` bytes (64 KiB maximum declared),
    /// independent, with block and content checksums and the content size.
    fn frame(data: &[u8], block: usize, stored_every: usize) -> Vec<u8> {
        let mut f = MAGIC.to_le_bytes().to_vec();
        let fd = [0b0111_1100u8, 0x40];
        let mut hashed = fd.to_vec();
        hashed.extend_from_slice(&(data.len() as u64).to_le_bytes());
        f.extend_from_slice(&hashed);
        f.push((xxh32(&hashed, 0) >> 8) as u8);
        for (i, chunk) in data.chunks(block).enumerate() {
            let (word, body) = if stored_every > 0 && i % stored_every == 0 {
                (chunk.len() as u32 | 0x8000_0000, chunk.to_vec())
            } else {
                let c = lz4_flex::block::compress(chunk);
                (c.len() as u32, c)
            };
            f.extend_from_slice(&word.to_le_bytes());
            f.extend_from_slice(&body);
            f.extend_from_slice(&xxh32(&body, 0).to_le_bytes());
        }
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&xxh32(data, 0).to_le_bytes());
        f
    }

    /// `data` as a frame of linked blocks of `block` bytes, each compressed against the
    /// 64 KiB of content before it.
    fn linked_frame(data: &[u8], block: usize) -> Vec<u8> {
        let mut f = MAGIC.to_le_bytes().to_vec();
        let fd = [0b0100_0100u8, 0x40];
        f.extend_from_slice(&fd);
        f.push((xxh32(&fd, 0) >> 8) as u8);
        for start in (0..data.len()).step_by(block) {
            let chunk = &data[start..(start + block).min(data.len())];
            let dict = &data[start.saturating_sub(WINDOW)..start];
            let c = lz4_flex::block::compress_with_dict(chunk, dict);
            f.extend_from_slice(&(c.len() as u32).to_le_bytes());
            f.extend_from_slice(&c);
        }
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&xxh32(data, 0).to_le_bytes());
        f
    }

    #[test]
    fn decodes_linked_blocks_against_the_content_before_them() {
        let pattern = data(11, 3000);
        let d: Vec<u8> = pattern.iter().cycle().take(150_000).copied().collect();
        for block in [1000, 4096, 65_536] {
            let f = linked_frame(&d, block);
            assert!(
                f.len() < d.len() / 10,
                "blocks refer back: {} bytes",
                f.len()
            );
            assert_eq!(decode(&f).unwrap(), d, "{block}");
        }
    }

    fn decode(f: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        FrameReader::new(f).read_to_end(&mut out)?;
        Ok(out)
    }

    fn data(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Compressible: runs of a few distinct bytes.
                if i % 64 < 40 {
                    (i / 64) as u8
                } else {
                    x as u8
                }
            })
            .collect()
    }

    #[test]
    fn xxh32_matches_the_reference_and_streams() {
        assert_eq!(xxh32(b"", 0), 0x02CC_5D05);
        assert_eq!(xxh32(b"abc", 0), 0x32D1_53FF);
        let d = data(7, 1000);
        let mut h = Xxh32::new(0);
        for piece in d.chunks(7) {
            h.update(piece);
        }
        assert_eq!(h.finish(), xxh32(&d, 0));
    }

    #[test]
    fn decodes_frames_of_compressed_and_stored_blocks() {
        let seed = 20;
        println!("seed {seed}");
        let d = data(seed, 200_000);
        for (block, stored) in [(65_536, 0), (65_536, 2), (1000, 3), (65_536, 1)] {
            assert_eq!(
                decode(&frame(&d, block, stored)).unwrap(),
                d,
                "{block} {stored}"
            );
        }
        assert_eq!(decode(&frame(b"", 100, 0)).unwrap(), b"");
        assert_eq!(decode(&encode_frame(&d)).unwrap(), d);
    }

    /// Seeded mutations of valid frames (bytes flipped, cut, duplicated, with the
    /// checksums left as they were or not present): decoding never panics, and what it
    /// returns is never more than the frame's blocks can hold.
    #[test]
    fn mutated_frames_never_panic_nor_overproduce() {
        let seed = 0x5eed_u64;
        println!("seed {seed}");
        let mut x = seed;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let d = data(seed, 5000);
        let frames = [frame(&d, 65_536, 0), frame(&d, 1000, 3), encode_frame(&d)];
        for round in 0..1500 {
            let mut f = frames[round % frames.len()].clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % f.len();
                match next() % 3 {
                    0 => f[at] ^= 1 << (next() % 8),
                    1 => f.truncate(at),
                    _ => f.insert(at, next() as u8),
                }
                if f.is_empty() {
                    break;
                }
            }
            if let Ok(out) = decode(&f) {
                assert!(out.len() <= 255 * f.len() + 65_536, "round {round}");
            }
        }
    }

    #[test]
    fn refuses_truncated_corrupt_and_oversized_frames() {
        let d = data(3, 150_000);
        let f = frame(&d, 65_536, 0);
        let err = |f: &[u8]| decode(f).unwrap_err().into_inner().unwrap().to_string();
        // Truncated anywhere, at a block boundary too.
        for cut in [
            0,
            3,
            7,
            11,
            20,
            f.len() / 2,
            f.len() - 4,
            f.len() - 8,
            f.len() - 1,
        ] {
            assert!(
                err(&f[..cut]).contains("truncated"),
                "cut at {cut}: {}",
                err(&f[..cut])
            );
        }
        let mut first_block_end =
            15 + 4 + u32::from_le_bytes(f[15..19].try_into().unwrap()) as usize + 4;
        assert!(err(&f[..first_block_end]).contains("truncated"));
        first_block_end -= 1;
        assert!(err(&f[..first_block_end]).contains("truncated"));
        let flip = |at: usize| {
            let mut g = f.clone();
            g[at] ^= 0x10;
            err(&g)
        };
        assert!(flip(0).contains("magic"));
        let age = err(b"age-encryption.org/v1\n-> X25519 abc\n");
        assert!(age.contains("age-encrypted"), "{age}");
        assert!(flip(6).contains("descriptor checksum"));
        assert!(flip(30).contains("checksum"), "{}", flip(30));
        let mut trailing = f.clone();
        trailing.push(0);
        assert!(err(&trailing).contains("after the end"));
        // A block longer than the declared block size is refused before it is read.
        let mut big = f[..15].to_vec();
        big.extend_from_slice(&(0x7FFF_FFFFu32).to_le_bytes());
        assert!(err(&big).contains("block of 2147483647 bytes"));
        // A wrong declared content size.
        let mut g = f.clone();
        g[7] ^= 1;
        let hashed = g[4..14].to_vec();
        g[14] = (xxh32(&hashed, 0) >> 8) as u8;
        assert!(err(&g).contains("declared"), "{}", err(&g));
    }
}
