//! The age envelope of an encrypted replica: every LTX object is an age file (X25519
//! recipients, 64 KiB STREAM chunks), so the standard `age -d` opens any of them. Pure: it
//! seals and opens bytes, parses keys and headers, and maps a plaintext range onto the
//! ciphertext chunks that hold it (a ranged GET of an encrypted object needs only the
//! header and those chunks). It knows nothing of stores or LTX.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::str::FromStr;

use age::x25519::{Identity, Recipient};

/// How every age file begins (the version line of its header).
pub const MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// Plaintext bytes per STREAM chunk, and the chunk's size once sealed (plus its tag).
pub const CHUNK: u64 = 64 * 1024;
pub const SEALED_CHUNK: u64 = CHUNK + 16;
/// The payload nonce that follows the header.
const NONCE_LEN: u64 = 16;
/// The tag of the stanza that names the recipients an object is sealed to (fingerprints
/// of their public keys, no key material). Every age implementation skips stanza types it
/// does not know, so the file stays a standard age file.
const SEALED_TO_TAG: &str = "libreplica-to";
/// The most recipients an object is sealed to: with the label and age's grease they keep
/// every header well under [`MAX_HEADER`].
pub const MAX_RECIPIENTS: usize = 64;
/// The longest header read: X25519 stanzas are under 100 bytes each, so this bounds what a
/// hostile object can make a reader hold before it is refused.
pub const MAX_HEADER: u64 = 16 * 1024;

/// Why an envelope could not be made or opened; never carries key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// Not an age file at all (a plaintext object where an encrypted one belongs).
    NotSealed,
    /// An age header that is cut short, malformed, or longer than [`MAX_HEADER`].
    BadHeader(String),
    /// None of the identities opens the file.
    NoMatchingIdentity,
    /// A chunk failed authentication, or the payload is cut short.
    Corrupt(String),
    /// A key that does not parse (says which, never its secret text).
    BadKey(String),
    /// The plaintext is longer than the caller's bound.
    TooLong(u64),
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealError::NotSealed => write!(
                f,
                "not an age file (a plaintext object in an encrypted replica?)"
            ),
            SealError::BadHeader(m) => write!(f, "bad age header: {m}"),
            SealError::NoMatchingIdentity => {
                write!(f, "none of the configured age identities can decrypt it")
            }
            SealError::Corrupt(m) => write!(f, "age payload refused: {m}"),
            SealError::BadKey(m) => write!(f, "{m}"),
            SealError::TooLong(max) => write!(f, "holds more than the {max} bytes expected"),
        }
    }
}

impl std::error::Error for SealError {}

/// The keys of an encrypted replica: objects are sealed to every recipient and opened with
/// any identity. `Debug` shows public keys only.
#[derive(Clone)]
pub struct Keys {
    recipients: Vec<Recipient>,
    identities: Vec<Identity>,
    /// The recipients' fingerprints, sorted: what every object sealed now is labelled with.
    sealed_to: SealedTo,
}

/// The label stanza, as an age recipient whose stanza wraps no key.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SealedTo(Vec<String>);

impl age::Recipient for SealedTo {
    fn wrap_file_key(
        &self,
        _: &age_core::format::FileKey,
    ) -> Result<
        (
            Vec<age_core::format::Stanza>,
            std::collections::HashSet<String>,
        ),
        age::EncryptError,
    > {
        let stanza = age_core::format::Stanza {
            tag: SEALED_TO_TAG.to_string(),
            args: self.0.clone(),
            body: Vec::new(),
        };
        Ok((vec![stanza], std::collections::HashSet::new()))
    }
}

/// A recipient's fingerprint: the first 8 bytes of the SHA-256 of its `age1…` text, in hex.
fn fingerprint(recipient: &Recipient) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, recipient.to_string().as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The recipients' fingerprints a sealed object's header lists, sorted; `None` for a header
/// without the label (written by another tool, or before objects were labelled).
pub fn sealed_to(head: &[u8]) -> Option<Vec<String>> {
    let head = &head[..head.len().min(MAX_HEADER as usize)];
    let prefix = format!("-> {SEALED_TO_TAG}");
    head.split(|b| *b == b'\n')
        .take_while(|l| !l.starts_with(b"--- "))
        .filter_map(|l| std::str::from_utf8(l).ok())
        .find_map(|l| {
            let rest = l.strip_prefix(prefix.as_str())?;
            if !rest.is_empty() && !rest.starts_with(' ') {
                return None;
            }
            let mut fps: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
            fps.sort();
            Some(fps)
        })
}

