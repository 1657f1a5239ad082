//! The fields of a callback or decision body, read without building a JSON map: the field
//! names are matched where they lie in the body and every other field is skipped unread, so
//! a body costs an allocation only for a message or comment it carries.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// The fields hookgate reads from a body, each as the JSON it holds (`null` included, so
/// that a `null` where a boolean belongs is reported rather than taken as absent). A field
/// given twice keeps its last value, as a JSON object would.
#[derive(Debug, Default)]
pub(super) struct Fields {
    pub(super) success: Option<Value>,
    pub(super) md_message: Option<Value>,
    pub(super) in_progress: Option<Value>,
    pub(super) comment: Option<Value>,
}

/// Why a body gave no [`Fields`].
#[derive(Debug)]
pub(super) enum NotFields {
    /// It is JSON, but not an object.
    NotAnObject,
    /// It is not JSON (or not UTF-8); the parser's description.
    Invalid(serde_json::Error),
}

impl Fields {
    /// Reads the object `body` holds; nothing may follow it but whitespace.
    pub(super) fn read(body: &[u8]) -> Result<Self, NotFields> {
        let mut json = serde_json::Deserializer::from_slice(body);
        let fields = json
            .deserialize_map(FieldsVisitor)
            .and_then(|fields| json.end().map(|()| fields));
        fields.map_err(|e| match e.classify() {
            serde_json::error::Category::Data => NotFields::NotAnObject,
            _ => NotFields::Invalid(e),
        })
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::Success => &mut fields.success,
                Key::MdMessage => &mut fields.md_message,
                Key::InProgress => &mut fields.in_progress,
                Key::Comment => &mut fields.comment,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(fields)
    }
}

/// A field name, matched without copying it.
enum Key {
    Success,
    MdMessage,
    InProgress,
    Comment,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
        Ok(match name {
            "success" => Key::Success,
            "mdMessage" => Key::MdMessage,
            "inProgress" => Key::InProgress,
            "comment" => Key::Comment,
            _ => Key::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_fields_are_kept_and_others_skipped() {
        let fields = Fields::read(
            br#"{"extra": {"deep": [1, 2]}, "success": null, "mdMessage": "a", "mdMessage": "b",
                 "in\u0050rogress": true, "comment": 3}"#,
        )
        .expect("an object");
        assert_eq!(fields.success, Some(Value::Null));
        assert_eq!(fields.md_message, Some(Value::from("b")));
        assert_eq!(fields.in_progress, Some(Value::Bool(true)));
        assert_eq!(fields.comment, Some(Value::from(3)));
    }

    #[test]
    fn only_one_object_is_read() {
        for (body, object) in [
            (&b"[true, \"m\"]"[..], true),
            (b"\"text\"", true),
            (b"{} {}", false),
            (b"{\"success\": tru}", false),
            (b"", false),
        ] {
            match Fields::read(body) {
                Ok(_) => panic!("{body:?} was read"),
                Err(NotFields::NotAnObject) => assert!(object, "{body:?}"),
                Err(NotFields::Invalid(_)) => assert!(!object, "{body:?}"),
            }
        }
    }
}
