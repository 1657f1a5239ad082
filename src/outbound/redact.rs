//! Keeping secret values out of the texts a call leaves behind: reasons, events, logs.

use std::borrow::Cow;
use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind};

use crate::Secret;
use crate::template::{push_json_escaped, push_percent_encoded};

mod tail;

const REDACTED: &str = "[redacted]";

/// The shortest part of a URL (a path segment, a query) hidden on its own where the whole URL
/// must not show: credentials and callback ids are long (a Slack webhook's token has 24
/// characters, hookgate's callback ids 32 hex digits, Armory's UUIDs 36), while the words
/// around them (`services`, `hooks`, `callbacks`) are no secret, and hiding those would blank
/// whatever a message says with them.
pub(crate) const MIN_HIDDEN_LEN: usize = 16;

/// The longest secret looked for with any of its bytes percent-encoded ([`percent_spelled`]),
/// whose cost grows with the value's length times the text's where a server's text nearly
/// spells it over and over: tokens and passwords are far shorter; a longer value (a key, a
/// certificate) is looked for in the needles' spellings only. A server cannot spell a secret
/// it does not know, so only a hidden text (which it may: a context value) could make each
/// try run long, and those are looked for all in one pass ([`HiddenTexts::decoded`]).
const MAX_PERCENT_SPELLED: usize = 256;

/// Replaces the secrets of one attempt (and a URL built from them) in texts by `[redacted]`.
///
/// A reason ends up in the deployment's stored history, so anything an external server echoes
/// back, or a transport error quotes, passes through here first.
///
/// Every match of every needle is found in the text as given, and the union of their ranges
/// replaced, so that a text containing another is hidden whole rather than broken up by the
/// shorter one first (a host inside a secret URL echoed in a spelling only the secret's own
/// needle matches).
pub(crate) struct Redactor<'a> {
    /// Each secret as written and without the surrounding whitespace a secret read from a
    /// file often carries, each as the request carried it (JSON-escaped in a body,
    /// percent-encoded in a URL, form-encoded), in the spellings servers echo it back in
    /// ([`json_spellings`], [`html_spellings`]), also as the quoted copy of a JSON body that
    /// holds it. Matched in any ASCII case, which also covers lower-case hex in
    /// percent-encoded and `\u` spellings.
    needles: Vec<Cow<'a, str>>,
    /// Each secret as written (and without the whitespace around it), also matched with any
    /// of its bytes percent-encoded ([`percent_spelled`]): encoders differ in which characters
    /// they leave alone, so no list of needles covers their spellings.
    plain: Vec<Cow<'a, str>>,
    /// The texts hidden beside the secrets, in the same spellings.
    hidden: HiddenTexts,
}

/// The texts hidden beside the secrets: the parts of a URL written by a secret, whose scheme
/// and host a server may echo in another case, an `Authorization` header's credentials, and
/// the gate's callback id, which resolves the gate with any callback token.
struct HiddenTexts {
    /// Their spellings, as a secret's needles are.
    needles: Vec<String>,
    /// Matches those of the needles no longer than [`MAX_IN_AUTOMATON`] in any ASCII case,
    /// all in one pass: a URL's template may hold thousands of query values, and looking for
    /// each in turn cost a text's length for each.
    spelled: Finder,
    /// Matches, in a text with its `%XX` escapes decoded and `+` read as a space, each hidden
    /// text holding a byte outside the unreserved set, as written and percent-decoded: a
    /// server echoing it with any of its bytes percent-encoded. A URL has as many parts as its
    /// template has, and each may be a context value, which a server can spell nearly right
    /// over and over: tried at each position of a text as a secret is ([`percent_spelled`]),
    /// a crafted answer cost its length times theirs for each, seconds an attempt. They are
    /// looked for all in one pass instead (Aho–Corasick); they are copies already, so the
    /// automaton copying them keeps no secret's own text.
    decoded: Finder,
    /// What [`HiddenTexts::decoded`] matches, for [`Redactor::cut_partial_tail`] to cut a
    /// start of.
    decoded_texts: Vec<Vec<u8>>,
}

/// The longest hidden text's spelling matched by an automaton ([`HiddenTexts::spelled`]): the
/// automaton costs far more to build for a long pattern than looking for it costs, and a URL
/// of at most 64 KiB holds few parts this long.
const MAX_IN_AUTOMATON: usize = 256;

