//! Finding a credential in a list without timing telling where it is, or whether it is there.

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// The position of the first of `candidates` equal to `wanted`. Every candidate is compared in
/// constant time and the match is selected without a branch or an early exit, so the time
/// taken shows neither where the match is nor whether there is one (only lengths show).
pub(crate) fn position<'a>(
    candidates: impl IntoIterator<Item = &'a [u8]>,
    wanted: &[u8],
) -> Option<usize> {
    let mut found = Choice::from(0);
    let mut index = 0u64;
    for (i, candidate) in candidates.into_iter().enumerate() {
        let equal = candidate.ct_eq(wanted);
        // The first match wins; later ones are compared all the same.
        index.conditional_assign(&(i as u64), equal & !found);
        found |= equal;
    }
    bool::from(found).then_some(index as usize)
}

#[cfg(test)]
mod tests {
    use super::position;

    #[test]
    fn the_first_match_is_found_and_none_is_none() {
        let list: [&[u8]; 4] = [b"a", b"bb", b"a", b"c"];
        assert_eq!(position(list, b"a"), Some(0));
        assert_eq!(position(list, b"c"), Some(3));
        assert_eq!(position(list, b"bb"), Some(1));
        assert_eq!(position(list, b"b"), None);
        assert_eq!(position([], b"a"), None);
    }
}
