//! Characters that print as nothing, or move what follows: what untrusted text is escaped for
//! before an error or log shows it, and what a name in a deployment file may not hold.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` shows as nothing or changes how the text around it shows, so that two
/// different strings read alike or a log line reads as another: a control character, a
/// format character (Unicode's `Cf`: bidirectional marks, overrides and isolates, zero-width
/// spaces and joiners, the byte order mark, the soft hyphen, the tag characters that can
/// smuggle text invisibly), the line and paragraph separators, at which viewers of logs break
/// lines, and the Hangul fillers, letters that print blank.
pub(crate) fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}')
        || matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

#[cfg(test)]
mod tests {
    use super::invisible;

    #[test]
    fn letters_marks_spaces_and_punctuation_are_visible() {
        for c in [
            'a', 'é', '\u{301}', 'ข', '้', ' ', '"', '\\', '…', '木', '🎃',
        ] {
            assert!(!invisible(c), "{:?}", c.escape_unicode().to_string());
        }
    }

    #[test]
    fn controls_format_characters_separators_and_fillers_are_invisible() {
        for c in [
            '\0',
            '\n',
            '\u{1b}',
            '\u{85}',
            '\u{ad}',
            '\u{61c}',
            '\u{180e}',
            '\u{200b}',
            '\u{200d}',
            '\u{202e}',
            '\u{2028}',
            '\u{2029}',
            '\u{2066}',
            '\u{feff}',
            '\u{fffb}',
            '\u{e0001}',
            '\u{e0041}',
            '\u{e007f}',
            '\u{3164}',
            '\u{115f}',
        ] {
            assert!(invisible(c), "{}", c.escape_unicode());
        }
    }
}
