//! Time windows: parsing user times and durations, and slicing a window into
//! the pieces a platform accepts.
//!
//! Every bound is computed once, in UTC, and only converted to a platform's
//! format at the edge (the README's "Records"). Naive times are read in the source's
//! zone, never the machine's, so a cron job behaves the same on any host.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A half-open interval [from, to) in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Window { from, to }
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from <= t && t < self.to
    }

    /// How many slices [`Window::split`] would make: checked before a plan
    /// is built, so an absurd one is refused instead of allocated.
    pub fn count(&self, step: Duration) -> i64 {
        let (length, step) = (
            (self.to - self.from).num_milliseconds().max(0),
            step.num_milliseconds().max(1),
        );
        length / step + i64::from(length % step != 0)
    }

    /// Splits into consecutive slices of at most `step`, covering the window
    /// exactly: no gap, no overlap.
    pub fn split(&self, step: Duration) -> Vec<Window> {
        assert!(step > Duration::zero(), "window step must be positive");
        let mut out = Vec::new();
        let mut from = self.from;
        while from < self.to {
            let to = (from + step).min(self.to);
            out.push(Window { from, to });
            from = to;
        }
        out
    }
}

/// Parses a duration such as `500ms`, `30s`, `90m`, `36h`, `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {text:?} needs a unit: ms, s, m, h or d (e.g. 90m)"))?;
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("duration {text:?} must start with a whole number (e.g. 36h)"))?;
    let d = match unit {
        "ms" => Duration::try_milliseconds(n),
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        _ => {
            return Err(format!(
                "duration {text:?} has unknown unit {unit:?}: use ms, s, m, h or d"
            ))
        }
    };
    match d {
        Some(d) if d <= Duration::days(MAX_DAYS) => Ok(d),
        _ => Err(format!(
            "duration {text:?} is too large (at most {MAX_DAYS}d)"
        )),
    }
}

/// No duration a user means reaches a century; bounding them keeps every
/// date computation far from chrono's range.
const MAX_DAYS: i64 = 36_600;

/// The most slices (requests at least) or output files one plan may hold:
/// far beyond any real export (ten years of hourly files), far below what
/// would exhaust memory when a window of `1ms` meets a year.
pub const MAX_SLICES: i64 = 100_000;

/// Whether `t` is an instant chatdump takes from any text: within the years
/// 0001 to 9999 with a day to spare at both ends, so that its wall-clock
/// time in every zone is still a four-digit year (RFC 3339 has no other)
/// and no offset arithmetic leaves chrono's range (where it panics).
pub fn in_range(t: DateTime<Utc>) -> bool {
    const FIRST: i64 = -62_135_596_800 + 86_400; // 0001-01-02T00:00:00Z
    const LAST: i64 = 253_402_214_400; // 9999-12-31T00:00:00Z
    (FIRST..LAST).contains(&t.timestamp())
}

/// `t`, if [`in_range`]; else why not, naming `text`.
pub fn checked(t: DateTime<Utc>, text: &str) -> Result<DateTime<Utc>, String> {
    if in_range(t) {
        Ok(t)
    } else {
        Err(format!("time {text:?} is outside the years 0001 to 9999"))
    }
}

/// Parses a time bound: RFC 3339 with an offset, or `YYYY-MM-DD[ HH:MM[:SS]]`
/// (also with `T`) read as wall-clock time in `zone`.
pub fn parse_time(text: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return checked(t.with_timezone(&Utc), text);
    }
    let naive = parse_naive(text).ok_or_else(|| {
        format!(
            "time {text:?} is neither RFC 3339 (2024-03-01T00:00:00Z) nor YYYY-MM-DD[ HH:MM[:SS]]"
        )
    })?;
    let t = local_to_utc(naive, zone).ok_or_else(|| {
        format!("time {text:?} does not exist in {zone} (skipped by a clock change)")
    })?;
    checked(t, text)
}