/// An automaton finding many patterns at once, in any ASCII case.
enum Finder {
    /// There is nothing to find.
    Empty,
    Built(AhoCorasick),
    /// The patterns are beyond what an automaton holds; every text is hidden whole.
    TooLarge,
}

impl Finder {
    fn new<P: AsRef<[u8]>>(patterns: &[P]) -> Self {
        if patterns.is_empty() {
            return Self::Empty;
        }
        // The contiguous NFA builds in time linear in the patterns' length; a DFA, which the
        // builder picks for few patterns, takes far longer for long ones, and each failed
        // attempt builds its own.
        AhoCorasickBuilder::new()
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .ascii_case_insensitive(true)
            .build(patterns)
            .map_or(Self::TooLarge, Self::Built)
    }

    /// Adds the ranges of `haystack` the patterns occupy, overlapping ones joined; `false`
    /// when the text must be hidden whole. `at` maps a haystack offset to the text's.
    fn find(
        &self,
        haystack: &[u8],
        at: impl Fn(usize) -> usize,
        ranges: &mut Vec<(usize, usize)>,
    ) -> bool {
        let automaton = match self {
            Self::Empty => return true,
            Self::Built(automaton) => automaton,
            Self::TooLarge => return false,
        };
        // Matches come by where they end, so those a new one overlaps are the last ones kept:
        // joined as they come, the ranges kept are at most one per byte of the text, however
        // many patterns end at each.
        let mut joined: Vec<(usize, usize)> = Vec::new();
        for found in automaton.find_overlapping_iter(haystack) {
            let mut start = found.start();
            while let Some(&(before, _)) = joined.last().filter(|&&(_, end)| end > start) {
                start = start.min(before);
                joined.pop();
            }
            joined.push((start, found.end()));
        }
        ranges.extend(joined.into_iter().map(|(start, end)| (at(start), at(end))));
        true
    }
}

impl<'a> Redactor<'a> {
    /// Hides `secrets`, and each of `hidden` as a whole: when the URI template starts with a
    /// secret, the URL the request went to, and its parts, are that secret after
    /// normalisation (lower-cased host, added `/`...), so the secret's own text would not
    /// match them.
    pub(super) fn new(secrets: &'a BTreeMap<String, Secret>, hidden: Vec<String>) -> Self {
        Self::of_values(secrets.values().map(Secret::expose), hidden)
    }

    /// Hides each of `values`, and each of `hidden`, in the spellings [`Redactor::new`] hides a
    /// secret in.
    pub(crate) fn of_values(
        values: impl IntoIterator<Item = &'a str>,
        hidden: Vec<String>,
    ) -> Self {
        let (mut needles, mut plain) = (Vec::new(), Vec::new());
        for value in values {
            push_spellings(&mut needles, &mut plain, Cow::Borrowed(value));
        }
        dedup(&mut needles);
        dedup(&mut plain);
        plain.retain(|value| value.len() <= MAX_PERCENT_SPELLED && has_spellings_beyond(value));
        Self {
            needles,
            plain,
            hidden: HiddenTexts::new(hidden),
        }
    }

    /// `text` with every secret value and every hidden text replaced, in any ASCII case: an
    /// echo that changed a token's case (an upper-cased error page, a case-insensitive hex
    /// digest) still gives it away.
    pub(crate) fn redact(&self, text: &str) -> String {
        match self.ranges(text) {
            Some(ranges) => replace_ranges(text, &ranges),
            None => REDACTED.to_owned(),
        }
    }

