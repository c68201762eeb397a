//! AWS Signature Version 4 for S3, pure and staged: it owns the canonical request, the string to sign, the signing key, the signature and the Authorization header, with the time (unix seconds) and the payload SHA-256 passed in; it must do no I/O, read no clock, and never put the secret (or a session token or derived key) in any Debug, Display or error.
//!
//! The stages follow the AWS documentation ("Signature Calculations for the Authorization
//! Header: Transferring Payload in a Single Chunk") so each one can be checked on its own:
//!
//! 1. [`canonical_request`] — method, URI-encoded path (each segment encoded once, no
//!    normalization, as S3 requires), sorted encoded query, sorted lower-cased trimmed headers,
//!    signed header list, payload hash.
//! 2. [`string_to_sign`] — `AWS4-HMAC-SHA256`, timestamp, scope, hash of step 1.
//! 3. [`signing_key`] — the HMAC chain `AWS4<secret>` → date → region → service → `aws4_request`.
//! 4. [`signature`] — hex HMAC of step 2 under step 3.
//! 5. [`authorization`] — the `Authorization` header value.
//!
//! [`sign`] runs all of them and formats `x-amz-date` from unix seconds itself.

use ring::{digest, hmac};
use std::fmt;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Headers the signer sets itself; copies of them in [`Request::headers`] are ignored.
const SIGNER_OWNED: [&str; 5] = [
    "host",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-security-token",
    "authorization",
];

/// Access key pair (and optional STS session token). Debug redacts the secret and the token.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.map(|_| "<redacted>"))
            .finish()
    }
}

/// One HTTP request to sign. Everything here is *unencoded*; the signer encodes.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Upper-case HTTP method, e.g. `"PUT"`.
    pub method: &'a str,
    /// Host header value, with `:port` when the port is not the scheme's default.
    pub host: &'a str,
    /// Unencoded key path, e.g. `"/bucket/a b.ltx"`; empty means `/`.
    pub path: &'a str,
    /// Unencoded query parameters; a bare flag such as `?lifecycle` is `("lifecycle", "")`.
    pub query: &'a [(&'a str, &'a str)],
    /// Extra headers to sign (content-type, if-none-match, range, …). Names are matched
    /// case-insensitively; repeated names are joined with `,` in the given order. Copies of
    /// `host`, `x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token` and `authorization`
    /// are ignored: the signer owns those.
    pub headers: &'a [(&'a str, &'a str)],
    /// Lower-case hex SHA-256 of the body (see [`sha256_hex`]), or `UNSIGNED-PAYLOAD`.
    pub payload_sha256_hex: &'a str,
}

/// Knobs for signers other than plain S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Sign (and expect the caller to send) `x-amz-content-sha256`. S3 requires it; the
    /// generic AWS SigV4 test suite does not use it.
    pub content_sha256_header: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            content_sha256_header: true,
        }
    }
}

/// The result of [`sign`]: the headers to send, plus the intermediate texts for debugging.
#[derive(Clone, PartialEq, Eq)]
pub struct Signed {
    /// Value of the `Authorization` header.
    pub authorization: String,
    /// Value of the `x-amz-date` header (`YYYYMMDDTHHMMSSZ`).
    pub amz_date: String,
    /// Value of the `x-amz-content-sha256` header (the payload hash as given).
    pub content_sha256: String,
    /// Value of the `x-amz-security-token` header, when the credentials carry one.
    pub security_token: Option<String>,
    /// The canonical request that was hashed; contains no secret (the session token, when
    /// present, is a signed header and so does appear here).
    pub canonical_request: String,
    /// The string that was signed; contains no secret.
    pub string_to_sign: String,
}

impl fmt::Debug for Signed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("authorization", &self.authorization)
            .field("amz_date", &self.amz_date)
            .field("content_sha256", &self.content_sha256)
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .field("string_to_sign", &self.string_to_sign)
            // canonical_request is left out: it carries the session token when there is one.
            .finish_non_exhaustive()
    }
}

/// The derived per-day signing key. Debug redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey([u8; 32]);

