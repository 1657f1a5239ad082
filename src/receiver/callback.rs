use serde_json::{Map, Value};

/// What the external process reports to the gate (PROTOCOL.md §1, §8).
///
/// ```
/// use hookgate::receiver::Callback;
/// let done = Callback::failure().with_message("3 tests failed");
/// assert_eq!(done.to_json().to_string(), r#"{"mdMessage":"3 tests failed","success":false}"#);
/// let note = Callback::progress("half way");
/// assert_eq!(note.to_json().to_string(), r#"{"inProgress":true,"mdMessage":"half way"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    success: Option<bool>,
    md_message: Option<String>,
}

impl Callback {
    /// The gate passes.
    pub fn success() -> Self {
        Self::outcome(true)
    }

    /// The gate fails.
    pub fn failure() -> Self {
        Self::outcome(false)
    }

    /// The gate passes (`true`) or fails (`false`).
    pub fn outcome(success: bool) -> Self {
        Self {
            success: Some(success),
            md_message: None,
        }
    }

    /// A progress note shown to humans; the gate stays open.
    pub fn progress(md_message: impl Into<String>) -> Self {
        Self {
            success: None,
            md_message: Some(md_message.into()),
        }
    }

    /// Adds a Markdown message for humans.
    #[must_use]
    pub fn with_message(mut self, md_message: impl Into<String>) -> Self {
        self.md_message = Some(md_message.into());
        self
    }

    /// The JSON body: `{"success": bool, "mdMessage": "..."}` or
    /// `{"inProgress": true, "mdMessage": "..."}`.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        match self.success {
            Some(success) => body.insert("success".to_owned(), Value::Bool(success)),
            None => body.insert("inProgress".to_owned(), Value::Bool(true)),
        };
        if let Some(message) = &self.md_message {
            body.insert("mdMessage".to_owned(), Value::String(message.clone()));
        }
        Value::Object(body)
    }

    /// The JSON body as text, at most `limit` bytes long where only the message makes it
    /// longer: the message is then cut to the longest start (between characters) that fits with
    /// a final `…`, so that the outcome still reaches a gate whose server refuses larger bodies,
    /// as a final `413` (hookgate's refuses more than 64 KiB; JSON escaping can make a message
    /// up to six times longer in the body than in memory).
    ///
    /// ```
    /// use hookgate::receiver::Callback;
    /// let done = Callback::failure().with_message("x".repeat(100));
    /// let body = done.to_json_within(50);
    /// assert_eq!(body.len(), 50);
    /// assert!(body.starts_with(r#"{"mdMessage":"xxx"#) && body.ends_with(r#"x…","success":false}"#));
    /// ```
    pub fn to_json_within(&self, limit: usize) -> String {
        let whole = self.to_json().to_string();
        let Some(message) = &self.md_message else {
            return whole;
        };
        if whole.len() <= limit {
            return whole;
        }
        let with_message = |text: String| Self {
            success: self.success,
            md_message: Some(text),
        };
        // The body around the message, then the longest start of the message whose escaped
        // form fits what is left: counting escapes, where cutting the excess in memory bytes
        // would cut a message of control characters to nothing.
        let frame = with_message(String::new()).to_json().to_string().len();
        let budget = limit.saturating_sub(frame + '…'.len_utf8());
        let mut used = 0;
        let keep = message
            .char_indices()
            .find_map(|(at, c)| {
                used += escaped_len(c);
                (used > budget).then_some(at)
            })
            .unwrap_or(message.len());
        with_message(format!("{}…", &message[..keep]))
            .to_json()
            .to_string()
    }
}

/// The bytes `c` takes in a JSON string as serde_json writes it: `"` and `\\` and the control
/// characters are escaped, the short forms where JSON has one and `\u00XX` otherwise.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        '\0'..='\u{1f}' => 6,
        _ => c.len_utf8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_cut_between_characters_until_the_body_fits() {
        for message in ["é".repeat(500), "\u{1}\"\\".repeat(300), "ok".repeat(400)] {
            for limit in [40, 41, 100, 777, 1000] {
                let body = Callback::progress(message.clone()).to_json_within(limit);
                assert!(body.len() <= limit, "{limit}: {} bytes", body.len());
                let parsed: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(parsed["inProgress"], true);
                let cut = parsed["mdMessage"].as_str().unwrap();
                match cut.strip_suffix('…') {
                    Some(kept) => assert!(message.starts_with(kept), "{limit}: {cut:?}"),
                    None => assert_eq!(cut, message, "{limit}: whole, as it fits"),
                }
            }
        }
    }

    /// The longest start of `message` whose body fits, looked for by serialising every start:
    /// what [`Callback::to_json_within`] must keep, written without its escape count.
    fn longest_fitting(callback: &Callback, message: &str, limit: usize) -> String {
        let mut fitting = String::new();
        for (at, _) in message.char_indices().skip(1).chain([(message.len(), ' ')]) {
            let body = callback
                .clone()
                .with_message(format!("{}…", &message[..at]))
                .to_json()
                .to_string();
            if body.len() > limit {
                break;
            }
            fitting = message[..at].to_owned();
        }
        fitting
    }

    proptest::proptest! {
        /// Escape-heavy text (control characters are six bytes escaped) keeps as much as fits.
        #[test]
        fn a_cut_message_keeps_the_longest_start_that_fits(
            message in "[\\x00-\\x1f\"\\\\aé€😀]{0,80}",
            limit in 30usize..300,
            success in proptest::option::of(proptest::bool::ANY),
        ) {
            let callback = Callback { success, md_message: Some(message.clone()) };
            let body = callback.to_json_within(limit);
            let parsed: Value = serde_json::from_str(&body).unwrap();
            let kept = parsed["mdMessage"].as_str().unwrap();
            if callback.to_json().to_string().len() <= limit {
                proptest::prop_assert_eq!(kept, message.as_str());
            } else {
                let expected = longest_fitting(&callback, &message, limit);
                proptest::prop_assert_eq!(kept, format!("{expected}…"));
                proptest::prop_assert!(body.len() <= limit || expected.is_empty());
            }
        }
    }

    #[test]
    fn a_body_that_fits_or_has_no_message_to_cut_is_left_whole() {
        let short = Callback::success().with_message("fine");
        assert_eq!(short.to_json_within(1000), short.to_json().to_string());
        assert_eq!(
            Callback::failure().to_json_within(3),
            r#"{"success":false}"#,
            "no message to cut"
        );
        assert_eq!(
            Callback::failure().with_message("long").to_json_within(3),
            r#"{"mdMessage":"…","success":false}"#,
            "as short as it gets"
        );
    }
}