    /// The ranges of `text` to hide, in order and apart; `None` when all of it must be.
    fn ranges(&self, text: &str) -> Option<Vec<(usize, usize)>> {
        let mut ranges = Vec::new();
        let long_hidden = self
            .hidden
            .needles
            .iter()
            .map(String::as_str)
            .filter(|needle| needle.len() > MAX_IN_AUTOMATON);
        let mut needles = self
            .needles
            .iter()
            .map(AsRef::as_ref)
            .chain(long_hidden)
            .peekable();
        if needles.peek().is_some() {
            // ASCII lower-casing keeps every byte where it was, so offsets in the lowered text
            // are offsets in `text`.
            let lowered = text.to_ascii_lowercase();
            for needle in needles {
                let needle = needle.to_ascii_lowercase();
                ranges.extend(
                    lowered
                        .match_indices(&needle)
                        .map(|(start, found)| (start, start + found.len())),
                );
            }
        }
        let spelled = self
            .hidden
            .spelled
            .find(text.as_bytes(), |at| at, &mut ranges);
        let mut decoded = true;
        if text.contains(['%', '+']) {
            for value in &self.plain {
                ranges.extend(percent_spelled(text, value));
            }
            let (bytes, starts) = percent_decoded(text.as_bytes());
            decoded = self
                .hidden
                .decoded
                .find(&bytes, |at| starts[at], &mut ranges);
        }
        (spelled && decoded).then(|| merged(ranges))
    }

    /// Cuts a tail of `text` that is the start of a secret or of a hidden text: where a body
    /// was truncated, the rest of it was not read, so [`redact`](Self::redact) could not match
    /// it. The start is cut in each spelling the whole is hidden in, those with any of its bytes
    /// percent-encoded too, along with an escape the truncation left unfinished.
    pub(super) fn cut_partial_tail(&self, text: &mut String) {
        let hidden = self.hidden.needles.iter().map(String::as_str);
        for needle in self.needles.iter().map(AsRef::as_ref).chain(hidden) {
            let cut = text.len() - tail::partial_tail_len(text, needle);
            // The tail is whole characters (`partial_tail_len`); checked all the same, as
            // truncating inside one would panic.
            if text.is_char_boundary(cut) {
                text.truncate(cut);
            }
        }
        // A secret's own text is read through the decoding's rule for a space, not copied.
        let secrets = self
            .plain
            .iter()
            .map(|value| (value.as_bytes(), plus_for_space as fn(u8) -> u8));
        let hidden = self
            .hidden
            .decoded_texts
            .iter()
            .map(|value| (value.as_slice(), std::convert::identity as fn(u8) -> u8));
        for (value, read) in secrets.chain(hidden) {
            let cut = tail::spelled_tail_start(text.as_bytes(), value, read);
            // A spelling starts where a character does (`spelled_tail_start`); checked all the
            // same, as truncating inside one would panic.
            if text.is_char_boundary(cut) {
                text.truncate(cut);
            }
        }
    }
}

impl HiddenTexts {
    fn new(hidden: Vec<String>) -> Self {
        let (mut needles, mut plain) = (Vec::new(), Vec::new());
        // A hidden text is echoed as a secret is: a login page's `?next=` quotes a secret
        // URL's path percent-encoded, and a form echoed back holds a query value form-encoded.
        for part in hidden {
            push_spellings(&mut needles, &mut plain, Cow::Owned(part));
        }
        dedup(&mut needles);
        let needles: Vec<String> = needles.into_iter().map(Cow::into_owned).collect();
        let mut decoded_texts: Vec<Vec<u8>> = plain
            .iter()
            .filter(|value| value.len() <= MAX_PERCENT_SPELLED && has_spellings_beyond(value))
            .flat_map(|value| {
                [
                    space_as_plus(value.as_bytes()),
                    percent_decoded(value.as_bytes()).0,
                ]
            })
            .collect();
        decoded_texts.sort_unstable();
        decoded_texts.dedup();
        let short: Vec<&String> = needles
            .iter()
            .filter(|needle| needle.len() <= MAX_IN_AUTOMATON)
            .collect();
        Self {
            spelled: Finder::new(&short),
            decoded: Finder::new(&decoded_texts),
            decoded_texts,
            needles,
        }
    }
}

/// Sorts `values` longest first, the order [`Redactor::cut_partial_tail`] cuts in, and drops
/// repeats.
fn dedup(values: &mut Vec<Cow<'_, str>>) {
    values.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    values.dedup();
}

