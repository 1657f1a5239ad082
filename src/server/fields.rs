//! The fields of a callback or decision body, read without building a JSON map: the field
//! names are matched where they lie in the body and every other field is skipped unread, so
//! a body costs an allocation only for a message or comment it carries. The whole body is
//! checked to be UTF-8 first, since skipping a string does not check it.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The fields hookgate reads from a body, each as the JSON it holds (`null` included, so
/// that a `null` where a boolean belongs is reported rather than taken as absent).
#[derive(Debug, Default)]
pub(super) struct Fields {
    pub(super) success: Option<Field>,
    pub(super) md_message: Option<Field>,
    pub(super) in_progress: Option<Field>,
    pub(super) comment: Option<Field>,
    /// A field hookgate reads that the body gives more than once.
    repeated: Option<&'static str>,
}

/// A field's JSON, as far as hookgate tells values apart. Any other value is read as raw
/// JSON, not parsed: a number past `f64` (`1e400`) is valid JSON, refused where a field must be
/// a boolean or a string, and ignored where the field is (an `inProgress` beside `success`).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Field {
    Null,
    Bool(bool),
    String(String),
    /// A string that is not text: it escapes one half of a UTF-16 surrogate pair without the
    /// other (`"\ud800"`), valid JSON that no Rust string holds.
    NotText,
    /// A number, an array or an object.
    Other,
}

impl Field {
    fn of(raw: &RawValue) -> Self {
        let json = raw.get();
        match json.as_bytes().first() {
            Some(b'n') => Self::Null,
            Some(b't') => Self::Bool(true),
            Some(b'f') => Self::Bool(false),
            // The raw value is a whole JSON string, so only its escapes can fail to decode.
            Some(b'"') => serde_json::from_str(json).map_or(Self::NotText, Self::String),
            _ => Self::Other,
        }
    }
}

/// Why a body gave no [`Fields`].
#[derive(Debug)]
pub(super) enum NotFields {
    /// It is JSON, but not an object.
    NotAnObject,
    /// It is not UTF-8 (RFC 8259 §8.1), even if only in a field hookgate does not read.
    NotUtf8(std::str::Utf8Error),
    /// It is not JSON; the parser's description.
    Invalid(serde_json::Error),
    /// It gives a field hookgate reads more than once. Parsers keep the first value or the
    /// last, so a proxy or audit log in front could read `"success": false` where hookgate
    /// would read `true`.
    Repeated(&'static str),
}

/// Which body is read: only its own fields are, the others being skipped as any unknown
/// field is, so that a callback's body is not refused over a `comment` it need not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyKind {
    /// `success`, `mdMessage` and `inProgress`.
    Callback,
    /// `comment`.
    Decision,
}

impl BodyKind {
    /// A body of this kind, for error messages.
    pub(super) fn example(self) -> &'static str {
        match self {
            BodyKind::Callback => r#"{"success": true, "mdMessage": "..."}"#,
            BodyKind::Decision => r#"{"comment": "..."}"#,
        }
    }
}

impl Fields {
    /// Reads the object `body` holds; nothing may follow it but whitespace.
    pub(super) fn read(body: &[u8], kind: BodyKind) -> Result<Self, NotFields> {
        let text = std::str::from_utf8(body).map_err(NotFields::NotUtf8)?;
        let mut json = serde_json::Deserializer::from_str(text);
        let fields = json
            .deserialize_map(FieldsVisitor(kind))
            .and_then(|fields| json.end().map(|()| fields));
        let fields = fields.map_err(|e| match e.classify() {
            serde_json::error::Category::Data => NotFields::NotAnObject,
            _ => NotFields::Invalid(e),
        })?;
        match fields.repeated {
            Some(name) => Err(NotFields::Repeated(name)),
            None => Ok(fields),
        }
    }
}

