//! The start of a secret or of a hidden text that a truncated body ends with: the rest of it
//! was not read, so no match of the whole finds it.

use super::{hex_byte, percent_decoded};

/// The length of the longest start of `needle`, shorter than all of it, that `text` ends with,
/// in any ASCII case: whole characters of both, as ASCII case maps no byte of a longer
/// character and each ends where its text does.
pub(super) fn partial_tail_len(text: &str, needle: &str) -> usize {
    let tail = &text.as_bytes()[text.len().saturating_sub(needle.len().saturating_sub(1))..];
    start_len(tail, needle.as_bytes(), |b| b)
}

/// Where the tail of `text` starts that spells a start of `value`, shorter than all of it,
/// with any of its bytes percent-encoded and a space also as `+` (as `percent_spelled` and
/// `HiddenTexts::decoded` match the whole), followed by an escape the
/// truncation left unfinished (`%`, or `%` and a hex digit), if any; `text.len()` when no such
/// tail is there. `read` gives each byte of `value` as [`percent_decoded`] reads text.
///
/// The tail is read through the text's escapes as they are decoded from its start, as the whole
/// is: a tail starting on the digits of one (`1%62` after `%4`) is not looked for. It starts
/// where a character of `text` does: on a `%`, or on a byte equal to `value`'s first, which
/// starts one.
pub(super) fn spelled_tail_start(text: &[u8], value: &[u8], read: fn(u8) -> u8) -> usize {
    let Some(&first) = value.first() else {
        return text.len();
    };
    let unfinished = unfinished_escape_len(text);
    let body = &text[..text.len() - unfinished];
    // A spelled byte takes at most three bytes of the text, so a tail shorter than `value`
    // lies within this window; only the window's first two bytes can be read otherwise than
    // from the text's start (the digits of an escape the window cuts), and the tail never
    // reaches them.
    let from = body.len().saturating_sub(3 * value.len());
    let (decoded, starts) = percent_decoded(&body[from..]);
    let tail = &decoded[decoded.len().saturating_sub(value.len() - 1)..];
    let matched = start_len(tail, value, read);
    // An unfinished escape may be the start of any byte of a spelling; one after a start of
    // `value` is cut with it, whichever byte it begins.
    let cut = matched > 0 || (unfinished > 0 && may_start(&text[body.len()..], read(first)));
    if cut {
        from + starts[decoded.len() - matched]
    } else {
        text.len()
    }
}

/// The length of the escape `text` ends with unfinished: 1 for `%`, 2 for `%` and a hex digit.
fn unfinished_escape_len(text: &[u8]) -> usize {
    match text {
        [.., b'%'] => 1,
        [.., b'%', digit] if digit.is_ascii_hexdigit() => 2,
        _ => 0,
    }
}

/// Whether `unfinished` (`%`, or `%` and a hex digit) may begin an escape of `byte`, in either
/// ASCII case.
fn may_start(unfinished: &[u8], byte: u8) -> bool {
    match unfinished {
        [b'%', digit] => [byte.to_ascii_lowercase(), byte.to_ascii_uppercase()]
            .iter()
            .any(|b| hex_byte(&[*digit, b'0']).is_some_and(|high| high == b & 0xf0)),
        _ => true,
    }
}

/// The length of the longest start of `needle`, shorter than all of it, that `tail` ends with,
/// in any ASCII case, each byte of `needle` read through `read`; `tail` is at most one byte
/// shorter than `needle`.
///
/// Linear in the needle's length (Knuth–Morris–Pratt's prefix function): trying each length in
/// turn costs its square, and a hidden text is as long as the context value that wrote it, so a
/// server answering a crafted truncated body would hold the attempt for seconds.
fn start_len(tail: &[u8], needle: &[u8], read: impl Fn(u8) -> u8) -> usize {
    if needle.len() < 2 {
        return 0;
    }
    let at = |i: usize| read(needle[i]);
    // `border[i]`: the longest start of `needle[..=i]`, short of all of it, that it ends with.
    let mut border = vec![0; needle.len()];
    let mut matched = 0;
    for i in 1..needle.len() {
        matched = next_match(&at, &border, matched, at(i));
        border[i] = matched;
    }
    // A tail shorter than the needle never matches all of it, so `matched` stays an index.
    tail.iter()
        .fold(0, |matched, &b| next_match(&at, &border, matched, b))
}