/// Whether `value` holds a byte outside the unreserved set: only such a value has spellings
/// with some of its bytes percent-encoded that its needles miss.
fn has_spellings_beyond(value: &str) -> bool {
    !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// `bytes` with each space as `+`, as [`percent_decoded`] reads a space: a form writes one as
/// `+`.
fn space_as_plus(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().copied().map(plus_for_space).collect()
}

fn plus_for_space(byte: u8) -> u8 {
    if byte == b' ' { b'+' } else { byte }
}

/// `bytes` with each `%XX` decoded and each space as `+` ([`space_as_plus`]), and where each
/// of its bytes starts in `bytes`, with their length last.
fn percent_decoded(bytes: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let (mut decoded, mut starts) = (Vec::with_capacity(bytes.len()), Vec::new());
    let mut at = 0;
    while at < bytes.len() {
        starts.push(at);
        let escaped = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3).and_then(hex_byte))
            .flatten();
        let (byte, len) = escaped.map_or((bytes[at], 1), |byte| (byte, 3));
        decoded.push(plus_for_space(byte));
        at += len;
    }
    starts.push(bytes.len());
    (decoded, starts)
}

/// `ranges` in order, each overlapping set joined into one.
fn merged(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut joined: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match joined.last_mut() {
            Some(last) if start < last.1 => last.1 = last.1.max(end),
            _ => joined.push((start, end)),
        }
    }
    joined
}

/// Adds `value` to `needles` (unless it is empty), in the spellings a request carries it in and
/// servers echo it back in, and to `plain`; the same for `value` without the whitespace around
/// it. A secret's own text stays borrowed, so that no copy of it outlives the attempt
/// unzeroed.
fn push_spellings<'a>(
    needles: &mut Vec<Cow<'a, str>>,
    plain: &mut Vec<Cow<'a, str>>,
    value: Cow<'a, str>,
) {
    if value.is_empty() {
        return;
    }
    let trimmed = value.trim();
    if !trimmed.is_empty() && trimmed != value {
        let trimmed = match &value {
            Cow::Borrowed(value) => Cow::Borrowed(value.trim()),
            Cow::Owned(value) => Cow::Owned(value.trim().to_owned()),
        };
        push_spellings(needles, plain, trimmed);
    }
    plain.push(value.clone());
    needles.extend(
        quoted_spellings(&value)
            .chain([percent_encoded(&value), form_encoded(&value)])
            .filter(|spelling| *spelling != *value)
            .map(Cow::Owned),
    );
    // A body carries the value JSON-escaped; a server quoting that body back (in a JSON
    // string, or on an HTML page) escapes the escapes again.
    let mut carried = String::with_capacity(value.len());
    push_json_escaped(&mut carried, &value);
    if carried != *value {
        needles.extend(
            quoted_spellings(&carried)
                .filter(|spelling| *spelling != carried)
                .map(Cow::Owned),
        );
    }
    needles.push(value);
}

/// The byte ranges of `text` (matches that do not overlap, first first) that spell `value`
/// with any of its bytes percent-encoded (hex digits in either case), a space also as `+`,
/// letters in any ASCII case: encoders differ in what they leave alone (Python's `quote` keeps
/// `/`, JavaScript's `encodeURIComponent` keeps `!'()*`, Go's `url.PathEscape` keeps `+`, `=`
/// and `@`), and a server may echo a value through any of them.
fn percent_spelled(text: &str, value: &str) -> Vec<(usize, usize)> {
    let (text, value) = (text.as_bytes(), value.as_bytes());
    let mut found = Vec::new();
    let mut start = 0;
    while start < text.len() {
        match spelled_at(text, start, value) {
            Some(end) => {
                found.push((start, end));
                start = end;
            }
            None => start += 1,
        }
    }
    found
}

/// Where a spelling of `value` ([`percent_spelled`]) starting at `at` in `text` ends, if one
/// does.
fn spelled_at(text: &[u8], mut at: usize, value: &[u8]) -> Option<usize> {
    for &byte in value {
        let next = *text.get(at)?;
        if next.eq_ignore_ascii_case(&byte) {
            at += 1;
        } else if next == b'%' && text.get(at + 1..at + 3).and_then(hex_byte) == Some(byte) {
            at += 3;
        } else if next == b'+' && byte == b' ' {
            at += 1;
        } else {
            return None;
        }
    }
    Some(at)
}

/// The byte two hex digits (either case) spell.
fn hex_byte(digits: &[u8]) -> Option<u8> {
    let digit = |d: u8| char::from(d).to_digit(16);
    Some((digit(digits[0])? * 16 + digit(digits[1])?) as u8)
}

