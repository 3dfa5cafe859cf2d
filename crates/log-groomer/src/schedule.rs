//! Wall-clock alignment: passes run at multiples of `every` seconds since the epoch, so with the default 900 s every
//! groomer in a cluster runs at :00, :15, :30 and :45 UTC, like the seed.

/// The first multiple of `every` strictly after `now` (seconds since the epoch).
pub fn next_boundary(now: i64, every: u64) -> i64 {
    let every = every.max(1) as i64;
    (now.div_euclid(every) + 1) * every
}

/// `2026-11-28T05:15:00Z` without a date library (Howard Hinnant's civil-from-days).
pub fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_to_quarter_hours() {
        // 2026-11-28T04:55:00Z
        let t = 1_795_841_700;
        assert_eq!(utc(t), "2026-11-28T04:55:00Z");
        assert_eq!(utc(next_boundary(t, 900)), "2026-11-28T05:00:00Z");
        assert_eq!(utc(next_boundary(t + 299, 900)), "2026-11-28T05:00:00Z");
        // Exactly on a boundary: the next one, never "now" again.
        assert_eq!(next_boundary(t + 300, 900), t + 1200);
        assert_eq!(next_boundary(0, 900), 900);
        assert_eq!(next_boundary(59, 60), 60);
        assert_eq!(next_boundary(7, 1), 8);
        assert_eq!(next_boundary(86_399, 86_400), 86_400);
    }

    #[test]
    fn formats_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
    }
}
