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
    /// longer: the message is then cut (between characters) and ends with `…`, so that the
    /// outcome still reaches a gate whose server refuses larger bodies, as a final `413`
    /// (hookgate's refuses more than 64 KiB; JSON escaping can make a message up to six times
    /// longer in the body than in memory).
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
        let mut keep = message.len();
        let mut excess = whole.len() - limit;
        loop {
            // Each character cut makes the body at least one byte shorter.
            keep = keep.saturating_sub(excess + '…'.len_utf8());
            while !message.is_char_boundary(keep) {
                keep -= 1;
            }
            let cut = Self {
                success: self.success,
                md_message: Some(format!("{}…", &message[..keep])),
            };
            let body = cut.to_json().to_string();
            if body.len() <= limit || keep == 0 {
                return body;
            }
            excess = body.len() - limit;
        }
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