impl SigningKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    s
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// SigV4 URI encoding: RFC 3986 unreserved characters (`A-Z a-z 0-9 - _ . ~`) are kept,
/// every other UTF-8 byte becomes `%XX` (upper-case hex); `/` is kept unless `encode_slash`.
/// The input is taken literally: a `%` in it is encoded again (callers pass unencoded text).
pub fn uri_encode(s: &str, encode_slash: bool) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => {
                out.push('%');
                out.push(DIGITS[(b >> 4) as usize] as char);
                out.push(DIGITS[(b & 0x0f) as usize] as char);
            }
        }
    }
    out
}

/// Canonical URI for S3: the path encoded once, `/` kept, no `.`/`..`/`//` normalization.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    let encoded = uri_encode(path, false);
    if encoded.starts_with('/') {
        encoded
    } else {
        format!("/{encoded}")
    }
}

/// Canonical query: each name and value encoded (with `/` encoded), sorted by name then value.
fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Header value canonicalization: trim, and collapse runs of spaces into one.
fn canonical_header_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut prev_space = false;
    for c in v.trim().chars() {
        if c == ' ' {
            if !prev_space {
                out.push(' ');
            }
            prev_space = true;
        } else {
            out.push(c);
            prev_space = false;
        }
    }
    out
}

/// Builds the canonical request and writes the `SignedHeaders` list (e.g.
/// `host;range;x-amz-content-sha256;x-amz-date`) into `signed_headers_out` (cleared first).
///
/// Signed headers are `host`, `x-amz-date`, `x-amz-content-sha256` (when
/// `opts.content_sha256_header`), `x-amz-security-token` (when `security_token` is set) and
/// `req.headers`; names lower-cased and sorted, values trimmed.
pub fn canonical_request(
    req: &Request,
    amz_date: &str,
    security_token: Option<&str>,
    opts: Options,
    signed_headers_out: &mut String,
) -> String {
    let mut headers: Vec<(String, String)> = Vec::with_capacity(req.headers.len() + 4);
    headers.push(("host".to_string(), canonical_header_value(req.host)));
    headers.push(("x-amz-date".to_string(), amz_date.to_string()));
    if opts.content_sha256_header {
        headers.push((
            "x-amz-content-sha256".to_string(),
            req.payload_sha256_hex.to_string(),
        ));
    }
    if let Some(token) = security_token {
        headers.push(("x-amz-security-token".to_string(), token.trim().to_string()));
    }
    for (name, value) in req.headers {
        let name = name.trim().to_ascii_lowercase();
        if SIGNER_OWNED.contains(&name.as_str()) {
            continue;
        }
        let value = canonical_header_value(value);
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));

    signed_headers_out.clear();
    let mut out = String::with_capacity(256);
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query));
    out.push('\n');
    for (i, (name, value)) in headers.iter().enumerate() {
        out.push_str(name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
        if i > 0 {
            signed_headers_out.push(';');
        }
        signed_headers_out.push_str(name);
    }
    out.push('\n');
    out.push_str(signed_headers_out);
    out.push('\n');
    out.push_str(req.payload_sha256_hex);
    out
}

/// Credential scope: `YYYYMMDD/region/service/aws4_request`.
pub fn scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

/// `AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256 of canonical request>`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The signing key: HMAC chain over `AWS4<secret>`, date (`YYYYMMDD`), region, service,
/// `aws4_request`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> SigningKey {
    let mut k_secret = Vec::with_capacity(4 + secret.len());
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret.as_bytes());
    let k_date = hmac_sha256(&k_secret, date.as_bytes());
    k_secret.fill(0);
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    SigningKey(hmac_sha256(&k_service, b"aws4_request"))
}

/// Lower-case hex HMAC-SHA256 of the string to sign under the signing key.
pub fn signature(key: &SigningKey, string_to_sign: &str) -> String {
    hex(&hmac_sha256(&key.0, string_to_sign.as_bytes()))
}

/// The `Authorization` header value.
pub fn authorization(
    access_key_id: &str,
    scope: &str,
    signed_headers: &str,
    signature: &str,
) -> String {
    format!(
        "{ALGORITHM} Credential={access_key_id}/{scope},SignedHeaders={signed_headers},Signature={signature}"
    )
}

