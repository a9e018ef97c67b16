//! Integers in request bodies as the OpenAPI 3.1 document declares them: JSON Schema
//! (2020-12) reads `5.0` as the integer 5, so the Manager does too. A number with a
//! fraction, or out of the field's range, is refused with serde's message naming the field.
//!
//! Used with `#[serde(deserialize_with = "crate::integral::…")]` on the integer fields of the
//! bodies clients send (`expected_revision`, `to_revision`, `expires_at`, a report's
//! `revision`); answers are always written as plain integers.

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
                // 2^64 and beyond are out of every range used here; `as` is exact below it
                // for a float without a fraction.
                if v.is_finite() && v.fract() == 0.0 && v.abs() < 18_446_744_073_709_551_616.0 {
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

fn narrow<T: TryFrom<i128>, E: de::Error>(v: i128, what: &'static str) -> Result<T, E> {
    T::try_from(v)
        .map_err(|_| E::invalid_value(Unexpected::Other("an integer out of range"), &what))
}

/// A `u64` (revisions).
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    narrow(Integral::deserialize(d)?.0, "an integer from 0 to 2^64-1")
}

/// An optional `u64`; `null` is none.
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<Integral>::deserialize(d)?
        .map(|i| narrow(i.0, "an integer from 0 to 2^64-1"))
        .transpose()
}

/// An `i64` (unix milliseconds).
pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    narrow(Integral::deserialize(d)?.0, "a 64-bit integer")
}

/// An optional `i64`; `null` is none.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<Integral>::deserialize(d)?
        .map(|i| narrow(i.0, "a 64-bit integer"))
        .transpose()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(deserialize_with = "super::u64")]
        revision: u64,
        #[serde(default, deserialize_with = "super::opt_u64")]
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
        let b = read(r#"{"revision": 18446744073709551615, "expected": null}"#).unwrap();
        assert_eq!((b.revision, b.expected, b.at), (u64::MAX, None, None));
        for (bad, why) in [
            (
                r#"{"revision": 1.5}"#,
                "invalid type: floating point `1.5`, expected an integer",
            ),
            (
                r#"{"revision": -1}"#,
                "expected an integer from 0 to 2^64-1",
            ),
            (r#"{"revision": 1e300}"#, "expected an integer"),
            (
                r#"{"revision": "1"}"#,
                "invalid type: string \"1\", expected an integer",
            ),
            (
                r#"{"revision": 1, "at": 1e19}"#,
                "expected a 64-bit integer",
            ),
            (
                r#"{"revision": 1, "at": 9223372036854775808}"#,
                "expected a 64-bit integer",
            ),
        ] {
            let e = read(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
