//! Human durations as written in manifests: `500ms`, `2s`, `10m`, `1h`, `1m30s`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the way operators write them. Serialises back to the same form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: expected a number followed by a unit (ms, s, m, h), e.g. \"2s\" or \"1m30s\""
)]
pub struct DurationError {
    pub input: String,
}

/// Parses `500ms`, `2s`, `10m`, `1h`, or sequences such as `1h30m`. No spaces, no sign.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: input.to_owned(),
    };
    if input.is_empty() {
        return Err(err());
    }
    let bytes = input.as_bytes();
    let mut total = Duration::ZERO;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(err());
        }
        let n: u64 = input[start..i].parse().map_err(|_| err())?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let part = match &input[unit_start..i] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => n.checked_mul(60).map(Duration::from_secs).ok_or_else(err)?,
            "h" => n
                .checked_mul(3600)
                .map(Duration::from_secs)
                .ok_or_else(err)?,
            _ => return Err(err()),
        };
        total = total.checked_add(part).ok_or_else(err)?;
    }
    Ok(total)
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ms = d.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let mut secs = d.as_secs();
        let h = secs / 3600;
        secs %= 3600;
        let m = secs / 60;
        secs %= 60;
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if secs > 0 {
            write!(f, "{secs}s")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Written as text: `500ms`, `2s`, `10m`, `1h30m`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for HumanDuration {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^([0-9]+(ms|s|m|h))+$"))
            .description(Some(
                "A duration: numbers followed by a unit (ms, s, m, h), e.g. `500ms`, `2s`, `1m30s`.",
            ))
            .examples(["2s", "1m30s"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for HumanDuration {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sequences() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn refuses_spaces_signs_and_unknown_units() {
        for bad in [
            "",
            "2 s",
            "-1s",
            "2",
            "s",
            "2days",
            "1.5s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["250ms", "2s", "10m", "1h30m", "1h1m1s"] {
            let d = HumanDuration(parse_duration(s).unwrap());
            assert_eq!(d.to_string(), s);
        }
    }
}