fn parse_naive(text: &str) -> Option<NaiveDateTime> {
    const FORMATS: &[&str] = &[
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ];
    FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

/// Reads a platform's naive wall-clock timestamp in `zone`. Ambiguous times
/// (a clock going back) take the earlier instant, so the result is stable.
pub fn local_to_utc(naive: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// Parses a platform timestamp `YYYY-MM-DD HH:MM:SS` (fraction tolerated)
/// in `zone`. Empty strings are absent values, not errors.
pub fn parse_platform_time(text: &str, zone: Tz) -> Result<Option<DateTime<Utc>>, String> {
    let Some((naive, text)) = naive_platform_time(text)? else {
        return Ok(None);
    };
    let t = local_to_utc(naive, zone)
        .ok_or_else(|| format!("timestamp {text:?} does not exist in {zone}"))?;
    checked(t, text).map(Some)
}

/// The wall-clock time a platform timestamp says, with the text trimmed.
fn naive_platform_time(text: &str) -> Result<Option<(NaiveDateTime, &str)>, String> {
    let text = text.trim();
    if text.is_empty() || text.starts_with("0000-00-00") {
        return Ok(None);
    }
    let naive = match parse_plain(text.as_bytes()) {
        Some(naive) => naive,
        None => NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
            .map_err(|_| format!("unreadable timestamp {text:?}"))?,
    };
    Ok(Some((naive, text)))
}

/// [`parse_platform_time`] for many timestamps of one zone, such as a
/// chat's messages, minutes apart: it remembers the zone's offset over the
/// hour it last read, where finding it anew is a search through the zone's
/// transitions for every message.
pub struct ZoneClock {
    zone: Tz,
    /// The start of an hour of wall-clock time over which the zone's offset
    /// does not change, and that offset in seconds.
    hour: Option<(NaiveDateTime, i64)>,
}

impl ZoneClock {
    pub fn new(zone: Tz) -> ZoneClock {
        ZoneClock { zone, hour: None }
    }

    pub fn read(&mut self, text: &str) -> Result<Option<DateTime<Utc>>, String> {
        let Some((naive, text)) = naive_platform_time(text)? else {
            return Ok(None);
        };
        let zone = self.zone;
        let t = self
            .utc_of(naive)
            .ok_or_else(|| format!("timestamp {text:?} does not exist in {zone}"))?;
        checked(t, text).map(Some)
    }

    fn utc_of(&mut self, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
        use chrono::{LocalResult, Offset, Timelike};
        let hour = naive.with_minute(0)?.with_second(0)?.with_nanosecond(0)?;
        if let Some((known, offset)) = self.hour {
            if known == hour {
                return Some(Utc.from_utc_datetime(&(naive - Duration::seconds(offset))));
            }
        }
        let utc = local_to_utc(naive, self.zone)?;
        // Remembered only when the hour's first and last instants have the
        // same offset and neither falls in a gap or a repeated hour: then no
        // time in between does (a zone's transitions are months apart).
        let last = hour + Duration::hours(1) - Duration::nanoseconds(1);
        let offset = |t: &NaiveDateTime| match self.zone.from_local_datetime(t) {
            LocalResult::Single(t) => Some(i64::from(t.offset().fix().local_minus_utc())),
            _ => None,
        };
        self.hour = match (offset(&hour), offset(&last)) {
            (Some(a), Some(b)) if a == b => Some((hour, a)),
            _ => None,
        };
        Some(utc)
    }
}

/// The common `YYYY-MM-DD HH:MM:SS` without chrono's format machinery: it is
/// read once per message, and a large export has millions.
fn parse_plain(b: &[u8]) -> Option<NaiveDateTime> {
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b' ' | b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?.and_hms_opt(
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    )
}

/// Formats a UTC instant as the platform's wall clock in `zone`.
pub fn format_in_zone(t: DateTime<Utc>, zone: Tz, format: &str) -> String {
    t.with_timezone(&zone).format(format).to_string()
}

/// A duration as a user would write it: `1d`, `6h`, `90m`, `30s`.
pub fn humanize(d: Duration) -> String {
    let secs = d.num_seconds();
    if secs % 86_400 == 0 {
        format!("{}d", d.num_days())
    } else if secs % 3600 == 0 {
        format!("{}h", d.num_hours())
    } else if secs % 60 == 0 {
        format!("{}m", d.num_minutes())
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(crate::jsonstream::proptest_config(2048))]

        /// Any timestamp text a platform or a user writes, in any zone, is
        /// read as an instant every renderer can show, or refused; never a
        /// panic.
        #[test]
        fn any_time_text_is_read_in_range_or_refused(
            year in "[+-]?[0-9]{1,7}",
            rest in "-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?",
            offset in "(Z|[+-][0-9]{2}:[0-9]{2})",
            noise in "\\PC{0,12}",
            zone in 0..chrono_tz::TZ_VARIANTS.len(),
        ) {
            let zone = chrono_tz::TZ_VARIANTS[zone];
            let text = format!("{year}{rest}");
            let mut clock = ZoneClock::new(zone);
            for t in [
                parse_platform_time(&text, zone).ok().flatten(),
                clock.read(&text).ok().flatten(),
                parse_platform_time(&noise, zone).ok().flatten(),
                parse_time(&text, zone).ok(),
                parse_time(&format!("{text}{offset}"), zone).ok(),
                parse_time(&noise, zone).ok(),
            ].into_iter().flatten() {
                proptest::prop_assert!(in_range(t), "{} read as {}", text, t);
            }
        }
    }

    /// Whatever order times come in, across every kind of transition (an
    /// hour skipped and repeated, a half-hour one, an offset change at an
    /// odd minute, a zone with none), the clock gives what a one-off
    /// conversion gives, refusals included.
    #[test]
    fn zone_clock_reads_as_one_off_conversions_do() {
        let days = [
            ("America/New_York", "2024-03-10"),
            ("America/New_York", "2024-11-03"),
            ("Europe/London", "2024-10-27"),
            ("Australia/Lord_Howe", "2024-04-07"),
            ("Australia/Lord_Howe", "2024-10-06"),
            ("America/Bogota", "2024-03-05"),
            // Local mean time to standard time a minute after midnight: the only hour
            // from 1890 to 2030, in any zone, whose first and last instants
            // both exist once but with two offsets.
            ("Europe/Athens", "1916-07-28"),
            ("Europe/Amsterdam", "1937-07-01"),
        ];
        for (name, day) in days {
            let zone: Tz = name.parse().unwrap();
            let start = NaiveDate::parse_from_str(day, "%Y-%m-%d")
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                - Duration::hours(2);
            let mut forward = ZoneClock::new(zone);
            let mut backward = ZoneClock::new(zone);
            let times: Vec<String> = (0..=28 * 60 / 7)
                .map(|n| start + Duration::minutes(7 * n) + Duration::seconds(n % 60))
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .collect();
            for text in &times {
                assert_eq!(
                    forward.read(text),
                    parse_platform_time(text, zone),
                    "{name} {text}"
                );
            }
            for text in times.iter().rev() {
                assert_eq!(
                    backward.read(text),
                    parse_platform_time(text, zone),
                    "{name} {text}"
                );
            }
        }
        let mut clock = ZoneClock::new(chrono_tz::America::Bogota);
        assert_eq!(clock.read("  "), Ok(None));
        assert!(clock.read("yesterday").is_err());
        assert_eq!(
            clock.read("2024-03-05 10:00:00.250").unwrap(),
            parse_platform_time("2024-03-05 10:00:00.250", chrono_tz::America::Bogota).unwrap()
        );
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("36h").unwrap(), Duration::hours(36));
        assert_eq!(parse_duration("7d").unwrap(), Duration::days(7));
        assert_eq!(
            parse_duration("250ms").unwrap(),
            Duration::milliseconds(250)
        );
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("7w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999d").is_err());
        assert!(parse_duration("99999999d")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_duration("99999999999999999999999s").is_err());
    }

    #[test]
    fn naive_times_are_read_in_the_source_zone() {
        let hcm: Tz = "Asia/Ho_Chi_Minh".parse().unwrap();
        assert_eq!(
            parse_time("2024-03-01", hcm).unwrap(),
            utc("2024-02-29T17:00:00Z")
        );
        assert_eq!(
            parse_time("2024-03-01 09:30", hcm).unwrap(),
            utc("2024-03-01T02:30:00Z")
        );
        let bog: Tz = "America/Bogota".parse().unwrap();
        assert_eq!(
            parse_time("2024-03-01T10:00:05", bog).unwrap(),
            utc("2024-03-01T15:00:05Z")
        );
        assert_eq!(
            parse_time("2024-03-01T10:00:00+02:00", bog).unwrap(),
            utc("2024-03-01T08:00:00Z")
        );
        assert!(parse_time("yesterday", bog).is_err());
    }

    #[test]
    fn fast_and_general_parsers_agree() {
        for text in [
            "2024-02-29 23:59:59",
            "1999-12-31T00:00:00",
            "2024-13-01 00:00:00",
            "2024-02-30 10:00:00",
            "2024-1-01 00:00:00",
        ] {
            assert_eq!(
                parse_plain(text.as_bytes()),
                NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
                    .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
                    .ok()
                    .filter(|_| text.len() == 19),
                "{text}"
            );
        }
    }

    #[test]
    fn platform_times() {
        let hcm: Tz = "Asia/Ho_Chi_Minh".parse().unwrap();
        assert_eq!(
            parse_platform_time("2023-04-22 09:48:30", hcm).unwrap(),
            Some(utc("2023-04-22T02:48:30Z"))
        );
        assert_eq!(parse_platform_time("", hcm).unwrap(), None);
        assert!(parse_platform_time("22/04/2023", hcm).is_err());
        assert_eq!(
            format_in_zone(utc("2023-04-22T02:48:30Z"), hcm, "%Y-%m-%dT%H:%M:%SZ"),
            "2023-04-22T09:48:30Z"
        );
    }

    #[test]
    fn split_covers_exactly() {
        let w = Window::new(utc("2024-03-01T00:00:00Z"), utc("2024-03-03T12:00:00Z"));
        let parts = w.split(Duration::days(1));
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].from, w.from);
        assert_eq!(parts[2].to, w.to);
        for pair in parts.windows(2) {
            assert_eq!(pair[0].to, pair[1].from);
        }
        assert!(Window::new(w.from, w.from)
            .split(Duration::days(1))
            .is_empty());
        for step in [
            Duration::days(1),
            Duration::hours(7),
            Duration::milliseconds(1),
        ] {
            let day = Window::new(w.from, w.from + Duration::days(1));
            if day.count(step) < 1000 {
                assert_eq!(day.count(step), day.split(step).len() as i64, "{step}");
            }
        }
        assert_eq!(w.count(Duration::milliseconds(1)), 216_000_000);
    }
}
