//! JSON text that is also valid YAML, whatever the strings hold. The canonical form of a
//! manifest is JSON read back with the YAML parser (by the Manager and by Workers), and
//! YAML allows fewer raw characters than JSON: DEL, the C1 controls but NEL (U+0080 to
//! U+009F), U+FEFF, U+FFFE and U+FFFF must be escaped. `serde_json` escapes only `"`, `\`
//! and the C0 controls, so a secret holding U+0089 would make a manifest the Manager stores
//! but can never read again. Text without those characters is exactly `serde_json`'s, so
//! digests of existing manifests do not change.

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, Serializer};

/// `serde_json::to_string`, with the characters YAML does not allow raw written `\uXXXX`.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    value.serialize(&mut Serializer::with_formatter(&mut out, YamlSafe))?;
    // Only UTF-8 is ever written (serde_json's fragments and ASCII escapes).
    String::from_utf8(out).map_err(|e| serde_json::Error::io(io::Error::other(e)))
}

fn needs_escape(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{84}' | '\u{86}'..='\u{9f}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}')
}

/// [`CompactFormatter`], escaping the characters of [`needs_escape`] in strings.
struct YamlSafe;

impl Formatter for YamlSafe {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some((i, c)) = rest.char_indices().find(|(_, c)| needs_escape(*c)) {
            CompactFormatter.write_string_fragment(writer, &rest[..i])?;
            write!(writer, "\\u{:04x}", u32::from(c))?;
            rest = &rest[i + c.len_utf8()..];
        }
        CompactFormatter.write_string_fragment(writer, rest)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::to_string;

    #[test]
    fn only_what_yaml_refuses_is_escaped_and_the_text_reads_back_as_yaml() {
        let plain = serde_json::json!({"a": "text é ✓ \u{85} \u{a0}", "n": [1, 2.5, null]});
        assert_eq!(
            to_string(&plain).unwrap(),
            serde_json::to_string(&plain).unwrap()
        );

        let value = "k\u{7f}\u{89}\u{9f}\u{feff}\u{ffff}\"\\\n".to_string();
        let text = to_string(&serde_json::json!({ "v": value })).unwrap();
        assert_eq!(text, r#"{"v":"k\u007f\u0089\u009f\ufeff\uffff\"\\\n"}"#);
        let back: std::collections::BTreeMap<String, String> =
            serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back["v"], value);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["v"], value);
        // What is left raw reads back as it was.
        let raw = to_string(&plain).unwrap();
        let back: serde_json::Value = serde_saphyr::from_str(&raw).unwrap();
        assert_eq!(back, plain);
    }
}