/// `text` with each of `ranges` (in order, apart) replaced. A range that would split a
/// character is left as it is; none does, as a match starts and ends where `value`'s
/// characters do.
fn replace_ranges(text: &str, ranges: &[(usize, usize)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    for &(start, end) in ranges {
        if text.is_char_boundary(start) && text.is_char_boundary(end) {
            out.push_str(&text[rest..start]);
            out.push_str(REDACTED);
            rest = end;
        }
    }
    out.push_str(&text[rest..]);
    out
}

/// The value as servers quote it inside a JSON string or an HTML or XML page.
fn quoted_spellings(value: &str) -> impl Iterator<Item = String> {
    json_spellings(value)
        .into_iter()
        .chain(html_spellings(value))
}

/// The value as text of an HTML or XML page, as error pages quote it: `&`, `<` and `>` as
/// entities, and the quotes as Rails and Java (`&quot;`, `&#39;`), Go's `html` (`&#34;`,
/// `&#39;`), Python (`&quot;`, `&#x27;`) or PHP (`&quot;`, `&#039;`) write them; Go's
/// `html/template` also writes `+` as `&#43;`, and ASP.NET Core's Razor (`HtmlEncoder`) writes
/// `+`, `'`, control characters and everything beyond ASCII as `&#x` and the code point's hex
/// (`&#x2B;`, `&#xE9;`; matched in any case). Spellings that come out the same are dropped
/// later.
fn html_spellings(value: &str) -> [String; 6] {
    let spell = |double: &str, single: &str, plus: &str, numeric: bool| {
        use std::fmt::Write;
        let mut out = String::with_capacity(value.len());
        for c in value.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str(double),
                '\'' => out.push_str(single),
                '+' => out.push_str(plus),
                c if numeric && (c.is_control() || !c.is_ascii()) => {
                    let _ = write!(out, "&#x{:X};", u32::from(c));
                }
                c => out.push(c),
            }
        }
        out
    };
    [
        spell("&quot;", "&#39;", "+", false),
        spell("&#34;", "&#39;", "+", false),
        spell("&quot;", "&#x27;", "+", false),
        spell("&quot;", "&#039;", "+", false),
        spell("&#34;", "&#39;", "&#43;", false),
        spell("&quot;", "&#x27;", "&#x2B;", true),
    ]
}

