//! Quantities with units, as scenario files write them: sizes ("64MiB",
//! "1.5GB", "100"), rates ("10Mbit", "1Gbit", "50MiB/s") and durations
//! ("30ms", "2m", "1.5s", "1h").

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Size(pub u64);

/// Bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(pub u64);

/// A span of virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

/// Splits "12.5MiB" into (12.5, "MiB").
fn split(s: &str) -> Result<(f64, &str), String> {
    let s = s.trim();
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let value: f64 = num.parse().map_err(|_| format!("{s:?} does not start with a number"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{s:?} is not a usable amount"));
    }
    Ok((value, unit.trim()))
}

fn whole(value: f64, what: &str) -> Result<u64, String> {
    if value > u64::MAX as f64 / 2.0 {
        return Err(format!("{what} is too large"));
    }
    Ok(value.round() as u64)
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        p2p_core::units::parse_size(s).map(Size)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (v, unit) = split(s)?;
        let bytes_per_sec: f64 = match unit {
            "bit" | "bit/s" => v / 8.0,
            "Kbit" | "kbit" | "Kbit/s" | "kbit/s" => v * 1e3 / 8.0,
            "Mbit" | "Mbit/s" => v * 1e6 / 8.0,
            "Gbit" | "Gbit/s" => v * 1e9 / 8.0,
            "B/s" => v,
            "KB/s" | "kB/s" => v * 1e3,
            "MB/s" => v * 1e6,
            "GB/s" => v * 1e9,
            "KiB/s" => v * 1024.0,
            "MiB/s" => v * 1024.0 * 1024.0,
            "GiB/s" => v * 1024.0 * 1024.0 * 1024.0,
            _ => return Err(format!("{s:?}: unknown rate unit {unit:?} (bit, Kbit, Mbit, Gbit, B/s, MB/s, MiB/s...)")),
        };
        let r = whole(bytes_per_sec, s)?;
        if r == 0 {
            return Err(format!("{s:?}: a rate must be above zero"));
        }
        Ok(Rate(r))
    }
}

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (v, unit) = split(s)?;
        let secs = match unit {
            "ns" => v / 1e9,
            "us" | "µs" => v / 1e6,
            "ms" => v / 1e3,
            "s" => v,
            "m" | "min" => v * 60.0,
            "h" => v * 3600.0,
            _ => return Err(format!("{s:?}: unknown time unit {unit:?} (ns, us, ms, s, m, h)")),
        };
        Duration::try_from_secs_f64(secs).map(Dur).map_err(|_| format!("{s:?} is not a usable duration"))
    }
}

macro_rules! from_string {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
from_string!(Size, Rate, Dur);

impl Rate {
    /// How long `bytes` take at this rate.
    pub fn time_for(self, bytes: u64) -> Duration {
        Duration::from_nanos(((bytes as u128 * 1_000_000_000) / self.0.max(1) as u128).min(u64::MAX as u128) as u64)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 30 && b.is_multiple_of(1 << 20) {
            write!(f, "{}GiB", b as f64 / (1u64 << 30) as f64)
        } else if b >= 1 << 20 && b.is_multiple_of(1 << 10) {
            write!(f, "{}MiB", b as f64 / (1u64 << 20) as f64)
        } else if b >= 1 << 10 {
            write!(f, "{:.1}KiB", b as f64 / 1024.0)
        } else {
            write!(f, "{b}B")
        }
    }
}

/// "1.234s": virtual times in reports, to the millisecond.
pub fn secs(d: Duration) -> String {
    format!("{}.{:03}s", d.as_secs(), d.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_and_refuse() {
        assert_eq!("64MiB".parse::<Size>(), Ok(Size(64 << 20)));
        assert_eq!("1.5KB".parse::<Size>(), Ok(Size(1500)));
        assert_eq!("100".parse::<Size>(), Ok(Size(100)));
        assert_eq!("10Mbit".parse::<Rate>(), Ok(Rate(1_250_000)));
        assert_eq!("1MiB/s".parse::<Rate>(), Ok(Rate(1 << 20)));
        assert_eq!("30ms".parse::<Dur>(), Ok(Dur(Duration::from_millis(30))));
        assert_eq!("2m".parse::<Dur>(), Ok(Dur(Duration::from_secs(120))));
        assert!("12 parsecs".parse::<Dur>().unwrap_err().contains("unknown time unit"));
        assert!("fast".parse::<Rate>().is_err());
        assert!("0Mbit".parse::<Rate>().is_err());
        assert_eq!(Rate(1_250_000).time_for(1_250_000), Duration::from_secs(1));
        assert_eq!(secs(Duration::from_millis(61_005)), "61.005s");
    }
}
