//! One representation of time: milliseconds since the Unix epoch, UTC.
//! The store keeps it as BIGINT, the wire as a number, so both targets agree.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    pub fn minus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// Time from `self` until `later`; zero when `later` is not after `self`.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }

    /// `2026-11-27 15:04:05 UTC`
    pub fn format_utc(self) -> String {
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
            sod / 3600,
            (sod % 3600) / 60,
            sod % 60
        )
    }

    /// RFC 3339, for exports and machine readers.
    pub fn rfc3339(self) -> String {
        let s = self.format_utc();
        format!("{}T{}Z", &s[..10], &s[11..19])
    }
}

impl Timestamp {
    /// A UTC time as people type it: `2026-12-03 09:00` or `2026-12-03T09:00` (seconds
    /// optional, a trailing `Z` or ` UTC` allowed). `None` when it is not one.
    pub fn parse_utc(s: &str) -> Option<Timestamp> {
        let s = s.trim();
        let s = s
            .strip_suffix("UTC")
            .or_else(|| s.strip_suffix('Z'))
            .unwrap_or(s)
            .trim_end();
        let (date, time) = s.split_once(['T', ' '])?;
        let mut d = date.split('-');
        let (y, m, day) = (d.next()?, d.next()?, d.next()?);
        if d.next().is_some() || y.len() != 4 || m.len() != 2 || day.len() != 2 {
            return None;
        }
        let mut t = time.trim().split(':');
        let (hh, mm, ss) = (t.next()?, t.next()?, t.next().unwrap_or("00"));
        if t.next().is_some() || hh.len() != 2 || mm.len() != 2 || ss.len() != 2 {
            return None;
        }
        let num = |x: &str| -> Option<i64> {
            x.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| x.parse().ok())
                .flatten()
        };
        let (y, m, day, hh, mm, ss) = (num(y)?, num(m)?, num(day)?, num(hh)?, num(mm)?, num(ss)?);
        let days_in_month = match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
            2 => 28,
            _ => return None,
        };
        if !(1970..=9999).contains(&y)
            || day < 1
            || day > days_in_month
            || hh > 23
            || mm > 59
            || ss > 59
        {
            return None;
        }
        let secs = days_from_civil(y, m as u32, day as u32) * 86_400 + hh * 3600 + mm * 60 + ss;
        Some(Timestamp(secs * 1000))
    }
}

/// When a request's access should start, from what the requester typed: blank (or
/// `now`) for as soon as it is approved (`None`), a delay from `now` (`2h`, `1d`,
/// `in 3h`), or a UTC time (`2026-12-03 09:00`). At most `horizon` ahead; a time in the
/// past is refused (one within the last minute counts as now).
pub fn parse_start(
    raw: &str,
    now: Timestamp,
    horizon: Duration,
) -> Result<Option<Timestamp>, String> {
    let t = raw.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("now") {
        return Ok(None);
    }
    let at = match Timestamp::parse_utc(t) {
        Some(at) => at,
        None => {
            let delay = t.strip_prefix("in ").unwrap_or(t);
            let d = super::AccessDuration::parse(delay).map_err(|_| {
                "write when to start like 2h, 1d or 2026-12-03 09:00 (UTC), or leave it empty for now"
                    .to_string()
            })?;
            now.plus(d.as_duration())
        }
    };
    if at < now.minus(Duration::from_secs(60)) {
        return Err(format!(
            "{} UTC has passed: choose a later start",
            &at.format_utc()[..16]
        ));
    }
    if at > now.plus(horizon) {
        let days = horizon.as_secs() / 86_400;
        let ahead = if days > 0 && horizon.as_secs().is_multiple_of(86_400) {
            format!("{days} day{}", if days == 1 { "" } else { "s" })
        } else {
            format_duration(horizon)
        };
        return Err(format!("access can start at most {ahead} ahead"));
    }
    Ok((at > now).then_some(at))
}

/// Days since 1970-01-01 of a civil date (the inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A short human duration: `2h 5m`, `45m`, `30s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(Timestamp(0).format_utc(), "1970-01-01 00:00:00 UTC");
        // 2026-11-27T15:21:53Z
        assert_eq!(
            Timestamp(1_795_792_913_000).format_utc(),
            "2026-11-27 15:21:53 UTC"
        );
        assert_eq!(Timestamp(951_782_400_000).rfc3339(), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn parses_utc_times_as_typed() {
        let t = Timestamp(1_795_792_860_000); // 2026-11-27 15:21 UTC
        for typed in [
            "2026-11-27 15:21",
            "2026-11-27T15:21",
            "2026-11-27 15:21:00",
            "2026-11-27T15:21:00Z",
            " 2026-11-27 15:21 UTC ",
        ] {
            assert_eq!(Timestamp::parse_utc(typed), Some(t), "{typed}");
        }
        assert_eq!(
            Timestamp::parse_utc("2000-02-29 00:00").map(Timestamp::rfc3339),
            Some("2000-02-29T00:00:00Z".into())
        );
        for bad in [
            "2026-02-29 10:00",
            "2026-13-01 10:00",
            "2026-11-31 10:00",
            "2026-11-27 24:00",
            "2026-11-27 10:60",
            "2026-11-27",
            "27/11/2026 10:00",
            "2026-1-27 10:00",
            "+2026-11-27 10:00",
            "1969-12-31 23:59",
            "2h",
            "",
        ] {
            assert_eq!(Timestamp::parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_start_is_now_a_delay_or_a_utc_time_within_the_horizon() {
        let now = Timestamp(1_795_792_860_000); // 2026-11-27 15:21 UTC
        let days14 = Duration::from_secs(14 * 86_400);
        let h = |n: i64| Timestamp(now.0 + n * 3_600_000);
        assert_eq!(parse_start("", now, days14), Ok(None));
        assert_eq!(parse_start(" now ", now, days14), Ok(None));
        assert_eq!(parse_start("2h", now, days14), Ok(Some(h(2))));
        assert_eq!(parse_start("in 1d", now, days14), Ok(Some(h(24))));
        assert_eq!(
            parse_start("2026-11-28 15:21", now, days14),
            Ok(Some(h(24)))
        );
        // Within the last minute: now.
        assert_eq!(parse_start("2026-11-27 15:20:30", now, days14), Ok(None));
        assert_eq!(
            parse_start("2026-11-27 15:00", now, days14),
            Err("2026-11-27 15:00 UTC has passed: choose a later start".into())
        );
        assert_eq!(
            parse_start("15d", now, days14),
            Err("access can start at most 14 days ahead".into())
        );
        assert_eq!(parse_start("14d", now, days14), Ok(Some(h(14 * 24))));
        assert_eq!(
            parse_start("tomorrow", now, days14),
            Err(
                "write when to start like 2h, 1d or 2026-12-03 09:00 (UTC), or leave it empty for now"
                    .into()
            )
        );
        assert_eq!(
            parse_start("3h", now, Duration::from_secs(7200)),
            Err("access can start at most 2h ahead".into())
        );
    }

    #[test]
    fn until_never_negative() {
        assert_eq!(Timestamp(5000).until(Timestamp(1000)), Duration::ZERO);
        assert_eq!(
            Timestamp(1000).until(Timestamp(5000)),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(3900)), "1h 5m");
        assert_eq!(format_duration(Duration::from_secs(45 * 60)), "45m");
    }
}
