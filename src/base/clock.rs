//! Time as the crate keeps it: milliseconds since the Unix epoch, and RFC 3339 (the one
//! format users see and type). Pure except `now_ms`, which everything else takes as a
//! parameter so that tests can drive time.

/// The wall clock, in milliseconds since the epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-25T18:00:00.123Z`
pub fn format_rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// The calendar month (UTC) holding `ms`: its first and its last-plus-one millisecond.
pub fn month_bounds(ms: u64) -> (u64, u64) {
    let days = (ms / 86_400_000) as i64;
    let (y, m, _) = civil_from_days(days);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let start = days_from_civil(y, m, 1).max(0) as u64 * 86_400_000;
    let end = days_from_civil(ny, nm, 1).max(0) as u64 * 86_400_000;
    (start, end)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses RFC 3339 (`2026-11-25T18:00:00Z`, fractional seconds and `±hh:mm` offsets too)
/// into milliseconds since the epoch. A date or time that does not exist (`2026-02-30`,
/// hour 24, an offset beyond `±23:59`) is `None`, not the instant it would roll over to:
/// a restore point must be the one the user meant.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    // Digits only: `parse` would also take a sign.
    let num = |r: std::ops::Range<usize>| {
        let d = s.get(r)?;
        d.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| d.parse::<u32>().ok())?
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo)
        || !(1..=days_in_month(y, mo)).contains(&d)
        || h > 23
        || mi > 59
        || se > 60
    {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0u64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return None;
        }
        let padded = format!("{:0<3}", &digits[..digits.len().min(3)]);
        frac_ms = padded.parse().ok()?;
    }
    let offset_secs: i64 = match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3).filter(|h| *h <= 23)? as i64;
            let om = num(i + 4..i + 6).filter(|m| *m <= 59)? as i64;
            let v = oh * 3600 + om * 60;
            if sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y as i64, mo, d);
    let secs = days * 86_400 + h as i64 * 3600 + mi as i64 * 60 + se as i64 - offset_secs;
    (secs >= 0).then(|| secs as u64 * 1000 + frac_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_and_accepts_offsets() {
        let ms = 1_795_629_600_123; // 2026-11-25T...
        assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms));
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_rfc3339("2000-02-29T12:00:00Z"), Some(951_825_600_000));
        assert_eq!(
            parse_rfc3339("2000-02-29T13:30:00+01:30"),
            Some(951_825_600_000)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T12:00:00.5Z"),
            Some(951_825_600_500)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2000-13-01T00:00:00Z"), None);
    }

    #[test]
    fn month_bounds_are_calendar_months() {
        let at = parse_rfc3339("2026-12-03T07:51:46Z").unwrap();
        let (start, end) = month_bounds(at);
        assert_eq!(format_rfc3339(start), "2026-12-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(end), "2027-01-01T00:00:00.000Z");
        let feb = parse_rfc3339("2028-02-29T23:59:59.999Z").unwrap();
        let (start, end) = month_bounds(feb);
        assert_eq!(format_rfc3339(start), "2028-02-01T00:00:00.000Z");
        assert_eq!((end - start) / 86_400_000, 29);
        assert_eq!(month_bounds(end).0, end);
    }

    #[test]
    fn impossible_timestamps_are_refused() {
        for bad in [
            "2026-02-30T00:00:00Z",      // no such day
            "2026-02-29T00:00:00Z",      // not a leap year
            "1900-02-29T00:00:00Z",      // a century is not
            "2026-04-31T00:00:00Z",      // a 30-day month
            "2026-06-00T00:00:00Z",      // day zero
            "2026-00-10T00:00:00Z",      // month zero
            "2026-01-01T24:00:00Z",      // hour 24
            "2026-01-01T12:60:00Z",      // minute 60
            "2026-01-01T12:00:61Z",      // second 61
            "2026-01-01T12:00:00+99:99", // no such offset
            "2026-01-01T12:00:00+24:00",
            "2026-01-01T12:00:00-01:60",
            "2026-+1-01T00:00:00Z", // a sign is not a digit
            "2026-01-01T+1:00:00Z",
            "2026-01-01T12:00:00+-1:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        for (good, ms) in [
            ("2024-02-29T00:00:00Z", 1_709_164_800_000),
            ("2000-02-29T00:00:00Z", 951_782_400_000),
            ("2026-12-31T23:59:59Z", 1_798_761_599_000),
            ("2026-01-01T00:00:00+23:59", 1_767_139_260_000),
            ("2026-01-01T00:00:00-00:00", 1_767_225_600_000),
        ] {
            assert_eq!(parse_rfc3339(good), Some(ms), "{good}");
        }
    }
}