struct FieldsVisitor(BodyKind);

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let (slot, name) = match (key, self.0) {
                (Key::Success, BodyKind::Callback) => (&mut fields.success, "success"),
                (Key::MdMessage, BodyKind::Callback) => (&mut fields.md_message, "mdMessage"),
                (Key::InProgress, BodyKind::Callback) => (&mut fields.in_progress, "inProgress"),
                (Key::Comment, BodyKind::Decision) => (&mut fields.comment, "comment"),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            // The rest is still read, so that a body that is not JSON is reported as such.
            let field = Field::of(map.next_value::<&RawValue>()?);
            if slot.replace(field).is_some() {
                fields.repeated.get_or_insert(name);
            }
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
        let body = br#"{"extra": {"deep": [1, 2]}, "success": null, "mdMessage": "b", "extra": 1,
                 "in\u0050rogress": true, "comment": 3}"#;
        let fields = Fields::read(body, BodyKind::Callback).expect("an object");
        assert_eq!(fields.success, Some(Field::Null));
        assert_eq!(fields.md_message, Some(Field::String("b".to_owned())));
        assert_eq!(fields.in_progress, Some(Field::Bool(true)));
        assert_eq!(fields.comment, None, "not a callback's field");
        let fields = Fields::read(body, BodyKind::Decision).expect("an object");
        assert_eq!(fields.comment, Some(Field::Other));
        assert_eq!(fields.success, None, "not a decision's field");
    }

    /// A field hookgate reads, given twice (however spelled), is refused, even with the same
    /// value twice; an unknown one or the other body's is not.
    #[test]
    fn a_field_read_given_twice_is_refused() {
        for (body, kind, name) in [
            (
                &br#"{"success": false, "success": true}"#[..],
                BodyKind::Callback,
                "success",
            ),
            (
                br#"{"success": true, "mdMessage": "a", "md\u004dessage": "a"}"#,
                BodyKind::Callback,
                "mdMessage",
            ),
            (
                br#"{"comment": "a", "comment": null}"#,
                BodyKind::Decision,
                "comment",
            ),
        ] {
            assert!(
                matches!(Fields::read(body, kind), Err(NotFields::Repeated(n)) if n == name),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let other = br#"{"success": true, "comment": 1, "comment": 2, "x": 1, "x": 2}"#;
        assert!(Fields::read(other, BodyKind::Callback).is_ok());
    }

    /// A field of the other body is skipped like any unknown one, so a value serde_json would
    /// refuse to read there (a number past `f64`) does not get the body refused.
    #[test]
    fn the_other_bodys_fields_are_skipped_unread() {
        let fields = Fields::read(
            br#"{"success": true, "comment": 1e400}"#,
            BodyKind::Callback,
        )
        .expect("an object");
        assert_eq!(fields.success, Some(Field::Bool(true)));
        assert!(Fields::read(br#"{"success": 1e400}"#, BodyKind::Decision).is_ok());
    }

    /// A field read is read as raw JSON, so a value valid JSON allows but `f64` cannot hold is
    /// a value of the wrong kind, not a body that is not JSON; a string's escapes are undone.
    #[test]
    fn a_field_read_holding_any_json_is_told_apart_without_parsing_numbers() {
        let body = br#"{"success": 1e400, "inProgress": [1e400, {"a": -0.0e-999}],
                        "mdMessage": " \"\u00e9\ud83d\ude00\n"}"#;
        let fields = Fields::read(body, BodyKind::Callback).expect("an object");
        assert_eq!(fields.success, Some(Field::Other));
        assert_eq!(fields.in_progress, Some(Field::Other));
        assert_eq!(
            fields.md_message,
            Some(Field::String(" \"\u{e9}\u{1f600}\n".to_owned()))
        );
        assert!(matches!(
            Fields::read(br#"{"success": 1e400x}"#, BodyKind::Callback),
            Err(NotFields::Invalid(_))
        ));
    }

    /// A body that is not UTF-8 is not JSON, wherever the bad bytes are.
    #[test]
    fn a_body_that_is_not_utf8_is_refused_even_in_a_skipped_field() {
        let body = b"{\"success\": true, \"note\": \"\xff\"}";
        assert!(matches!(
            Fields::read(body, BodyKind::Callback),
            Err(NotFields::NotUtf8(_))
        ));
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
            match Fields::read(body, BodyKind::Callback) {
                Ok(_) => panic!("{body:?} was read"),
                Err(NotFields::NotAnObject) => assert!(object, "{body:?}"),
                Err(NotFields::Invalid(_)) => assert!(!object, "{body:?}"),
                Err(NotFields::NotUtf8(_) | NotFields::Repeated(_)) => {
                    panic!("{body:?} is UTF-8 with no field twice")
                }
            }
        }
    }
}