impl Keys {
    /// Keys from recipient strings (`age1…`) and identities (`AGE-SECRET-KEY-1…`). With no
    /// recipient, objects are sealed to the identities' own public keys. At least one
    /// identity must open what the recipients seal: the uploader reads its own objects back
    /// to compact them.
    pub fn new(recipients: &[String], identities: Vec<Identity>) -> Result<Keys, SealError> {
        if identities.is_empty() {
            return Err(SealError::BadKey(
                "age: no identity given; compaction and restore decrypt objects, so at least one identity (AGE-SECRET-KEY-1… or an identity file) is required".into(),
            ));
        }
        let mut parsed = Vec::new();
        for (i, r) in recipients.iter().enumerate() {
            parsed.push(Keys::check_recipient(i, r)?);
        }
        if parsed.len() > MAX_RECIPIENTS {
            return Err(SealError::BadKey(format!(
                "age: {} recipients; at most {MAX_RECIPIENTS} (each adds to every object's header)",
                parsed.len()
            )));
        }
        if parsed.is_empty() {
            parsed = identities.iter().map(Identity::to_public).collect();
        }
        let own: Vec<String> = identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect();
        if !parsed.iter().any(|r| own.contains(&r.to_string())) {
            return Err(SealError::BadKey(
                "age: none of the identities belongs to a recipient, so objects written could not be read back (compaction, restore)".into(),
            ));
        }
        let mut fps: Vec<String> = parsed.iter().map(fingerprint).collect();
        fps.sort();
        fps.dedup();
        Ok(Keys {
            recipients: parsed,
            identities,
            sealed_to: SealedTo(fps),
        })
    }

    /// Whether an object labelled `sealed_to` (see [`sealed_to`]; `None`: unlabelled) was
    /// sealed to other recipients than those listed now: an older object that a snapshot and
    /// retention have not replaced yet.
    pub fn sealed_otherwise(&self, sealed_to: Option<&[String]>) -> bool {
        sealed_to != Some(self.sealed_to.0.as_slice())
    }

    /// Recipient number `i` (from 0), parsed. Its text is never shown: a secret key put
    /// among the recipients by mistake must not reach a message.
    pub fn check_recipient(i: usize, r: &str) -> Result<Recipient, SealError> {
        Recipient::from_str(r.trim()).map_err(|_| {
            SealError::BadKey(format!(
                "age recipient #{} is not an X25519 recipient (age1…){}",
                i + 1,
                if r.to_ascii_lowercase().contains("secret-key") {
                    ": it is a secret key (an identity); give its public key, `age-keygen -y`"
                } else {
                    ""
                }
            ))
        })
    }

    /// The recipients, as `age1…` strings.
    pub fn recipients(&self) -> Vec<String> {
        self.recipients.iter().map(Recipient::to_string).collect()
    }

    /// The identities' public keys (never the secrets).
    pub fn identity_publics(&self) -> Vec<String> {
        self.identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("recipients", &self.recipients())
            .field("identities", &self.identity_publics())
            .finish()
    }
}

impl PartialEq for Keys {
    fn eq(&self, other: &Keys) -> bool {
        self.recipients() == other.recipients()
            && self.identity_publics() == other.identity_publics()
    }
}

impl Eq for Keys {}

/// The identities in `text`: one `AGE-SECRET-KEY-1…` per line, `#` comments and blank lines
/// skipped (the format `age-keygen` writes). `source` names where it came from, for errors.
pub fn parse_identities(text: &str, source: &str) -> Result<Vec<Identity>, SealError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let id = Identity::from_str(line).map_err(|_| {
            SealError::BadKey(format!(
                "{source}: line {} is not an age X25519 identity (AGE-SECRET-KEY-1…)",
                n + 1
            ))
        })?;
        out.push(id);
    }
    if out.is_empty() {
        return Err(SealError::BadKey(format!(
            "{source}: holds no age identity"
        )));
    }
    Ok(out)
}

/// Whether `head` (an object's first bytes) begins an age file.
pub fn is_sealed(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}

/// A writer that seals what is written to it into `out`; [`SealWriter::finish`] writes the
/// last chunk and returns `out`.
pub struct SealWriter<W: Write>(age::stream::StreamWriter<W>);