/// The value form-encoded (`application/x-www-form-urlencoded`, `+` for a space), as a server
/// echoes a form it was sent.
fn form_encoded(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The value as the content of a JSON string, as servers write it back: serde_json's way
/// (`\b`, `\f`, other control characters as `\u00xx`); with every control character as
/// `\u00xx` (this crate's body templates); with `<`, `>`, `&`, U+2028 and U+2029 as `\u`
/// escapes (Go); with everything beyond ASCII as `\u` escapes of its UTF-16 units (Python);
/// with those and [`DOTNET_ESCAPED`] as `\u` escapes (ASP.NET Core's System.Text.Json, by
/// default); and the first and the last with `\/` for `/` too (PHP, by default the last).
/// The escapes are written in lower-case hex; matching in any case finds the upper-case ones
/// .NET writes. Spellings that come out the same are dropped later.
fn json_spellings(value: &str) -> [String; 7] {
    let style = |controls, escaped, beyond_ascii| JsonStyle {
        controls,
        escaped,
        beyond_ascii,
    };
    let plain = json_escaped(value, style(false, &[], false));
    let ascii = json_escaped(value, style(false, &[], true));
    [
        plain.replace('/', "\\/"),
        ascii.replace('/', "\\/"),
        json_escaped(value, style(true, &[], false)),
        json_escaped(value, style(false, GO_ESCAPED, false)),
        json_escaped(value, style(false, DOTNET_ESCAPED, true)),
        ascii,
        plain,
    ]
}

/// What Go's `encoding/json` writes as `\u` escapes though JSON does not ask it to.
const GO_ESCAPED: &[char] = &['<', '>', '&', '\u{2028}', '\u{2029}'];

/// What System.Text.Json's default encoder writes as `\u` escapes among what JSON does not
/// ask it to, beside everything beyond ASCII: the quotes (`"` too, as `\u0022` rather than
/// `\"`), `+`, `<`, `>`, `&`, `` ` `` and DEL.
const DOTNET_ESCAPED: &[char] = &['"', '\'', '+', '<', '>', '&', '`', '\u{7f}'];

/// Which characters [`json_escaped`] writes as `\u` escapes beyond those JSON requires.
#[derive(Clone, Copy)]
struct JsonStyle {
    /// Every control character, `\b` and `\f` included (but `\n`, `\r`, `\t`).
    controls: bool,
    /// Each of these, even where JSON has a shorter escape for it (`\"`).
    escaped: &'static [char],
    /// Every character beyond ASCII, as its UTF-16 units.
    beyond_ascii: bool,
}

fn json_escaped(value: &str, style: JsonStyle) -> String {
    let mut out = String::with_capacity(value.len());
    let mut units = [0u16; 2];
    for c in value.chars() {
        match c {
            c if style.escaped.contains(&c) => {
                for &unit in c.encode_utf16(&mut units).iter() {
                    push_unit_escape(&mut out, unit);
                }
            }
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' if !style.controls => out.push_str("\\b"),
            '\u{c}' if !style.controls => out.push_str("\\f"),
            c if c < ' ' => push_unit_escape(&mut out, c as u16),
            c if !c.is_ascii() && style.beyond_ascii => {
                for &unit in c.encode_utf16(&mut units).iter() {
                    push_unit_escape(&mut out, unit);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `\u` and the four hex digits of `unit`.
fn push_unit_escape(out: &mut String, unit: u16) {
    use std::fmt::Write;
    let _ = write!(out, "\\u{unit:04x}");
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

    /// A secret is tried at each position of a text; hidden texts are matched all at once in
    /// the text decoded once: the same echoes are hidden either way.
    #[test]
    fn a_value_or_hidden_text_with_any_of_its_bytes_percent_encoded_is_hidden() {
        let value = "a/b+c é";
        for r in [
            Redactor::of_values([value], Vec::new()),
            Redactor::of_values([], vec![value.to_owned()]),
        ] {
            for echo in [
                "a/b%2Bc%20%C3%A9",
                "a%2fb+c+é",
                "A%2Fb%2bC%20%c3%a9",
                "a/b+c%20%C3%A9 and a/b+c é%",
            ] {
                let redacted = r.redact(&format!("x {echo} y"));
                assert!(
                    !redacted.contains("b+c") && !redacted.contains("%2"),
                    "{redacted}"
                );
                assert!(redacted.starts_with("x [redacted]"), "{redacted}");
            }
            for near in ["a/b+c e", "a/b%2Bc%2", "a/b%2Xc é", "%"] {
                assert_eq!(r.redact(near), near);
            }
        }
    }

    /// Overlapping matches of different hidden texts are hidden as one range, whichever
    /// automaton or pass found them.
    #[test]
    fn overlapping_hidden_texts_are_hidden_whole() {
        let r = Redactor::of_values(
            ["s3cret-t0ken"],
            vec![
                "abc/def".to_owned(),
                "def/ghi+jk".to_owned(),
                "t0ken/abc".to_owned(),
            ],
        );
        assert_eq!(
            r.redact("[s3cret-t0ken/abc/def%2Fghi%2Bjk] abc/d"),
            "[[redacted]] abc/d"
        );
    }

    #[test]
    fn percent_decoding_keeps_where_each_byte_came_from() {
        let (bytes, starts) = percent_decoded(b"a%2Fb %zz+%4");
        assert_eq!(bytes, b"a/b+%zz+%4");
        assert_eq!(starts, [0, 1, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(
            merged(vec![(5, 9), (0, 2), (1, 3), (3, 4), (6, 7)]),
            [(0, 3), (3, 4), (5, 9)]
        );
    }

    proptest::proptest! {
        /// Whatever trying a hidden text at each position of a text finds, as a secret is
        /// ([`percent_spelled`]), the one pass hides too, on a text of few letters with escapes
        /// in both cases, so that spellings come close and overlap. The one pass reads every
        /// `%` before two hex digits as an escape, where trying may read it as a value's own
        /// `%` (`A%` in `%41%41`): a text writing some of a value's bytes escaped and its `%`
        /// not is left out; the value as written, and escaped whole, are needles.
        #[test]
        fn a_hidden_text_is_hidden_wherever_trying_each_position_finds_it(
            value in "[aA]{0,2}[/ +][aA/ +]{0,2}",
            text in "([aA/ +]|%2[fFbB0]|%25|%41|%61){0,16}",
        ) {
            let r = Redactor::of_values([], vec![value.clone()]);
            let ranges = r.ranges(&text).unwrap();
            for (start, end) in percent_spelled(&text, &value) {
                proptest::prop_assert!(
                    ranges.iter().any(|&(from, to)| from <= start && end <= to),
                    "{:?} of {:?} not hidden, only {:?}", &text[start..end], text, ranges
                );
            }
        }
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

    /// The `\u` spellings of Go (`<`, `>`, `&`), PHP and Python (beyond ASCII) and this
    /// crate's body templates (every control character).
    #[test]
    fn escaped_json_spellings_of_other_servers_are_hidden_too() {
        let s = secrets(&["https://x.example/h?t=1&s=é<>", "a\u{8}b\u{c}c"]);
        let r = Redactor::new(&s, Vec::new());
        let echoes = [
            r"go https://x.example/h?t=1\u0026s=é\u003c\u003e",
            r"php https:\/\/x.example\/h?t=1&s=\u00e9<>",
            r"python https://x.example/h?t=1&s=\u00E9<>",
            r"ours a\u0008b\u000Cc",
            r"serde a\bb\fc",
        ];
        for echo in echoes {
            let redacted = r.redact(echo);
            let (server, _) = echo.split_once(' ').unwrap();
            assert_eq!(redacted, format!("{server} [redacted]"), "{echo}");
        }
    }

    /// A body carries a secret JSON-escaped; a server that quotes the body back escapes it
    /// again, in a JSON string or on an HTML page.
    #[test]
    fn a_secret_quoted_back_inside_an_echoed_json_body_is_hidden() {
        let s = secrets(&["p\"w\\x\u{1}"]);
        let r = Redactor::new(&s, Vec::new());
        let echoes = [
            (
                r#"{"error":"bad payload","body":"{\"t\":\"p\\\"w\\\\x\\u0001\"}"}"#,
                r#"{"error":"bad payload","body":"{\"t\":\"[redacted]\"}"}"#,
            ),
            (
                r#"<pre>{&quot;t&quot;:&quot;p\&quot;w\\x\u0001&quot;}</pre>"#,
                "<pre>{&quot;t&quot;:&quot;[redacted]&quot;}</pre>",
            ),
        ];
        for (echo, redacted) in echoes {
            assert_eq!(r.redact(echo), redacted, "{echo}");
        }
    }

    /// A secret URL whose host is hidden on its own too, echoed in a spelling only the secret's
    /// needle matches: the shorter host must not be replaced first, breaking that match.
    #[test]
    fn a_secret_is_hidden_before_the_shorter_url_parts_inside_it() {
        let s = secrets(&["https://hooks.example.com/services/T0/XYZ"]);
        let hidden = vec![
            "hooks.example.com".to_owned(),
            "/services/T0/XYZ".to_owned(),
        ];
        let r = Redactor::new(&s, hidden);
        assert_eq!(
            r.redact(r#"{"url":"https:\/\/hooks.example.com\/services\/T0\/XYZ"}"#),
            r#"{"url":"[redacted]"}"#
        );
        assert_eq!(
            r.redact("https%3A%2F%2Fhooks.example.com%2Fservices%2FT0%2FXYZ"),
            "[redacted]"
        );
    }

    /// Error pages quote what they were sent as HTML, and a form body echoed back is
    /// form-encoded: a signed URL's query, or a token with quotes, is hidden in those too.
    #[test]
    fn html_and_form_spellings_are_hidden_too() {
        let s = secrets(&["Tok&en<with>\"quotes' and space"]);
        let r = Redactor::new(&s, Vec::new());
        for echo in [
            "rails Tok&amp;en&lt;with&gt;&quot;quotes&#39; and space",
            "go Tok&amp;en&lt;with&gt;&#34;quotes&#39; and space",
            "python Tok&amp;en&lt;with&gt;&quot;quotes&#x27; and space",
            "php Tok&amp;en&lt;with&gt;&quot;quotes&#039; and space",
            "form Tok%26en%3Cwith%3E%22quotes%27+and+space",
        ] {
            let (server, _) = echo.split_once(' ').unwrap();
            assert_eq!(r.redact(echo), format!("{server} [redacted]"), "{echo}");
        }
        let url = "https://blob.example.net/c/b?sv=2021&se=2030&sig=Zm9vYmFy";
        let none = secrets(&[]);
        let r = Redactor::new(&none, vec![url.to_owned()]);
        assert_eq!(
            r.redact(
                "Not found: https://blob.example.net/c/b?sv=2021&amp;se=2030&amp;sig=Zm9vYmFy"
            ),
            "Not found: [redacted]"
        );
    }

    /// ASP.NET Core writes JSON with System.Text.Json's default encoder, which escapes `+`, the
    /// quotes, `<`, `>`, `&`, `` ` `` and what is not ASCII, in upper-case hex; Go's
    /// html/template writes `+` as `&#43;`, Razor as `&#x2B;` (and what is not ASCII as
    /// `&#xE9;`).
    #[test]
    fn dotnet_and_go_template_escapes_of_a_secret_are_hidden_too() {
        let s = secrets(&["Zm9v+YmFy/abc=", "p\"w'<é>`&"]);
        let r = Redactor::new(&s, Vec::new());
        assert_eq!(
            r.redact(
                r#"{"errors":{"Token":["The value \u0027Zm9v\u002BYmFy/abc=\u0027 is not valid."]}}"#
            ),
            r#"{"errors":{"Token":["The value \u0027[redacted]\u0027 is not valid."]}}"#
        );
        for echo in [
            r"dotnet p\u0022w\u0027\u003C\u00E9\u003E\u0060\u0026",
            r"lower p\u0022w\u0027\u003c\u00e9\u003e\u0060\u0026",
            "go Zm9v&#43;YmFy/abc=",
            "razor Zm9v&#x2B;YmFy/abc=",
            "lower Zm9v&#x2b;YmFy/abc=",
            "razor p&quot;w&#x27;&lt;&#xE9;&gt;`&amp;",
        ] {
            let (server, _) = echo.split_once(' ').unwrap();
            assert_eq!(r.redact(echo), format!("{server} [redacted]"), "{echo}");
        }
    }

    /// The parts of a secret URL are matched as a server quotes them in a link or a form, as a
    /// secret is: a login page's `?next=` holds the path percent-encoded.
    #[test]
    fn hidden_texts_are_hidden_percent_and_form_encoded_too() {
        let none = secrets(&[]);
        let hidden = vec![
            "/services/T0/B0/XYZ0123456789abcdef".to_owned(),
            "k3y ABC+DEF".to_owned(),
        ];
        let r = Redactor::new(&none, hidden);
        assert_eq!(
            r.redact(
                "next=%2Fservices%2FT0%2FB0%2FXYZ0123456789abcdef, k3y%20ABC%2BDEF, k3y+ABC%2BDEF"
            ),
            "next=[redacted], [redacted], [redacted]"
        );
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

    #[test]
    fn a_long_hidden_text_and_a_tail_of_nearly_its_start_are_told_apart() {
        // The answer a hostile server crafts against a long hidden path: all but the last byte
        // of every start of the needle, which trying each length compares in full.
        let hidden = format!("{}<>\"&", "a".repeat(16_000));
        let r = Redactor::of_values([], vec![hidden]);
        let mut text = format!("{}{}b", "x".repeat(100), "a".repeat(15_999));
        r.cut_partial_tail(&mut text);
        assert_eq!(
            text.len(),
            100 + 16_000,
            "nothing the needle starts with was cut"
        );
        let mut text = format!("{}{}", "x".repeat(100), "A".repeat(15_999));
        r.cut_partial_tail(&mut text);
        assert_eq!(text, "x".repeat(100));
    }

    #[test]
    fn a_truncated_tail_holding_the_start_of_a_hidden_text_is_cut() {
        let s = secrets(&[]);
        let r = Redactor::new(&s, vec!["/services/T0/XYZ".to_owned()]);
        let mut text = "no such path: /services/T0/X".to_owned();
        r.cut_partial_tail(&mut text);
        assert_eq!(text, "no such path: ");
        for echoed in [
            "%2Fservices/T0%2FX",
            "/services%2fT0/X%",
            "/services%2FT0%2",
        ] {
            let mut text = format!("no such path: {echoed}");
            r.cut_partial_tail(&mut text);
            assert_eq!(text, "no such path: ", "{echoed}");
        }
    }
}
