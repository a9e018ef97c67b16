//! Request-path normalisation, run once per request before routing (RFC 3986 §6, as
//! Envoy's `normalize_path` + `merge_slashes`): percent-encoded unreserved characters are
//! decoded, other escapes get upper-case hex, dot segments are removed (`..` never climbs
//! above `/`), and repeated slashes are merged when the environment says so. The result is
//! what is routed and what is forwarded, so an upstream that normalises sees the same path
//! the route (and its policies) matched.
//!
//! Refused (400): `%00`, an invalid escape (`%zz`, `%4`), and — by default — an encoded
//! slash or backslash (`%2F`, `%5C`) or a raw backslash, whose meaning depends on the
//! upstream. `encodedSlashes: keep` routes and forwards them encoded; `decode-and-redirect`
//! decodes them to `/` and asks the client to come back on the normalised path.

use std::borrow::Cow;

use switchyard_config::manifest::EncodedSlashes;

use super::gateway::PathSettings;

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `%00`.
    Nul,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%2F`, `%5C` or `\` with `encodedSlashes: reject`.
    EncodedSlash,
}

impl PathError {
    /// Stable code, for the 400 answer and logs.
    pub fn code(self) -> &'static str {
        match self {
            PathError::Nul => "invalid_path",
            PathError::BadEscape => "invalid_path",
            PathError::EncodedSlash => "encoded_slash",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            PathError::Nul => "the request path contains %00",
            PathError::BadEscape => {
                "the request path has an invalid percent-encoding ('%' must be followed by two hex digits)"
            }
            PathError::EncodedSlash => {
                "the request path contains an encoded slash or backslash (%2F, %5C, \\), which this gateway refuses"
            }
        }
    }
}

/// A normalised path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized<'a> {
    /// Borrowed when the path was already normal (no allocation).
    pub path: Cow<'a, str>,
    /// `decode-and-redirect` decoded an encoded slash: answer with a redirect to `path`
    /// instead of routing.
    pub redirect: bool,
}

/// Normalises `path` (the path of a request target, without its query).
pub fn normalize(path: &str, settings: PathSettings) -> Result<Normalized<'_>, PathError> {
    if is_normal(path.as_bytes(), settings) {
        return Ok(Normalized {
            path: Cow::Borrowed(path),
            redirect: false,
        });
    }
    let (decoded, redirect) = decode(path.as_bytes(), settings.encoded_slashes)?;
    let out = remove_dot_segments(&decoded, settings.merge_slashes);
    // Every byte written is ASCII (unreserved, reserved, '%' and hex digits).
    let path = String::from_utf8(out).map_err(|_| PathError::BadEscape)?;
    Ok(Normalized {
        path: Cow::Owned(path),
        redirect,
    })
}

/// The fast path: no escape to decode or re-case, no dot segment, and no `//` when
/// slashes are merged.
fn is_normal(p: &[u8], settings: PathSettings) -> bool {
    if p.first() != Some(&b'/') {
        // Not origin-form (`*`, authority-form): left as it is; no route starts without '/'.
        return true;
    }
    let mut segment_start = 1;
    for (i, &b) in p.iter().enumerate() {
        match b {
            b'\\' => return false,
            b'%' if !is_normal_escape(p.get(i + 1..i + 3), settings.encoded_slashes) => {
                return false;
            }
            b'/' if i > 0 => {
                let seg = &p[segment_start..i];
                if is_dot_segment(seg) || (settings.merge_slashes && seg.is_empty()) {
                    return false;
                }
                segment_start = i + 1;
            }
            _ => {}
        }
    }
    !is_dot_segment(&p[segment_start.min(p.len())..])
}

/// An escape the slow path would write back as it is: upper-case hex of a byte that is not
/// unreserved, not NUL, and not a slash unless slashes are kept.
fn is_normal_escape(digits: Option<&[u8]>, slashes: EncodedSlashes) -> bool {
    let Some(&[hi, lo]) = digits else {
        return false;
    };
    let upper = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
    let (Some(h), Some(l)) = (hex(hi), hex(lo)) else {
        return false;
    };
    let v = h << 4 | l;
    upper(hi)
        && upper(lo)
        && v != 0
        && !is_unreserved(v)
        && (!matches!(v, b'/' | b'\\') || slashes == EncodedSlashes::Keep)
}

fn is_dot_segment(seg: &[u8]) -> bool {
    seg == b"." || seg == b".."
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// One segment byte of the decoded path: a literal, or an escape kept encoded (so a kept
/// `%2F` is never taken for a separator by the segment pass).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Byte(u8),
    Separator,
    Escaped(u8),
}

