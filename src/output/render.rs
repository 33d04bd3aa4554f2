//! How a record's cells are written: the run's rendering choices, and
//! timestamps as RFC 3339 in UTC or the `--tz` zone.

use chrono::{DateTime, Datelike, Offset, SecondsFormat, Timelike, Utc};
use chrono_tz::Tz;

/// How cells are rendered, the same for every record of a run.
#[derive(Debug, Clone)]
pub struct Render {
    pub source: String,
    pub platform: &'static str,
    pub tz: Option<Tz>,
    pub include_raw: bool,
    /// Leave CSV cells that look like formulas alone.
    pub csv_raw: bool,
}

impl Render {
    /// Appends `t` as RFC 3339 to the second: `Z` in UTC, else the zone's
    /// offset. Hand-rolled because it runs for every timestamp written.
    pub fn push_time(&self, t: DateTime<Utc>, out: &mut Vec<u8>) {
        // Readers take no instant outside `in_range`; one made otherwise
        // is written in UTC rather than moved by an offset past chrono's
        // range (a panic).
        let zone = self.tz.filter(|_| crate::window::in_range(t));
        let (local, offset) = match zone {
            None => (t.naive_utc(), None),
            Some(zone) => {
                let l = t.with_timezone(&zone);
                match l.offset().fix().local_minus_utc() {
                    // Local mean time before a zone adopted a standard
                    // (Bogotá until 1914: -04:56:16) has an offset in
                    // seconds, which RFC 3339 cannot write: such an
                    // instant is written in UTC, exactly, rather than
                    // seconds off.
                    secs if secs % 60 != 0 => (t.naive_utc(), None),
                    secs => (l.naive_local(), Some(secs)),
                }
            }
        };
        let year = local.year();
        if !(0..=9999).contains(&year) {
            let text = t.to_rfc3339_opts(SecondsFormat::Secs, true);
            out.extend_from_slice(text.as_bytes());
            return;
        }
        let two = |out: &mut Vec<u8>, n: u32| {
            out.push(b'0' + (n / 10) as u8);
            out.push(b'0' + (n % 10) as u8);
        };
        two(out, year as u32 / 100);
        two(out, year as u32 % 100);
        out.push(b'-');
        two(out, local.month());
        out.push(b'-');
        two(out, local.day());
        out.push(b'T');
        two(out, local.hour());
        out.push(b':');
        two(out, local.minute());
        out.push(b':');
        two(out, local.second());
        match offset {
            None => out.push(b'Z'),
            Some(secs) => {
                out.push(if secs < 0 { b'-' } else { b'+' });
                let minutes = secs.unsigned_abs() / 60;
                two(out, minutes / 60);
                out.push(b':');
                two(out, minutes % 60);
            }
        }
    }

    /// Plain rendering for tests: source `s`, times in UTC, no raw JSON.
    #[cfg(test)]
    pub fn for_tests(platform: &'static str) -> Render {
        Render {
            source: "s".into(),
            platform,
            tz: None,
            include_raw: false,
            csv_raw: false,
        }
    }

    #[cfg(test)]
    pub fn time(&self, t: DateTime<Utc>) -> String {
        let mut s = Vec::new();
        self.push_time(t, &mut s);
        String::from_utf8(s).expect("ASCII")
    }
}