/// How much of the needle (its bytes given by `at`) is matched after `b`, where `matched` bytes
/// of it were before, given the borders of its starts up to that length.
fn next_match(at: &impl Fn(usize) -> u8, border: &[usize], mut matched: usize, b: u8) -> usize {
    while matched > 0 && !b.eq_ignore_ascii_case(&at(matched)) {
        matched = border[matched - 1];
    }
    if b.eq_ignore_ascii_case(&at(matched)) {
        matched + 1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::super::plus_for_space;
    use super::*;

    /// `partial_tail_len` by its definition: each length tried, longest first.
    fn partial_tail_len_by_trying_each(text: &str, needle: &str) -> usize {
        (1..needle.len())
            .rev()
            .filter(|&n| needle.is_char_boundary(n))
            .find(|&n| {
                text.len()
                    .checked_sub(n)
                    .and_then(|tail| text.get(tail..))
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(&needle[..n]))
            })
            .unwrap_or(0)
    }

    /// `spelled_tail_start` by its definition: the whole text decoded, each length tried,
    /// longest first.
    fn spelled_tail_start_by_trying_each(text: &[u8], value: &[u8]) -> usize {
        let unfinished = unfinished_escape_len(text);
        let body = &text[..text.len() - unfinished];
        let (decoded, starts) = percent_decoded(body);
        let value: Vec<u8> = value.iter().map(|&b| plus_for_space(b)).collect();
        let ends_with = |n: usize| {
            decoded.len() >= n && decoded[decoded.len() - n..].eq_ignore_ascii_case(&value[..n])
        };
        match (1..value.len()).rev().find(|&n| ends_with(n)) {
            Some(n) => starts[decoded.len() - n],
            None if unfinished > 0
                && !value.is_empty()
                && may_start(&text[body.len()..], value[0]) =>
            {
                body.len()
            }
            None => text.len(),
        }
    }

    proptest::proptest! {
        #[test]
        fn the_partial_tail_is_the_longest_start_of_the_needle_the_text_ends_with(
            // Few letters, so that texts end with long starts of needles and borders repeat.
            text in "[aAbé<]{0,24}",
            needle in "[aAbé<]{0,12}",
        ) {
            proptest::prop_assert_eq!(
                partial_tail_len(&text, &needle),
                partial_tail_len_by_trying_each(&text, &needle)
            );
        }

        #[test]
        fn the_spelled_tail_is_the_longest_start_of_the_value_the_decoded_text_ends_with(
            // Escapes of the value's bytes (`%2F`, `%2B`, `%20`, `%41`), their digits apart,
            // and a space beside `+`, so that tails spell starts of values in many ways.
            text in "(a|A|/|\\+| |%2F|%2f|%2B|%20|%41|%61|%|2|F|4)*",
            value in "[aA/+ ]{0,10}",
        ) {
            proptest::prop_assert_eq!(
                spelled_tail_start(text.as_bytes(), value.as_bytes(), plus_for_space),
                spelled_tail_start_by_trying_each(text.as_bytes(), value.as_bytes())
            );
        }
    }

    #[test]
    fn a_start_of_a_value_with_some_bytes_percent_encoded_is_found_with_an_unfinished_escape() {
        let value = b"ab/c+d==";
        let cut = |text: &'static str| {
            &text[..spelled_tail_start(text.as_bytes(), value, plus_for_space)]
        };
        assert_eq!(cut("key ab/c%2Bd%3"), "key ");
        assert_eq!(cut("key AB%2fc%2bd"), "key ");
        assert_eq!(cut("key ab/c%"), "key ");
        assert_eq!(cut("key a%"), "key ");
        assert_eq!(cut("key %6"), "key ", "`%6` may begin `a` (`%61`)");
        assert_eq!(cut("key %4"), "key ", "or `A` (`%41`)");
        assert_eq!(
            cut("key %7"),
            "key %7",
            "no byte of `a`'s escapes begins so"
        );
        assert_eq!(cut("key done"), "key done");
        assert_eq!(cut("ab/c+d=="), "ab/c+d==", "the whole is not a start");
    }
}
