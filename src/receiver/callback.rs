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
}