/// Formats unix seconds (UTC) as `YYYYMMDDTHHMMSSZ`.
pub fn amz_date(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let secs = unix_seconds % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`, restricted to non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // shift epoch to 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Signs `req` for S3-style services (signs `x-amz-content-sha256`).
pub fn sign(
    creds: &Credentials,
    region: &str,
    service: &str,
    req: &Request,
    unix_seconds: u64,
) -> Signed {
    sign_with(
        creds,
        region,
        service,
        req,
        unix_seconds,
        Options::default(),
    )
}

/// [`sign`] with explicit [`Options`].
pub fn sign_with(
    creds: &Credentials,
    region: &str,
    service: &str,
    req: &Request,
    unix_seconds: u64,
    opts: Options,
) -> Signed {
    let amz_date = amz_date(unix_seconds);
    let date = &amz_date[..8];
    let mut signed_headers = String::new();
    let canonical = canonical_request(
        req,
        &amz_date,
        creds.session_token,
        opts,
        &mut signed_headers,
    );
    let scope = scope(date, region, service);
    let sts = string_to_sign(&amz_date, &scope, &canonical);
    let key = signing_key(creds.secret_access_key, date, region, service);
    let sig = signature(&key, &sts);
    Signed {
        authorization: authorization(creds.access_key_id, &scope, &signed_headers, &sig),
        content_sha256: req.payload_sha256_hex.to_string(),
        security_token: creds.session_token.map(str::to_string),
        amz_date,
        canonical_request: canonical,
        string_to_sign: sts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S3_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const S3_CREDS: Credentials<'static> = Credentials {
        access_key_id: "AKIAIOSFODNN7EXAMPLE",
        secret_access_key: S3_SECRET,
        session_token: None,
    };
    /// 2013-05-24T00:00:00Z
    const S3_TIME: u64 = 1_369_353_600;
    const S3_HOST: &str = "examplebucket.s3.amazonaws.com";
    const EMPTY_SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn sig_of(s: &Signed) -> &str {
        s.authorization.rsplit("Signature=").next().unwrap()
    }

    fn assert_no_secret(secret: &str, s: &Signed) {
        assert!(!s.canonical_request.contains(secret));
        assert!(!s.string_to_sign.contains(secret));
        assert!(!s.authorization.contains(secret));
        assert!(!format!("{s:?}").contains(secret));
    }

    #[test]
    fn aws_s3_get_object() {
        let req = Request {
            method: "GET",
            host: S3_HOST,
            path: "/test.txt",
            query: &[],
            headers: &[("Range", "bytes=0-9")],
            payload_sha256_hex: EMPTY_SHA,
        };
        let s = sign(&S3_CREDS, "us-east-1", "s3", &req, S3_TIME);
        assert_eq!(
            s.canonical_request,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
             7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(
            s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(s.amz_date, "20130524T000000Z");
        assert_eq!(s.content_sha256, EMPTY_SHA);
        assert_eq!(s.security_token, None);
        assert_no_secret(S3_SECRET, &s);
    }

    #[test]
    fn aws_s3_put_object() {
        let body = b"Welcome to Amazon S3.";
        let hash = sha256_hex(body);
        assert_eq!(
            hash,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let req = Request {
            method: "PUT",
            host: S3_HOST,
            path: "/test$file.text",
            query: &[],
            headers: &[
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            payload_sha256_hex: &hash,
        };
        let s = sign(&S3_CREDS, "us-east-1", "s3", &req, S3_TIME);
        assert_eq!(
            s.canonical_request,
            "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\n\
             host:examplebucket.s3.amazonaws.com\n\
             x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n\
             x-amz-date:20130524T000000Z\nx-amz-storage-class:REDUCED_REDUNDANCY\n\n\
             date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n\
             44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        assert_eq!(
            s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,\
             Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
        assert_no_secret(S3_SECRET, &s);
    }

    #[test]
    fn aws_s3_get_bucket_lifecycle() {
        let req = Request {
            method: "GET",
            host: S3_HOST,
            path: "/",
            query: &[("lifecycle", "")],
            headers: &[],
            payload_sha256_hex: EMPTY_SHA,
        };
        let s = sign(&S3_CREDS, "us-east-1", "s3", &req, S3_TIME);
        assert!(s.canonical_request.starts_with("GET\n/\nlifecycle=\nhost:"));
        assert_eq!(
            sig_of(&s),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
        assert!(s
            .authorization
            .contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date,"));
        assert_no_secret(S3_SECRET, &s);
    }

    #[test]
    fn aws_s3_list_objects() {
        // Query given out of order on purpose: the signer sorts.
        let req = Request {
            method: "GET",
            host: S3_HOST,
            path: "/",
            query: &[("prefix", "J"), ("max-keys", "2")],
            headers: &[],
            payload_sha256_hex: EMPTY_SHA,
        };
        let s = sign(&S3_CREDS, "us-east-1", "s3", &req, S3_TIME);
        assert!(s
            .canonical_request
            .starts_with("GET\n/\nmax-keys=2&prefix=J\nhost:"));
        assert_eq!(
            sig_of(&s),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
        assert_no_secret(S3_SECRET, &s);
    }

    #[test]
    fn aws_test_suite_get_vanilla() {
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: secret,
            session_token: None,
        };
        let req = Request {
            method: "GET",
            host: "example.amazonaws.com",
            path: "/",
            query: &[],
            headers: &[],
            payload_sha256_hex: EMPTY_SHA,
        };
        let opts = Options {
            content_sha256_header: false,
        };
        // 2015-08-30T12:36:00Z
        let s = sign_with(&creds, "us-east-1", "service", &req, 1_440_938_160, opts);
        assert_eq!(
            s.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             host;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            s.authorization,
            // The suite separates with ", "; S3 and every server accept ",".
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request,\
             SignedHeaders=host;x-amz-date,\
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_no_secret(secret, &s);
    }

    #[test]
    fn aws_doc_signing_key() {
        // "Examples of how to derive a signing key for Signature Version 4" (IAM, 20120215).
        let k = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex(k.as_bytes()),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
        assert_eq!(format!("{k:?}"), "SigningKey(<redacted>)");
    }

    #[test]
    fn staged_functions_compose_to_sign() {
        let req = Request {
            method: "GET",
            host: S3_HOST,
            path: "/test.txt",
            query: &[],
            headers: &[("Range", "bytes=0-9")],
            payload_sha256_hex: EMPTY_SHA,
        };
        let date = amz_date(S3_TIME);
        let mut sh = String::from("garbage");
        let cr = canonical_request(&req, &date, None, Options::default(), &mut sh);
        assert_eq!(sh, "host;range;x-amz-content-sha256;x-amz-date");
        let sc = scope(&date[..8], "us-east-1", "s3");
        let sts = string_to_sign(&date, &sc, &cr);
        let key = signing_key(S3_SECRET, &date[..8], "us-east-1", "s3");
        let sig = signature(&key, &sts);
        let auth = authorization(S3_CREDS.access_key_id, &sc, &sh, &sig);
        assert_eq!(
            auth,
            sign(&S3_CREDS, "us-east-1", "s3", &req, S3_TIME).authorization
        );
    }

    #[test]
    fn uri_encoding_rules() {
        assert_eq!(uri_encode("a b", false), "a%20b");
        assert_eq!(uri_encode("test$file.text", false), "test%24file.text");
        assert_eq!(uri_encode("~-_.AZaz09", true), "~-_.AZaz09");
        assert_eq!(uri_encode("é", false), "%C3%A9");
        assert_eq!(uri_encode("日", false), "%E6%97%A5");
        assert_eq!(uri_encode("a+b=c&d", true), "a%2Bb%3Dc%26d");
        assert_eq!(uri_encode("a/b", false), "a/b");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        // No double decoding/encoding games: a literal '%' is data and is encoded once.
        assert_eq!(uri_encode("a%20b", false), "a%2520b");
        assert_eq!(uri_encode("", true), "");
    }

    #[test]
    fn canonical_uri_and_query() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("bucket/k"), "/bucket/k");
        // Segments encoded once, slashes kept, no normalization of '.', '..' or '//'.
        assert_eq!(
            canonical_uri("/bucket/db/0000/a b~$é.ltx"),
            "/bucket/db/0000/a%20b~%24%C3%A9.ltx"
        );
        assert_eq!(canonical_uri("/b/./x/../y//z"), "/b/./x/../y//z");
        assert_eq!(
            canonical_query(&[
                ("prefix", "db/0001/"),
                ("list-type", "2"),
                ("delimiter", "/")
            ]),
            "delimiter=%2F&list-type=2&prefix=db%2F0001%2F"
        );
        assert_eq!(
            canonical_query(&[("continuation-token", "1a b+c="), ("a", "2"), ("a", "1")]),
            "a=1&a=2&continuation-token=1a%20b%2Bc%3D"
        );
        assert_eq!(canonical_query(&[]), "");
    }

    #[test]
    fn header_canonicalization() {
        let req = Request {
            method: "PUT",
            host: "127.0.0.1:9000",
            path: "/bucket/k",
            query: &[],
            headers: &[
                ("Content-Type", "  application/octet-stream  "),
                ("If-None-Match", "*"),
                ("X-Multi", "a   b"),
                ("x-multi", " c "),
                ("Host", "evil.example"),
                ("X-Amz-Date", "19990101T000000Z"),
            ],
            payload_sha256_hex: "UNSIGNED-PAYLOAD",
        };
        let mut sh = String::new();
        let cr = canonical_request(&req, "20240101T000000Z", None, Options::default(), &mut sh);
        assert_eq!(
            sh,
            "content-type;host;if-none-match;x-amz-content-sha256;x-amz-date;x-multi"
        );
        assert_eq!(
            cr,
            "PUT\n/bucket/k\n\ncontent-type:application/octet-stream\nhost:127.0.0.1:9000\n\
             if-none-match:*\nx-amz-content-sha256:UNSIGNED-PAYLOAD\n\
             x-amz-date:20240101T000000Z\nx-multi:a b,c\n\n\
             content-type;host;if-none-match;x-amz-content-sha256;x-amz-date;x-multi\n\
             UNSIGNED-PAYLOAD"
        );
    }

    #[test]
    fn session_token_is_signed_and_redacted() {
        let token = "FQoGZXIvYXdzEXAMPLETOKEN//abc";
        let creds = Credentials {
            session_token: Some(token),
            ..S3_CREDS
        };
        let req = Request {
            method: "GET",
            host: S3_HOST,
            path: "/test.txt",
            query: &[],
            headers: &[],
            payload_sha256_hex: EMPTY_SHA,
        };
        let s = sign(&creds, "us-east-1", "s3", &req, S3_TIME);
        assert_eq!(s.security_token.as_deref(), Some(token));
        assert!(s
            .authorization
            .contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"));
        assert!(s
            .canonical_request
            .contains(&format!("x-amz-security-token:{token}\n")));
        let without = sign(&S3_CREDS, "us-east-1", "s3", &req, S3_TIME);
        assert_ne!(sig_of(&s), sig_of(&without));
        assert_no_secret(S3_SECRET, &s);
        assert!(!format!("{s:?}").contains(token));
        let dbg = format!("{creds:?}");
        assert!(!dbg.contains(S3_SECRET));
        assert!(!dbg.contains(token));
        assert!(dbg.contains("AKIAIOSFODNN7EXAMPLE"));
        assert!(!format!("{req:?}").contains(S3_SECRET));
    }

    #[test]
    fn amz_date_civil_conversion() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(S3_TIME), "20130524T000000Z");
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(1_709_208_000), "20240229T120000Z");
        assert_eq!(amz_date(4_102_444_799), "20991231T235959Z");
        assert_eq!(amz_date(253_402_300_799), "99991231T235959Z");
        // Every day boundary over four centuries round-trips against a naive day counter.
        let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
        for days in 0..(400 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let dim = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > dim {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
