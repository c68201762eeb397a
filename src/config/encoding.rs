//! URL text at the character level: percent-encoding and -decoding, telling a URL from a path,
//! and cutting a URL down to what may be shown in a message. Knows nothing about schemes,
//! buckets or targets; must never return a form of a URL that keeps user-info when asked for a
//! displayable one.

pub(super) fn looks_like_url(s: &str) -> bool {
    match s.find("://") {
        Some(i) => {
            i > 0
                && s[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'))
        }
        None => false,
    }
}

/// Unreserved characters plus the ones that may stay raw in a path.
pub(super) const PATH_KEEP: &str = "-._~!$&'()*+,;=:@/";
/// Characters that may stay raw in a query value.
pub(super) const QUERY_KEEP: &str = "-._~!$'()*,;:@/";

pub(super) fn percent_encode(s: &str, keep: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || keep.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| "invalid percent-encoding".to_string())?;
                if hex == 0 {
                    return Err("percent-encoding decodes to a NUL byte (%00)".to_string());
                }
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoding is not valid UTF-8".to_string())
}

/// A URL safe to show in messages: no user-info, no query, no fragment.
pub(super) fn redact_url(url: &str) -> String {
    let url = url.trim();
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    strip_userinfo(&url[..cut])
}

pub(super) fn strip_userinfo(url: &str) -> String {
    if let Some(i) = url.find("://") {
        let rest = &url[i + 3..];
        let auth_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@') {
            return format!("{}{}", &url[..i + 3], &rest[at + 1..]);
        }
    }
    url.to_string()
}
