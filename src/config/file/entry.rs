//! List entries written as a map holding one kind of entry (`- pause: {...}`), read so that
//! other keys beside it are ignored, as unknown fields are everywhere else (PROTOCOL.md §2).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{Analysis, CanaryStep, Constraint, ExposeServices, Pause, RunWebhook, SetWeight};
use crate::config::near_miss::likely_kind;

/// Reads an entry from `map`: the one key among `kinds` read by `read`, every other skipped.
fn one_of<'de, A, T>(
    mut map: A,
    kinds: &'static [&'static str],
    mut read: impl FnMut(&str, &mut A) -> Result<T, A::Error>,
) -> Result<T, A::Error>
where
    A: MapAccess<'de>,
{
    let mut found: Option<(String, T)> = None;
    let mut likely: Option<(String, &'static str)> = None;
    let mut skipped = 0;
    while let Some(key) = map.next_key::<String>()? {
        if !kinds.contains(&key.as_str()) {
            // A few are enough to name the kind a misspelt one is meant to be; an entry of a
            // hostile file may hold thousands.
            if likely.is_none() && skipped < MAX_SPELT {
                skipped += 1;
                likely = likely_kind(&key, kinds).map(|kind| (key, kind));
            }
            map.next_value::<IgnoredAny>()?;
            continue;
        }
        if let Some((first, _)) = &found {
            return Err(de::Error::custom(format_args!(
                "an entry is exactly one of {}, and this one has both `{first}` and `{key}`",
                Kinds(kinds)
            )));
        }
        let entry = read(&key, &mut map)?;
        found = Some((key, entry));
    }
    found.map(|(_, entry)| entry).ok_or_else(|| match likely {
        Some((key, kind)) => de::Error::custom(format_args!(
            "an entry needs one of {}, and this one has none; did you mean `{kind}` for `{}`?",
            Kinds(kinds),
            key.escape_debug()
        )),
        None => de::Error::custom(format_args!(
            "an entry needs one of {}, and this one has none",
            Kinds(kinds)
        )),
    })
}

/// The most keys of one entry spelt against its kinds when it holds none of them.
const MAX_SPELT: usize = 8;

/// The kinds of entry, as a message lists them.
struct Kinds(&'static [&'static str]);

impl fmt::Display for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, kind) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{kind}`")?;
        }
        Ok(())
    }
}

/// The `Deserialize` of an entry enum read by [`one_of`], and the list of its kinds (named
/// `$kinds`), both from one list of kinds and the variants they read into.
macro_rules! entry {
    ($entry:ident, $kinds:ident: $($kind:literal => $variant:ident($value:ty)),+ $(,)?) => {
        pub(in crate::config) const $kinds: &[&str] = &[$($kind),+];

        impl<'de> Deserialize<'de> for $entry {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $entry;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a map holding one of {}", Kinds($kinds))
                    }

                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$entry, A::Error> {
                        one_of(map, $kinds, |kind, map| match kind {
                            $($kind => map.next_value::<$value>().map($entry::$variant),)+
                            other => Err(de::Error::unknown_variant(other, $kinds)),
                        })
                    }
                }
                deserializer.deserialize_map(V)
            }
        }
    };
}

entry!(Constraint, CONSTRAINTS:
    "pause" => Pause(Pause),
    "runWebhook" => RunWebhook(RunWebhook),
    "analysis" => Analysis(Analysis),
);

entry!(CanaryStep, CANARY_STEPS:
    "setWeight" => SetWeight(SetWeight),
    "pause" => Pause(Pause),
    "runWebhook" => RunWebhook(RunWebhook),
    "analysis" => Analysis(Analysis),
    "exposeServices" => ExposeServices(ExposeServices),
);
