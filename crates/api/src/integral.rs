//! Integers in request bodies as the OpenAPI 3.1 document declares them: JSON Schema
//! (2020-12) reads `5.0` as the integer 5, so the Manager does too. A number with a
//! fraction, or out of the field's range, is refused with serde's message naming the field.
//!
//! Used with `#[serde(deserialize_with = "crate::integral::…")]` on the integer fields of the
//! bodies clients send (`expected_revision`, `to_revision`, `expires_at`, a report's
//! `revision` and `caught_up_to`), and for a revision in a query string; answers are always
//! written as plain integers. Revisions are stored as signed 64-bit integers: one past [`MAX_REVISION`] is
//! refused here rather than failing in the store.

use serde::Deserialize;
use serde::de::{self, Deserializer, Unexpected, Visitor};

/// A JSON integer, or a float with no fractional part, widened to `i128`.
struct Integral(i128);

impl<'de> Deserialize<'de> for Integral {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Integral;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Integral, E> {
                Ok(Integral(i128::from(v)))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Integral, E> {
                Ok(Integral(i128::from(v)))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Integral, E> {
                // Integers that fit 64 bits arrive as integers; a float is `5.0`, or an
                // integer too large for them, rounded. Only floats that are exact integers
                // (up to 2^53) are taken: past that, the number written is not known.
                if v.is_finite() && v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_992.0 {
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(Integral(v as i128))
                } else {
                    Err(E::invalid_type(Unexpected::Float(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The largest revision: revisions are stored as signed 64-bit integers, so the document's
/// `format: int64, minimum: 0` is exactly what is accepted.
pub const MAX_REVISION: u64 = i64::MAX.unsigned_abs();

const REVISION: &str = "a revision, from 0 to 9223372036854775807";

fn revision_of<E: de::Error>(v: i128) -> Result<u64, E> {
    match u64::try_from(v) {
        Ok(r) if r <= MAX_REVISION => Ok(r),
        _ => Err(E::invalid_value(
            Unexpected::Other("an integer out of range"),
            &REVISION,
        )),
    }
}

/// A revision (0 ..= [`MAX_REVISION`]).
pub fn revision<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    revision_of(Integral::deserialize(d)?.0)
}

/// An optional revision; `null` is none.
pub fn opt_revision<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<Integral>::deserialize(d)?
        .map(|i| revision_of(i.0))
        .transpose()
}

/// A revision in a query string (`?since=12`): decimal digits only.
pub fn query_revision<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = std::borrow::Cow::<str>::deserialize(d)?;
    match text.parse::<u64>() {
        Ok(v) if text.bytes().all(|b| b.is_ascii_digit()) => revision_of(i128::from(v)),
        _ => Err(de::Error::invalid_value(Unexpected::Str(&text), &REVISION)),
    }
}

/// An optional revision in a query string (`?at=12`).
pub fn opt_query_revision<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    query_revision(d).map(Some)
}

/// A `u64` (a count).
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Integral::deserialize(d)?.0;
    u64::try_from(v).map_err(|_| {
        de::Error::invalid_value(
            Unexpected::Other("an integer out of range"),
            &"an integer from 0 to 18446744073709551615",
        )
    })
}

/// An optional `i64` (unix milliseconds); `null` is none.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<Integral>::deserialize(d)?
        .map(|i| narrow(i.0))
        .transpose()
}

/// An `i64` (unix milliseconds).
pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    narrow(Integral::deserialize(d)?.0)
}

fn narrow<E: de::Error>(v: i128) -> Result<i64, E> {
    i64::try_from(v).map_err(|_| {
        E::invalid_value(
            Unexpected::Other("an integer out of range"),
            &"a 64-bit integer",
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(deserialize_with = "super::revision")]
        revision: u64,
        #[serde(default, deserialize_with = "super::opt_revision")]
        expected: Option<u64>,
        #[serde(default, deserialize_with = "super::opt_i64")]
        at: Option<i64>,
    }

    fn read(text: &str) -> Result<Body, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn integers_and_their_float_spellings_are_read_fractions_and_overflows_refused() {
        let b = read(r#"{"revision": 5.0, "expected": 7, "at": -2.0}"#).unwrap();
        assert_eq!((b.revision, b.expected, b.at), (5, Some(7), Some(-2)));
        let b = read(r#"{"revision": 9007199254740992.0, "at": -9223372036854775808}"#).unwrap();
        assert_eq!((b.revision, b.at), (1 << 53, Some(i64::MIN)));
        let b = read(r#"{"revision": 9223372036854775807, "expected": null}"#).unwrap();
        assert_eq!(
            (b.revision, b.expected, b.at),
            (super::MAX_REVISION, None, None)
        );
        let revision = "expected a revision, from 0 to 9223372036854775807";
        for (bad, why) in [
            (
                r#"{"revision": 1.5}"#,
                "invalid type: floating point `1.5`, expected an integer",
            ),
            (r#"{"revision": -1}"#, revision),
            (r#"{"revision": 9223372036854775808}"#, revision),
            (r#"{"revision": 1e300}"#, "expected an integer"),
            (
                r#"{"revision": "1"}"#,
                "invalid type: string \"1\", expected an integer",
            ),
            (
                r#"{"revision": 1, "at": 9223372036854775808}"#,
                "expected a 64-bit integer",
            ),
            // Past 2^53 a float is not an exact integer: too large for 64 bits, rounded.
            (
                r#"{"revision": 1, "expected": 1e19}"#,
                "expected an integer",
            ),
            (
                r#"{"revision": 1, "at": -9223372036854775809}"#,
                "expected an integer",
            ),
            (r#"{"revision": 9007199254740993.0}"#, "expected an integer"),
        ] {
            let e = read(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[derive(Debug, Deserialize)]
    struct Query {
        #[serde(default, deserialize_with = "super::query_revision")]
        since: u64,
    }

    #[test]
    fn a_query_revision_is_digits_within_range() {
        let read = |q: &str| serde_json::from_value::<Query>(serde_json::json!({ "since": q }));
        assert_eq!(read("12").unwrap().since, 12);
        assert_eq!(
            read("9223372036854775807").unwrap().since,
            super::MAX_REVISION
        );
        for bad in ["9223372036854775808", "-1", "+1", "1.0", "", "x"] {
            let e = read(bad).unwrap_err().to_string();
            assert!(e.contains("expected a revision"), "{bad}: {e}");
        }
    }
}
