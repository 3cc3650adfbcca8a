//! RFC 3339 timestamps with nanoseconds in UTC, formatted like Go's `time.RFC3339Nano`
//! (trailing zeros of the fraction trimmed, no fraction when it is zero, `Z` suffix): the form
//! kubelet's CRI log parser reads.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `time` to `out` as RFC 3339 with nanoseconds, e.g. `2026-11-24T01:02:03.0405Z`.
pub(crate) fn write_rfc3339_nano(out: &mut Vec<u8>, time: SystemTime) {
    // Times before 1970 do not occur on a running host; clamp instead of failing a log write.
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"
    );
    let mut nanos = since_epoch.subsec_nanos();
    if nanos != 0 {
        let mut digits = 9;
        while nanos.is_multiple_of(10) {
            nanos /= 10;
            digits -= 1;
        }
        let _ = write!(out, ".{nanos:0digits$}");
    }
    out.push(b'Z');
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days` algorithm restricted to non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn format(secs: u64, nanos: u32) -> String {
        let mut out = Vec::new();
        write_rfc3339_nano(&mut out, UNIX_EPOCH + Duration::new(secs, nanos));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn epoch_has_no_fraction() {
        assert_eq!(format(0, 0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn fraction_trims_trailing_zeros_like_go() {
        assert_eq!(
            format(1_795_477_171, 703_869_230),
            "2026-11-23T23:39:31.70386923Z"
        );
        assert_eq!(format(1_795_477_171, 5), "2026-11-23T23:39:31.000000005Z");
        assert_eq!(format(1_795_477_171, 100_000_000), "2026-11-23T23:39:31.1Z");
    }

    #[test]
    fn leap_days_and_century_rules() {
        // 2000-02-29 (divisible by 400) and 2100-03-01 (2100 is not a leap year).
        assert_eq!(format(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(format(4_107_542_400, 0), "2100-03-01T00:00:00Z");
        assert_eq!(format(1_709_164_799, 0), "2024-02-28T23:59:59Z");
    }
}