impl<W: Write> SealWriter<W> {
    pub fn new(keys: &Keys, out: W) -> io::Result<SealWriter<W>> {
        let recipients = keys
            .recipients
            .iter()
            .map(|r| r as &dyn age::Recipient)
            .chain(std::iter::once(&keys.sealed_to as &dyn age::Recipient));
        let enc = age::Encryptor::with_recipients(recipients)
            .map_err(|e| io::Error::other(format!("age: {e}")))?;
        Ok(SealWriter(enc.wrap_output(out)?))
    }
    pub fn finish(self) -> io::Result<W> {
        self.0.finish()
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `plain`, sealed to the recipients.
pub fn seal(plain: &[u8], keys: &Keys) -> Result<Vec<u8>, SealError> {
    let mut w = SealWriter::new(keys, Vec::with_capacity(plain.len() + 512))
        .map_err(|e| SealError::BadKey(e.to_string()))?;
    w.write_all(plain)
        .and_then(|_| w.finish())
        .map_err(|e| SealError::Corrupt(e.to_string()))
}

/// The length of the header plus the payload nonce: where the first chunk starts. `None`
/// when `head` ends before the header does (read more, up to [`MAX_HEADER`]).
pub fn payload_start(head: &[u8]) -> Result<Option<u64>, SealError> {
    if head.len() < MAGIC.len() {
        return if MAGIC.starts_with(head) {
            Ok(None)
        } else {
            Err(SealError::NotSealed)
        };
    }
    if !is_sealed(head) {
        return Err(SealError::NotSealed);
    }
    // The header ends with its MAC line, "--- <base64>\n".
    let mut at = 0;
    while let Some(nl) = head[at..].iter().position(|b| *b == b'\n') {
        let line = &head[at..at + nl];
        at += nl + 1;
        if line.starts_with(b"--- ") {
            let start = at as u64 + NONCE_LEN;
            if start > MAX_HEADER {
                return Err(SealError::BadHeader(format!(
                    "{start} bytes, over the {MAX_HEADER} read"
                )));
            }
            return Ok((head.len() as u64 >= start).then_some(start));
        }
    }
    if head.len() as u64 >= MAX_HEADER {
        return Err(SealError::BadHeader(format!(
            "no end of header in its first {MAX_HEADER} bytes"
        )));
    }
    Ok(None)
}

/// The plaintext length of a sealed object of `sealed_len` bytes whose chunks start at
/// `start`; `None` for a length no age file can have.
pub fn plain_len(start: u64, sealed_len: u64) -> Option<u64> {
    let payload = sealed_len.checked_sub(start)?;
    let chunks = payload.div_ceil(SEALED_CHUNK).max(1);
    let plain = payload.checked_sub(chunks * 16)?;
    // Only the last chunk may be short, it holds at least its tag, and only an empty file
    // has an empty one.
    let rest = payload % SEALED_CHUNK;
    (!(1..=16).contains(&rest) || payload == 16).then_some(plain)
}

/// The most bytes a sealed object holding at most `plain` bytes can have, header included.
pub fn max_sealed_len(plain: u64) -> u64 {
    plain
        .saturating_add((plain / CHUNK + 1) * 16)
        .saturating_add(MAX_HEADER + NONCE_LEN)
}

/// The sealed bytes `[from, to)` that hold plaintext `[offset, offset+len)`, for chunks
/// starting at `start`: whole chunks, since each is authenticated as one.
/// Saturates rather than overflows for ranges no object can reach.
pub fn sealed_span(start: u64, offset: u64, len: u64) -> (u64, u64) {
    let first = seek_point(offset) / CHUNK;
    let last = offset.saturating_add(len.max(1) - 1) / CHUNK;
    let at = |chunk: u64| start.saturating_add(chunk.saturating_mul(SEALED_CHUNK));
    (at(first), at(last.saturating_add(1)))
}

/// Opens a whole sealed object, refusing one whose plaintext exceeds `max_plain`.
pub fn open(sealed: &[u8], keys: &Keys, max_plain: u64) -> Result<Vec<u8>, SealError> {
    payload_start(&sealed[..sealed.len().min(MAGIC.len())])?;
    let mut r = decryptor(sealed, keys)?;
    let mut out = Vec::new();
    (&mut r)
        .take(max_plain.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| SealError::Corrupt(e.to_string()))?;
    if out.len() as u64 > max_plain {
        return Err(SealError::TooLong(max_plain));
    }
    Ok(out)
}

/// Opens plaintext `[offset, offset+len)` (fewer at the end) of a sealed object from its
/// header bytes `head` and the sealed bytes `span` read at `span_at` (as [`sealed_span`]
/// gave; a span shorter than asked reached the object's end).
pub fn open_range(
    head: &[u8],
    span_at: u64,
    span: &[u8],
    keys: &Keys,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, SealError> {
    // What the span holds (all its chunks; at the object's end, up to the end): a range
    // past it is cut there, and one wholly past it is empty, as at the end of any object.
    if span.is_empty() {
        return Ok(Vec::new());
    }
    let first = span_at
        .checked_sub(head.len() as u64)
        .filter(|d| d % SEALED_CHUNK == 0)
        .ok_or_else(|| SealError::Corrupt("a range not at a chunk boundary".into()))?
        / SEALED_CHUNK;
    let chunks = (span.len() as u64).div_ceil(SEALED_CHUNK);
    let held = (span.len() as u64)
        .checked_sub(chunks * 16)
        .ok_or_else(|| SealError::Corrupt("a chunk shorter than its tag".into()))?;
    let end = first.saturating_mul(CHUNK).saturating_add(held);
    if offset >= end {
        return Ok(Vec::new());
    }
    let len = len.min(end - offset);
    let sparse = Sparse {
        head,
        span_at,
        span,
        pos: 0,
    };
    let mut r = decryptor(sparse, keys)?;
    let at = seek_point(offset);
    r.seek(SeekFrom::Start(at))
        .and_then(|_| io::copy(&mut (&mut r).take(offset - at), &mut io::sink()))
        .map_err(|e| SealError::Corrupt(e.to_string()))?;
    let mut out = Vec::new();
    r.take(len)
        .read_to_end(&mut out)
        .map_err(|e| SealError::Corrupt(e.to_string()))?;
    Ok(out)
}

/// Where a range read seeks to: the byte before a chunk boundary rather than the boundary,
/// since the age reader seeking to a boundary reads the object's last chunk to learn its
/// length, which a ranged read did not fetch.
fn seek_point(offset: u64) -> u64 {
    if offset > 0 && offset.is_multiple_of(CHUNK) {
        offset - 1
    } else {
        offset
    }
}

fn decryptor<R: Read>(input: R, keys: &Keys) -> Result<age::stream::StreamReader<R>, SealError> {
    let d = age::Decryptor::new(input).map_err(|e| header_error(&e))?;
    let ids = keys.identities.iter().map(|i| i as &dyn age::Identity);
    d.decrypt(ids).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => SealError::NoMatchingIdentity,
        other => header_error(&other),
    })
}

fn header_error(e: &age::DecryptError) -> SealError {
    match e {
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            SealError::BadHeader(e.to_string())
        }
        age::DecryptError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            SealError::BadHeader("cut short".into())
        }
        other => SealError::Corrupt(other.to_string()),
    }
}

