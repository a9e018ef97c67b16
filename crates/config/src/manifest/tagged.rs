//! Mappings selected by a `type` key (policies, credentials), read by hand rather than with
//! `#[serde(tag = "type")]`: serde's internally tagged enums buffer the whole mapping before
//! reading it, which loses the line, column and field path of any error inside it (and reads
//! YAML 1.1 boolean words as booleans, keys included). When `type` is the first key (the usual
//! way to write it) the rest of the mapping is read straight from the parser, so errors keep
//! their place; otherwise the other entries are buffered until `type` is known.

use serde::de::value::MapAccessDeserializer;
use serde::de::{Error, MapAccess};
use serde::{Deserialize, Deserializer};

/// The `type` of a tagged mapping, which knows how to read the rest of it.
pub(super) trait Tag: for<'de> Deserialize<'de> {
    type Out;

    fn read<'de, D: Deserializer<'de>>(self, d: D) -> Result<Self::Out, D::Error>;
}

/// Reads a `type`-tagged mapping; `buffered` adapts the entries read before `type` was known.
pub(super) fn visit<'de, A, T>(
    mut map: A,
    buffered: fn(serde_json::Value) -> serde_json::Value,
) -> Result<T::Out, A::Error>
where
    A: MapAccess<'de>,
    T: Tag,
{
    let Some(first) = map.next_key::<String>()? else {
        return Err(A::Error::missing_field("type"));
    };
    if first == "type" {
        let kind = map.next_value::<T>()?;
        return kind.read(MapAccessDeserializer::new(map));
    }
    let mut kind: Option<T> = None;
    let mut rest = serde_json::Map::new();
    let mut key = Some(first);
    while let Some(k) = key {
        if k == "type" {
            kind = Some(map.next_value::<T>()?);
        } else {
            rest.insert(k, map.next_value::<serde_json::Value>()?);
        }
        key = map.next_key::<String>()?;
    }
    match kind {
        None => Err(A::Error::missing_field("type")),
        Some(kind) => kind
            .read(buffered(serde_json::Value::Object(rest)))
            .map_err(A::Error::custom),
    }
}