/// Decodes escapes of unreserved characters, upper-cases the others, and applies the
/// encoded-slash setting. Returns the units and whether a redirect is due.
fn decode(p: &[u8], slashes: EncodedSlashes) -> Result<(Vec<Unit>, bool), PathError> {
    let mut out = Vec::with_capacity(p.len());
    let mut redirect = false;
    let mut slash = |out: &mut Vec<Unit>, encoded: u8| match slashes {
        EncodedSlashes::Reject => Err(PathError::EncodedSlash),
        EncodedSlashes::Keep => {
            out.push(Unit::Escaped(encoded));
            Ok(())
        }
        EncodedSlashes::DecodeAndRedirect => {
            redirect = true;
            out.push(Unit::Separator);
            Ok(())
        }
    };
    let mut i = 0;
    while i < p.len() {
        let b = p[i];
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    p.get(i + 1).copied().and_then(hex),
                    p.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let v = hi << 4 | lo;
                match v {
                    0 => return Err(PathError::Nul),
                    b'/' | b'\\' => slash(&mut out, v)?,
                    v if is_unreserved(v) => out.push(Unit::Byte(v)),
                    v => out.push(Unit::Escaped(v)),
                }
                i += 3;
            }
            b'\\' => {
                slash(&mut out, b'\\')?;
                i += 1;
            }
            b'/' => {
                out.push(Unit::Separator);
                i += 1;
            }
            b => {
                out.push(Unit::Byte(b));
                i += 1;
            }
        }
    }
    Ok((out, redirect))
}

