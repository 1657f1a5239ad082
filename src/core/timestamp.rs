//! Timestamps as states and events are serialized: RFC 3339 in UTC with `Z` and the shortest of
//! 0, 3, 6 or 9 fraction digits, exactly as chrono's serde writes them, but written into one
//! buffer. chrono writes them through the formatter a few characters at a time, and serde_json
//! escapes each piece on its own; with timestamps in every state and event, that was a large
//! part of encoding each save of the durable stores.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

/// The longest text: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const MAX_LEN: usize = 30;

/// For `#[serde(serialize_with)]` on a `DateTime<Utc>`.
pub(crate) fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    match Rfc3339::of(at) {
        Some(text) => s.serialize_str(text.as_str()),
        // A year chrono writes with its sign: rare enough to be left to chrono.
        None => at.serialize(s),
    }
}

/// For `#[serde(serialize_with)]` on an `Option<DateTime<Utc>>`.
pub(crate) fn serialize_option<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    struct Present<'a>(&'a DateTime<Utc>);
    impl Serialize for Present<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, s)
        }
    }
    match at {
        Some(at) => s.serialize_some(&Present(at)),
        None => s.serialize_none(),
    }
}

/// A timestamp's text, for years 0 to 9999.
struct Rfc3339 {
    bytes: [u8; MAX_LEN],
    len: usize,
}

impl Rfc3339 {
    fn of(at: &DateTime<Utc>) -> Option<Self> {
        let year = u32::try_from(at.year()).ok().filter(|&y| y <= 9999)?;
        let (mut second, mut nano) = (at.second(), at.nanosecond());
        // A leap second, as chrono writes it.
        if nano >= 1_000_000_000 {
            second += 1;
            nano -= 1_000_000_000;
        }
        let mut text = Self {
            bytes: [0; MAX_LEN],
            len: 0,
        };
        text.digits(year, 4);
        text.push(b'-');
        text.digits(at.month(), 2);
        text.push(b'-');
        text.digits(at.day(), 2);
        text.push(b'T');
        text.digits(at.hour(), 2);
        text.push(b':');
        text.digits(at.minute(), 2);
        text.push(b':');
        text.digits(second, 2);
        if nano != 0 {
            text.push(b'.');
            if nano % 1_000_000 == 0 {
                text.digits(nano / 1_000_000, 3);
            } else if nano % 1_000 == 0 {
                text.digits(nano / 1_000, 6);
            } else {
                text.digits(nano, 9);
            }
        }
        text.push(b'Z');
        Some(text)
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// `value`'s last `width` decimal digits, zero-padded.
    fn digits(&mut self, mut value: u32, width: usize) {
        for at in (self.len..self.len + width).rev() {
            self.bytes[at] = b'0' + (value % 10) as u8;
            value /= 10;
        }
        self.len += width;
    }

    fn as_str(&self) -> &str {
        // Digits and separators only: ASCII.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};
    use proptest::prelude::*;

    use super::*;

    #[derive(Serialize)]
    struct Ours {
        #[serde(serialize_with = "serialize")]
        at: DateTime<Utc>,
        #[serde(serialize_with = "serialize_option")]
        maybe: Option<DateTime<Utc>>,
    }

    #[derive(Serialize)]
    struct Chronos {
        at: DateTime<Utc>,
        maybe: Option<DateTime<Utc>>,
    }

    fn same_as_chrono(at: DateTime<Utc>) {
        for maybe in [Some(at), None] {
            let ours = serde_json::to_string(&Ours { at, maybe }).unwrap();
            let chronos = serde_json::to_string(&Chronos { at, maybe }).unwrap();
            assert_eq!(ours, chronos);
        }
    }

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        for nano in [
            0,
            1,
            999,
            1_000,
            120_000,
            1_000_000,
            900_000_000,
            999_999_999,
        ] {
            same_as_chrono(Utc.from_utc_datetime(&day.and_hms_nano_opt(8, 5, 9, nano).unwrap()));
        }
        // A leap second, and the years at and beyond the four-digit range.
        let leap = day.and_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap();
        same_as_chrono(Utc.from_utc_datetime(&leap));
        for year in [-1, 0, 1, 9999, 10000, 262142] {
            let date = NaiveDate::from_ymd_opt(year, 1, 2).unwrap();
            same_as_chrono(Utc.from_utc_datetime(&date.and_hms_opt(3, 4, 5).unwrap()));
        }
    }

    proptest! {
        #[test]
        fn any_timestamp_is_written_as_chrono_writes_it(
            secs in -62_000_000_000i64..260_000_000_000i64,
            nano in prop_oneof![Just(0u32), 0..1_000u32, (0..1_000u32).prop_map(|n| n * 1_000_000), 0..2_000_000_000u32],
        ) {
            if let Some(at) = DateTime::from_timestamp(secs, nano) {
                same_as_chrono(at);
            }
        }
    }
}
