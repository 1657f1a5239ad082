//! Following a JSON pointer over a raw body. A parsed [`Value`] keeps only the last of a
//! repeated key, which is the one a value rendered without JSON escaping adds, so the body is
//! read with a visitor that follows every key on the path each time it is given.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Every value at `pointer` (RFC 6901, as [`Value::pointer`] reads it) in `bytes`, in the
/// body's order: one per way down the path, so a key on it given twice yields two. `Err` holds
/// why the body is not JSON.
pub(super) fn values_at(bytes: &[u8], pointer: &str) -> Result<Vec<Value>, String> {
    // Skipping a string does not check that it is UTF-8 (RFC 8259 §8.1).
    let text = std::str::from_utf8(bytes).map_err(|error| format!("not UTF-8: {error}"))?;
    let mut json = serde_json::Deserializer::from_str(text);
    let found = match tokens(pointer) {
        Some(tokens) => AtPath(&tokens).deserialize(&mut json),
        None => IgnoredAny::deserialize(&mut json).map(|_| Vec::new()),
    };
    found
        .and_then(|found| json.end().map(|()| found))
        .map_err(|error| super::not_json(&error))
}

/// The reference tokens of `pointer`, unescaped; `None` when it is not a JSON pointer (it is
/// neither empty nor starts with `/`), which points at nothing.
fn tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|token| token.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// An array index as RFC 6901 writes one: decimal digits without a sign or leading zeros.
fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

/// Reads the values at the rest of a path, the tokens still to follow; every value off the path
/// is skipped unread. serde_json refuses nesting deeper than 128 levels where it parses and
/// skips deeper nesting without recursion, so hostile input cannot exhaust the stack.
struct AtPath<'p>(&'p [String]);

impl<'de> DeserializeSeed<'de> for AtPath<'_> {
    type Value = Vec<Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<Value>, D::Error> {
        if self.0.is_empty() {
            Value::deserialize(deserializer).map(|value| vec![value])
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for AtPath<'_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Value>, A::Error> {
        let Some((token, rest)) = self.0.split_first() else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        while let Some(on_path) = map.next_key_seed(IsKey(token))? {
            if on_path {
                found.extend(map.next_value_seed(AtPath(rest))?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let Some((token, rest)) = self.0.split_first() else {
            return Ok(Vec::new());
        };
        let wanted = index(token);
        let mut found = Vec::new();
        for at in 0.. {
            if wanted == Some(at) {
                match seq.next_element_seed(AtPath(rest))? {
                    Some(values) => found.extend(values),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
        }
        Ok(found)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<Value>, E> {
        Ok(Vec::new())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Vec<Value>, E> {
        Ok(Vec::new())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Vec<Value>, E> {
        Ok(Vec::new())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Vec<Value>, E> {
        Ok(Vec::new())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Vec<Value>, E> {
        Ok(Vec::new())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Vec<Value>, E> {
        Ok(Vec::new())
    }
}

/// Whether an object key is the path's next token, read without copying it.
struct IsKey<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for IsKey<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsKey<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The reader agrees with [`Value::pointer`] wherever the body repeats no key.
    #[test]
    fn without_repeated_keys_it_finds_what_value_pointer_finds() {
        let body = json!({
            "a": {"b": [10, {"c~/d": "x"}, null], "": {"": 1}},
            "e": [[1, 2], [3, {"f": true}]],
            "g": 1e300,
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        for pointer in [
            "",
            "/a",
            "/a/b",
            "/a/b/0",
            "/a/b/1/c~1~0d",
            "/a/b/2",
            "/a/b/3",
            "/a/b/01",
            "/a/b/+1",
            "/a/b/-",
            "/a/",
            "/a//",
            "/e/1/1/f",
            "/e/1/1/f/x",
            "/g/0",
            "a",
            "/nothing",
            "/a/b/x",
        ] {
            let expected: Vec<Value> = body.pointer(pointer).cloned().into_iter().collect();
            assert_eq!(
                values_at(&bytes, pointer).unwrap(),
                expected,
                "at `{pointer}`"
            );
        }
    }

    #[test]
    fn a_repeated_key_anywhere_on_the_path_is_followed_each_time() {
        let body = br#"{"p": {"cb": "one", "x": {"cb": "no"}, "cb": "two"},
                        "p": {"cb": "three"}, "q": {"cb": "no"}}"#;
        assert_eq!(
            values_at(body, "/p/cb").unwrap(),
            vec![json!("one"), json!("two"), json!("three")]
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_refused_even_off_the_path_or_with_a_bad_pointer() {
        for pointer in ["/cb", "cb"] {
            let error = values_at(br#"{"cb": "x", "y": [1,]}"#, pointer).unwrap_err();
            assert!(error.contains("line 1"), "{error}");
            let error = values_at(b"{\"cb\": \"x\", \"y\": \"\xff\"}", pointer).unwrap_err();
            assert!(error.contains("not UTF-8"), "{error}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        let pointer = "/0".repeat(1000);
        assert!(values_at(deep.as_bytes(), &pointer).is_err());
        assert!(values_at(deep.as_bytes(), "/x").is_err());
    }
}