/// An object of which only the header and one span of chunks were fetched: reads outside
/// them fail (the range was planned to need none), and the span's end is the end.
struct Sparse<'a> {
    head: &'a [u8],
    span_at: u64,
    span: &'a [u8],
    pos: u64,
}

impl Read for Sparse<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (src, at) = if self.pos < self.head.len() as u64 {
            (self.head, 0)
        } else if self.pos >= self.span_at {
            (self.span, self.span_at)
        } else {
            return Err(io::Error::other("read outside the fetched range"));
        };
        let from = ((self.pos - at) as usize).min(src.len());
        let n = buf.len().min(src.len() - from);
        buf[..n].copy_from_slice(&src[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Sparse<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match pos {
            SeekFrom::Start(p) => self.pos = p,
            SeekFrom::Current(d) => {
                self.pos = self
                    .pos
                    .checked_add_signed(d)
                    .ok_or_else(|| io::Error::other("seek before the start"))?
            }
            SeekFrom::End(_) => return Err(io::Error::other("the object's end is not known")),
        }
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (Keys, Identity) {
        let id = Identity::generate();
        (Keys::new(&[], vec![id.clone()]).unwrap(), id)
    }

    /// Deterministic bytes of `n` (a counter), so a range can be checked without a copy.
    fn plain(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_sealed_object_opens_whole_and_carries_no_plaintext() {
        let (k, _) = keys();
        let mut p = plain(200_000);
        p[1000..1016].copy_from_slice(b"MARKER-PLAINTEXT");
        let s = seal(&p, &k).unwrap();
        assert!(is_sealed(&s));
        assert!(!s.windows(16).any(|w| w == b"MARKER-PLAINTEXT"));
        assert_eq!(open(&s, &k, p.len() as u64).unwrap(), p);
        let start = payload_start(&s).unwrap().unwrap();
        assert_eq!(plain_len(start, s.len() as u64), Some(p.len() as u64));
        assert!(s.len() as u64 <= max_sealed_len(p.len() as u64));
    }

    #[test]
    fn plaintext_lengths_round_trip_at_chunk_boundaries() {
        let (k, _) = keys();
        for n in [
            0,
            1,
            CHUNK as usize - 1,
            CHUNK as usize,
            CHUNK as usize + 1,
            2 * CHUNK as usize,
        ] {
            let s = seal(&plain(n), &k).unwrap();
            let start = payload_start(&s).unwrap().unwrap();
            assert_eq!(plain_len(start, s.len() as u64), Some(n as u64), "n={n}");
            assert_eq!(open(&s, &k, n as u64).unwrap().len(), n);
        }
    }

    #[test]
    fn ranges_open_from_the_header_and_their_chunks_alone() {
        let (k, _) = keys();
        let p = plain(3 * CHUNK as usize + 777);
        let s = seal(&p, &k).unwrap();
        let start = payload_start(&s).unwrap().unwrap();
        let head = &s[..start as usize];
        let cases = [
            (0, 100),
            (CHUNK - 10, 20),
            (CHUNK, CHUNK),
            (2 * CHUNK + 5, 2 * CHUNK),
            (3 * CHUNK + 700, 500),
        ];
        for (offset, len) in cases {
            let (from, to) = sealed_span(start, offset, len);
            let span = &s[from as usize..(to as usize).min(s.len())];
            let got = open_range(head, from, span, &k, offset, len).unwrap();
            let end = ((offset + len) as usize).min(p.len());
            assert_eq!(got, &p[offset as usize..end], "offset {offset} len {len}");
        }
    }

    #[test]
    fn a_wrong_identity_a_cut_header_a_flipped_byte_and_plaintext_are_refused() {
        let (k, _) = keys();
        let (other, _) = keys();
        let p = plain(100_000);
        let s = seal(&p, &k).unwrap();
        assert_eq!(
            open(&s, &other, 1 << 20),
            Err(SealError::NoMatchingIdentity)
        );
        let start = payload_start(&s).unwrap().unwrap() as usize;
        assert!(matches!(
            open(&s[..start - 20], &k, 1 << 20),
            Err(SealError::BadHeader(_))
        ));
        let mut flipped = s.clone();
        flipped[start + 70_000] ^= 1;
        assert!(matches!(
            open(&flipped, &k, 1 << 20),
            Err(SealError::Corrupt(_))
        ));
        let cut = &s[..s.len() - 1];
        assert!(matches!(open(cut, &k, 1 << 20), Err(SealError::Corrupt(_))));
        assert_eq!(open(&p, &k, 1 << 20), Err(SealError::NotSealed));
        assert_eq!(payload_start(b"LTX\x01 not age"), Err(SealError::NotSealed));
        assert_eq!(open(&s, &k, 10), Err(SealError::TooLong(10)));
    }

    #[test]
    fn objects_are_labelled_with_what_they_are_sealed_to() {
        let a = Identity::generate();
        let b = Identity::generate();
        let (pa, pb) = (a.to_public().to_string(), b.to_public().to_string());
        let only_a = Keys::new(std::slice::from_ref(&pa), vec![a.clone()]).unwrap();
        let both = Keys::new(&[pb.clone(), pa.clone()], vec![a.clone()]).unwrap();
        let only_b = Keys::new(std::slice::from_ref(&pb), vec![b.clone()]).unwrap();
        let sealed = seal(b"x", &both).unwrap();
        let head = &sealed[..payload_start(&sealed).unwrap().unwrap() as usize];
        let label = sealed_to(head).unwrap();
        assert_eq!(label.len(), 2);
        assert!(!both.sealed_otherwise(Some(&label)));
        assert!(only_a.sealed_otherwise(Some(&label)));
        assert!(only_b.sealed_otherwise(Some(&label)));
        assert!(both.sealed_otherwise(None));
        // The label wraps no key: each identity still opens the file, alone.
        assert_eq!(open(&sealed, &only_b, 10).unwrap(), b"x");
        assert_eq!(open(&sealed, &only_a, 10).unwrap(), b"x");
    }

    #[test]
    fn ranges_past_the_end_are_short_or_empty_and_huge_ones_do_not_overflow() {
        let (k, _) = keys();
        for n in [100usize, CHUNK as usize, 2 * CHUNK as usize + 5] {
            let p = plain(n);
            let s = seal(&p, &k).unwrap();
            let start = payload_start(&s).unwrap().unwrap();
            let head = &s[..start as usize];
            let cases = [
                (n as u64 + 1, 10),
                (n as u64 - 1, 100),
                (n as u64, 1),
                (70_000, 10),
                (0, u64::MAX),
                (u64::MAX - 5, 10),
            ];
            for (offset, len) in cases {
                let len = len.min(u64::MAX - offset);
                let (from, to) = sealed_span(start, offset, len);
                let lo = (from as usize).min(s.len());
                let span = &s[lo..(to.min(s.len() as u64) as usize).max(lo)];
                let got = open_range(head, from, span, &k, offset, len).unwrap();
                let want =
                    &p[(offset as usize).min(n)..offset.saturating_add(len).min(n as u64) as usize];
                assert_eq!(got, want, "n {n} offset {offset} len {len}");
            }
        }
        assert_eq!(max_sealed_len(u64::MAX), u64::MAX);
    }

    #[test]
    fn impossible_lengths_and_oversized_headers_are_refused() {
        assert_eq!(plain_len(0, SEALED_CHUNK + 5), None);
        assert_eq!(plain_len(0, SEALED_CHUNK + 16), None);
        assert_eq!(plain_len(0, SEALED_CHUNK + 17), Some(CHUNK + 1));
        assert_eq!(plain_len(0, 16), Some(0));
        assert_eq!(plain_len(0, 15), None);
        let mut h = MAGIC.to_vec();
        for _ in 0..400 {
            h.extend_from_slice(
                b"-> grease aaaa\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
            );
        }
        h.extend_from_slice(b"--- AAAA\n");
        h.extend_from_slice(&[0; 16]);
        assert!(matches!(payload_start(&h), Err(SealError::BadHeader(_))));
        let many: Vec<String> = (0..=MAX_RECIPIENTS)
            .map(|_| Identity::generate().to_public().to_string())
            .collect();
        assert!(Keys::new(&many, vec![Identity::generate()]).is_err());
    }

    #[test]
    fn a_header_without_end_is_bounded() {
        let mut h = MAGIC.to_vec();
        assert_eq!(payload_start(&h), Ok(None));
        h.extend(std::iter::repeat_n(b'a', MAX_HEADER as usize));
        assert!(matches!(payload_start(&h), Err(SealError::BadHeader(_))));
    }

    #[test]
    fn keys_need_an_identity_that_opens_what_the_recipients_seal() {
        let a = Identity::generate();
        let b = Identity::generate();
        let b_pub = b.to_public().to_string();
        assert!(Keys::new(std::slice::from_ref(&b_pub), vec![a.clone()]).is_err());
        assert!(Keys::new(std::slice::from_ref(&b_pub), vec![]).is_err());
        let both = Keys::new(&[a.to_public().to_string(), b_pub], vec![a.clone()]).unwrap();
        assert_eq!(both.recipients().len(), 2);
        let bad = Keys::new(&["age1nope".to_string()], vec![a]).unwrap_err();
        assert!(
            bad.to_string().contains("#1") && !bad.to_string().contains("age1nope"),
            "{bad}"
        );
        let secret = {
            use age::secrecy::ExposeSecret;
            Identity::generate().to_string().expose_secret().to_string()
        };
        let e = Keys::check_recipient(0, &secret).unwrap_err().to_string();
        assert!(
            !e.contains(&secret[15..]) && e.contains("secret key"),
            "{e}"
        );
    }

    #[test]
    fn identity_files_parse_and_debug_never_shows_a_secret() {
        let id = Identity::generate();
        use age::secrecy::ExposeSecret;
        let secret = id.to_string().expose_secret().to_string();
        let text = format!(
            "# created: now\n# public key: {}\n{secret}\n",
            id.to_public()
        );
        let ids = parse_identities(&text, "key.txt").unwrap();
        let k = Keys::new(&[], ids).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains("AGE-SECRET-KEY"), "{shown}");
        assert!(shown.contains(&id.to_public().to_string()));
        let e = parse_identities("garbage\n", "key.txt")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("key.txt") && e.contains("line 1"), "{e}");
        assert!(parse_identities("# only comments\n", "k").is_err());
    }
}
