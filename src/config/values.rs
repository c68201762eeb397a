//! Scalar values as written in the config file, the environment and URI parameters:
//! Go-style durations and the two boolean spellings. Pure string → value functions with no
//! knowledge of where the text came from; callers wrap failures in their own messages
//! (which name the key, variable or parameter).

use std::time::Duration;

/// Parses a Go-style duration: a sequence of decimal numbers, each with an optional fraction
/// and a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `1s`, `500ms`, `1m30s`, `1.5h`.
/// `0` alone is allowed; negative durations are not.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    let mut rest = s;
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    } else if rest.starts_with('-') {
        return Err(format!("negative duration {s:?}"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(format!("invalid duration {s:?}"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let frac_len = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..frac_len];
            rest = &r[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(format!("invalid duration {s:?}"));
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration {s:?}")),
            other => return Err(format!("unknown unit {other:?} in duration {s:?}")),
        };
        let overflow = || format!("duration {s:?} is too large");
        if int_part.len() > 20 {
            return Err(overflow());
        }
        let int_val: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        let frac_nanos = if frac_digits.is_empty() {
            0
        } else {
            let f: u128 = frac_digits.parse().map_err(|_| overflow())?;
            f * nanos_per_unit / 10u128.pow(frac_digits.len() as u32)
        };
        total = int_val
            .checked_mul(nanos_per_unit)
            .and_then(|v| v.checked_add(frac_nanos))
            .and_then(|v| v.checked_add(total))
            .ok_or_else(overflow)?;
    }
    let nanos = u64::try_from(total).map_err(|_| format!("duration {s:?} is too large"))?;
    Ok(Duration::from_nanos(nanos))
}

/// The reason given for any value that is not a duration, whichever key, variable or
/// parameter it came from, so they all read alike.
pub(super) fn describe_duration_error(value: &str) -> String {
    format!("expected a duration like 1s or 500ms, got {value:?}")
}

/// `true` or `false`, in any case (the config file's and s3 URLs' booleans); `None` otherwise.
pub(super) fn parse_true_false(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// `1`/`on`/`true`/`yes` or `0`/`off`/`false`/`no`, in any case (the environment's switches);
/// `None` otherwise.
pub(super) fn parse_switch(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Some(true),
        "0" | "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("1s"), Ok(ms(1000)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("2h"), Ok(ms(7_200_000)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("100µs"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("10ns"), Ok(Duration::from_nanos(10)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("1h2m3s4ms"), Ok(ms(3_723_004)));
        assert_eq!(parse_duration("+2s"), Ok(ms(2000)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 1s "), Ok(ms(1000)));
        for bad in [
            "",
            "1",
            "fast",
            "1x",
            "-1s",
            "s",
            "1.s.",
            "1d",
            "1s2",
            "99999999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(parse_duration("1").unwrap_err().contains("missing unit"));
    }
}