/// RFC 3986 §5.2.4 over segments, merging empty segments when asked. The output always
/// starts with `/`; a trailing `.` or `..` segment leaves a trailing slash.
fn remove_dot_segments(units: &[Unit], merge_slashes: bool) -> Vec<u8> {
    // Segment boundaries in the output, to pop on `..`.
    let mut out: Vec<u8> = Vec::with_capacity(units.len() * 3 + 1);
    let mut starts: Vec<usize> = Vec::new();
    let segments = units.split(|u| *u == Unit::Separator).skip(1);
    let mut last_was_dot = false;
    let mut any = false;
    for seg in segments {
        any = true;
        last_was_dot = false;
        match seg {
            [Unit::Byte(b'.')] => last_was_dot = true,
            [Unit::Byte(b'.'), Unit::Byte(b'.')] => {
                if let Some(s) = starts.pop() {
                    out.truncate(s);
                }
                last_was_dot = true;
            }
            [] if merge_slashes => {}
            seg => {
                starts.push(out.len());
                out.push(b'/');
                for u in seg {
                    match *u {
                        Unit::Byte(b) => out.push(b),
                        Unit::Escaped(v) => out.extend_from_slice(&[
                            b'%',
                            HEX_UPPER[usize::from(v >> 4)],
                            HEX_UPPER[usize::from(v & 0xf)],
                        ]),
                        Unit::Separator => {}
                    }
                }
            }
        }
    }
    // `/a/..` → `/`, `/a/.` → `/a/`; a trailing empty segment (`/a/`) is kept as `/a/`.
    let trailing_empty = units.last() == Some(&Unit::Separator);
    if out.is_empty() || last_was_dot || (merge_slashes && trailing_empty && any) {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings(merge_slashes: bool, encoded_slashes: EncodedSlashes) -> PathSettings {
        PathSettings {
            merge_slashes,
            encoded_slashes,
        }
    }

    fn default() -> PathSettings {
        settings(true, EncodedSlashes::Reject)
    }

    fn norm(p: &str) -> Result<String, PathError> {
        normalize(p, default()).map(|n| n.path.into_owned())
    }

    #[test]
    fn the_issue_examples_route_as_admin() {
        for p in [
            "/payments/../admin/x",
            "/payments/%2e%2e/admin/x",
            "/payments/%2E%2E/admin/x",
            "//admin/x",
            "/./admin/x",
            "/%61dmin/x",
            "/payments/./../admin//x",
        ] {
            assert_eq!(norm(p).unwrap(), "/admin/x", "{p}");
        }
    }

    #[test]
    fn dot_segments_never_climb_above_the_root() {
        assert_eq!(norm("/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(norm("/..").unwrap(), "/");
        assert_eq!(norm("/a/..").unwrap(), "/");
        assert_eq!(norm("/a/.").unwrap(), "/a/");
        assert_eq!(norm("/a/b/../").unwrap(), "/a/");
        assert_eq!(norm("/a/").unwrap(), "/a/");
        assert_eq!(norm("/").unwrap(), "/");
        assert_eq!(norm("/a..b/.c").unwrap(), "/a..b/.c");
    }

    #[test]
    fn escapes_of_reserved_characters_stay_encoded_with_upper_case_hex() {
        assert_eq!(norm("/a%3fb%20c").unwrap(), "/a%3Fb%20c");
        assert_eq!(norm("/%7e%41").unwrap(), "/~A");
        assert_eq!(norm("/100%25").unwrap(), "/100%25");
        assert_eq!(norm("/%e2%82%ac").unwrap(), "/%E2%82%AC");
    }

    #[test]
    fn nul_bad_escapes_and_encoded_slashes_are_refused_by_default() {
        assert_eq!(norm("/a%00b"), Err(PathError::Nul));
        assert_eq!(norm("/a%zzb"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%4"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%2Fb"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/a%5cb"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/a\\b"), Err(PathError::EncodedSlash));
    }

    #[test]
    fn encoded_slashes_can_be_kept_or_decoded_with_a_redirect() {
        let keep = normalize("/a%2fb/../c", settings(true, EncodedSlashes::Keep)).unwrap();
        assert_eq!(keep.path, "/c");
        let keep = normalize("/a%2fb", settings(true, EncodedSlashes::Keep)).unwrap();
        assert_eq!((keep.path.as_ref(), keep.redirect), ("/a%2Fb", false));
        let redirect =
            normalize("/a%2Fb", settings(true, EncodedSlashes::DecodeAndRedirect)).unwrap();
        assert_eq!((redirect.path.as_ref(), redirect.redirect), ("/a/b", true));
    }

    #[test]
    fn slashes_are_kept_when_merging_is_off() {
        let s = settings(false, EncodedSlashes::Reject);
        assert_eq!(normalize("//a//b", s).unwrap().path, "//a//b");
        assert_eq!(normalize("/a//../b", s).unwrap().path, "/a/b");
    }

    #[test]
    fn a_normal_path_is_borrowed() {
        for p in [
            "/",
            "/payments/42",
            "/a.b/c..d/.e",
            "/a/",
            "/a%20b%E2%82%AC",
        ] {
            assert!(
                matches!(normalize(p, default()).unwrap().path, Cow::Borrowed(_)),
                "{p}"
            );
        }
        assert!(matches!(
            normalize("*", default()).unwrap().path,
            Cow::Borrowed("*")
        ));
    }

    fn any_settings() -> impl Strategy<Value = PathSettings> {
        (
            any::<bool>(),
            prop_oneof![
                Just(EncodedSlashes::Reject),
                Just(EncodedSlashes::Keep),
                Just(EncodedSlashes::DecodeAndRedirect)
            ],
        )
            .prop_map(|(m, e)| settings(m, e))
    }

    /// Paths made of the pieces that matter: separators, dots, escapes (valid, invalid,
    /// of slashes, of dots, of unreserved and reserved bytes) and plain characters.
    fn any_path() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("\\".to_string()),
            Just("%2e".to_string()),
            Just("%2E".to_string()),
            Just("%2f".to_string()),
            Just("%5C".to_string()),
            Just("%25".to_string()),
            Just("%".to_string()),
            "[a-zA-Z0-9~_-]{1,3}",
            (0u8..=255).prop_map(|b| format!("%{b:02x}")),
            (0u8..=255).prop_map(|b| format!("%{b:02X}")),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| format!("/{}", v.concat()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn normalising_is_idempotent_and_stays_under_the_root(p in any_path(), s in any_settings()) {
            if let Ok(once) = normalize(&p, s) {
                let again = normalize(&once.path, s).unwrap();
                prop_assert_eq!(&again.path, &once.path, "second pass changed {}", p);
                prop_assert!(!again.redirect);
                prop_assert!(matches!(again.path, Cow::Borrowed(_)), "normal path not borrowed: {}", once.path);
                prop_assert!(once.path.starts_with('/'));
                // No dot segment survives, so nothing can climb above `/` upstream either.
                for seg in once.path.split('/') {
                    prop_assert!(seg != "." && seg != "..", "{} → {}", p, once.path);
                    let lower = seg.to_ascii_lowercase();
                    prop_assert!(!lower.contains("%2e"), "{} → {}", p, once.path);
                }
                if s.merge_slashes {
                    prop_assert!(!once.path.contains("//"), "{} → {}", p, once.path);
                }
                prop_assert!(!once.path.contains('\\'));
                if s.encoded_slashes != EncodedSlashes::Keep {
                    let lower = once.path.to_ascii_lowercase();
                    prop_assert!(!lower.contains("%2f") && !lower.contains("%5c"));
                }
            }
        }

        #[test]
        fn dot_dot_climbs_at_most_to_the_root(depth in 0usize..6, ups in 0usize..10, s in any_settings()) {
            let p = format!("{}{}/x", "/d".repeat(depth), "/..".repeat(ups));
            let n = normalize(&p, s).unwrap();
            let expected = format!("{}/x", "/d".repeat(depth.saturating_sub(ups)));
            prop_assert_eq!(n.path.as_ref(), expected.as_str());
        }
    }
}
