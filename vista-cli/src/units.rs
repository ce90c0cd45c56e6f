//! Sizes with binary units, parsed and printed; times printed in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Parses `4096`, `4096B`, `64KiB`, `64 MiB`, `1GiB`, `1TiB` (units case-insensitive,
/// binary) and hexadecimal `0x1000` (no unit). Decimal units (`MB`) are refused rather
/// than guessed at.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "'{s}' is not a hexadecimal number (expected e.g. 0x50, 0x1000)"
            ));
        }
        return u64::from_str_radix(hex, 16).map_err(|_| format!("'{s}' is too large"));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "'{s}' is not a size (expected e.g. 4096, 64KiB, 64MiB, 1GiB)"
        ));
    }
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is too large"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" | "k" => 10,
        "mib" | "m" => 20,
        "gib" | "g" => 30,
        "tib" | "t" => 40,
        "kb" | "mb" | "gb" | "tb" => {
            return Err(format!(
                "'{s}': decimal units are ambiguous here; use KiB, MiB, GiB or plain bytes"
            ))
        }
        other => return Err(format!("'{s}': unknown unit '{other}' (use KiB, MiB, GiB)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// `67108864` -> `64 MiB (67108864 bytes)`; exact multiples only get a unit.
pub fn human(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift {
            let v = bytes as f64 / (1u64 << shift) as f64;
            let shown = if bytes.is_multiple_of(1 << shift) {
                format!("{} {unit}", bytes >> shift)
            } else {
                format!("{v:.1} {unit}")
            };
            return format!("{shown} ({bytes} bytes)");
        }
    }
    format!("{bytes} bytes")
}

/// `time` as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(time: SystemTime) -> String {
    let secs = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs(),
        Err(_) => return "before 1970".into(),
    };
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Seconds since the epoch, for JSON.
pub fn epoch_secs(time: SystemTime) -> Option<u64> {
    time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// The proleptic Gregorian date of day `z` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: u64) -> (u64, u64, u64) {
    let z = z + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert!(parse_size("64MB").unwrap_err().contains("MiB"));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("17000000TiB").is_err());
    }

    #[test]
    fn sizes_parse_in_hex() {
        assert_eq!(parse_size("0x50"), Ok(0x50));
        assert_eq!(parse_size("0X1000"), Ok(4096));
        assert_eq!(parse_size("0xfFfF"), Ok(0xffff));
        assert_eq!(parse_size("0xffffffffffffffff"), Ok(u64::MAX));
        assert!(parse_size("0x").is_err());
        assert!(parse_size("0x1g").is_err());
        assert!(parse_size("0x10KiB").is_err());
        assert!(parse_size("0x10000000000000000")
            .unwrap_err()
            .contains("too large"));
        // Decimal with a leading zero is still decimal.
        assert_eq!(parse_size("010"), Ok(10));
    }

    #[test]
    fn sizes_print_with_units() {
        assert_eq!(human(100), "100 bytes");
        assert_eq!(human(64 << 20), "64 MiB (67108864 bytes)");
        assert_eq!(human(1536), "1.5 KiB (1536 bytes)");
    }

    #[test]
    fn times_print_in_utc() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(utc(t), "2024-02-29 12:34:56 UTC");
    }
}
