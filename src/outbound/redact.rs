//! Keeping secret values out of the texts a call leaves behind: reasons, events, logs.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::Secret;
use crate::template::push_percent_encoded;

const REDACTED: &str = "[redacted]";

/// Replaces the secrets of one attempt (and a URL built from them) in texts by `[redacted]`.
///
/// A reason ends up in the deployment's stored history, so anything an external server echoes
/// back, or a transport error quotes, passes through here first.
pub(crate) struct Redactor<'a> {
    /// Each secret as written, without the surrounding whitespace a secret read from a file
    /// often carries, and as the request carried it (JSON-escaped in a body, percent-encoded in
    /// a URL), in the spellings a server may echo back (`\/` for `/`); longest first, so a
    /// secret that contains another is hidden whole. Matched in any ASCII case, which also
    /// covers lower-case hex in the percent-encoded spelling.
    values: Vec<Cow<'a, str>>,
    /// Other texts hidden whole and in any ASCII case, longest first: the parts of a URL
    /// written by a secret, whose scheme and host a server may echo in another case.
    hidden: Vec<String>,
}

impl<'a> Redactor<'a> {
    /// Hides `secrets`, and each of `hidden` as a whole: when the URI template starts with a
    /// secret, the URL the request went to, and its parts, are that secret after
    /// normalisation (lower-cased host, added `/`...), so the secret's own text would not
    /// match them.
    pub(super) fn new(secrets: &'a BTreeMap<String, Secret>, hidden: Vec<String>) -> Self {
        Self::of_values(secrets.values().map(Secret::expose), hidden)
    }

    /// Hides each of `values` in the spellings [`Redactor::new`] hides a secret in, and each
    /// of `hidden` as a whole.
    pub(crate) fn of_values(
        values: impl IntoIterator<Item = &'a str>,
        mut hidden: Vec<String>,
    ) -> Self {
        let mut spelled: Vec<Cow<'a, str>> = Vec::new();
        for value in values {
            if value.is_empty() {
                continue;
            }
            spelled.push(Cow::Borrowed(value));
            let trimmed = value.trim();
            if !trimmed.is_empty() && trimmed != value {
                spelled.push(Cow::Borrowed(trimmed));
            }
            let json = json_escaped(value);
            let spellings = [json.replace('/', "\\/"), json, percent_encoded(value)];
            spelled.extend(
                spellings
                    .into_iter()
                    .filter(|spelling| spelling != value)
                    .map(Cow::Owned),
            );
        }
        spelled.sort_unstable_by_key(|v| std::cmp::Reverse(v.len()));
        spelled.dedup();
        hidden.retain(|h| !h.is_empty());
        hidden.sort_unstable_by_key(|h| std::cmp::Reverse(h.len()));
        hidden.dedup();
        Self {
            values: spelled,
            hidden,
        }
    }

    /// `text` with every secret value and every hidden text replaced, in any ASCII case: an
    /// echo that changed a token's case (an upper-cased error page, a case-insensitive hex
    /// digest) still gives it away.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for hidden in &self.hidden {
            if let Some(replaced) = replace_ignoring_ascii_case(&out, hidden) {
                out = replaced;
            }
        }
        for value in &self.values {
            if let Some(replaced) = replace_ignoring_ascii_case(&out, value) {
                out = replaced;
            }
        }
        out
    }

    /// Cuts a tail of `text` that is the start of a secret: where a body was truncated, the
    /// rest of the secret was not read, so [`redact`](Self::redact) could not match it.
    pub(super) fn cut_partial_tail(&self, text: &mut String) {
        for value in &self.values {
            let partial = (1..value.len())
                .rev()
                .filter(|&n| value.is_char_boundary(n))
                .find(|&n| {
                    text.len()
                        .checked_sub(n)
                        .and_then(|tail| text.get(tail..))
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(&value[..n]))
                });
            if let Some(n) = partial {
                text.truncate(text.len() - n);
            }
        }
    }
}

/// `text` with each occurrence of `needle`, in any ASCII case, replaced by [`REDACTED`]; `None`
/// when there is none.
fn replace_ignoring_ascii_case(text: &str, needle: &str) -> Option<String> {
    // ASCII lower-casing keeps every byte where it was, so offsets in the lowered text are
    // offsets in `text`, on the same character boundaries.
    let (lowered, needle) = (text.to_ascii_lowercase(), needle.to_ascii_lowercase());
    let mut found = lowered.match_indices(&needle).peekable();
    found.peek()?;
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    for (start, matched) in found {
        out.push_str(&text[rest..start]);
        out.push_str(REDACTED);
        rest = start + matched.len();
    }
    out.push_str(&text[rest..]);
    Some(out)
}

/// The value as a JSON string's content, the way a JSON body carries it.
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::Value::from(value).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// The value percent-encoded as the template renders it inside a URL.
fn percent_encoded(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_percent_encoded(&mut out, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> BTreeMap<String, Secret> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), Secret::new(*v)))
            .collect()
    }

    #[test]
    fn every_occurrence_of_every_secret_is_hidden_longest_first() {
        let s = secrets(&["abc", "abcdef", ""]);
        let r = Redactor::new(&s, Vec::new());
        assert_eq!(r.redact("x abcdef y abc z"), "x [redacted] y [redacted] z");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn encoded_forms_of_a_secret_are_hidden_too() {
        let s = secrets(&["a\"b c/d"]);
        let r = Redactor::new(&s, Vec::new());
        assert_eq!(
            r.redact(r#"raw a"b c/d json a\"b c/d url a%22b%20c%2Fd"#),
            "raw [redacted] json [redacted] url [redacted]"
        );
    }

    #[test]
    fn other_spellings_of_a_secret_are_hidden_too() {
        let s = secrets(&["Ab/c d\n"]);
        let r = Redactor::new(&s, Vec::new());
        assert_eq!(
            r.redact(
                "trimmed Ab/c d, php Ab\\/c d\\n, hex Ab%2fc%20d%0a, upper AB/C D, other Ab/cd"
            ),
            "trimmed [redacted], php [redacted], hex [redacted], upper [redacted], other Ab/cd"
        );
    }

    #[test]
    fn a_hidden_url_or_host_is_replaced_in_any_case() {
        let s = secrets(&[]);
        let r = Redactor::new(
            &s,
            vec![
                "https://hooks.example.com/T1/b2".to_owned(),
                "hooks.example.com".to_owned(),
            ],
        );
        assert_eq!(
            r.redact("HTTPS://Hooks.Example.COM/t1/B2 moved; Host: HOOKS.EXAMPLE.COM, é hooks.example.com"),
            "[redacted] moved; Host: [redacted], é [redacted]"
        );
        assert_eq!(r.redact("hooks.example.org"), "hooks.example.org");
    }

    #[test]
    fn a_hidden_url_is_replaced_whole() {
        let s = secrets(&[]);
        let r = Redactor::new(&s, vec!["https://hooks.example.com/T1/B2".to_owned()]);
        assert_eq!(
            r.redact("POST https://hooks.example.com/T1/B2 timed out"),
            "POST [redacted] timed out"
        );
    }

    #[test]
    fn a_truncated_tail_holding_the_start_of_a_secret_is_cut() {
        let s = secrets(&["s3cr3t-value"]);
        let r = Redactor::new(&s, Vec::new());
        for echoed in ["echo: s3cr3", "echo: S3CR3"] {
            let mut text = echoed.to_owned();
            r.cut_partial_tail(&mut text);
            assert_eq!(text, "echo: ");
        }
        let mut text = "echo: done".to_owned();
        r.cut_partial_tail(&mut text);
        assert_eq!(text, "echo: done");
    }
}
