//! Keys a file holds that hookgate does not read, but spelt almost like one it does.
//!
//! PROTOCOL.md §2 ignores unknown keys, so a misspelt `beforeDeployment` is no error and
//! silently drops its gates. The keys hookgate reads are taken from the file types'
//! own `Deserialize` impls, so that the list cannot drift from them.

use std::fmt;
use std::sync::LazyLock;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::file::{
    Analysis, AnalysisConfig, AnalysisQuery, BlueGreen, BodyTemplate, CANARY_STEPS, CONSTRAINTS,
    Canary, Constraints, DeploymentConfig, DeploymentFile, DurationSpec, ExposeServices, Header,
    IfDeploymentInProgress, Pause, RunWebhook, SetWeight, Strategy, Target, Webhook,
};

/// A key of the deployment file that hookgate does not read, spelt like one it does: most
/// likely a typo that drops what the key was meant to say.
///
/// Listed by [`DeploymentFile::near_misses`], [`Plan::near_misses`](super::Plan::near_misses)
/// and the engine's `Started::near_misses`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearMiss {
    /// Where the key is, written as [`DeploymentFile::ignored_fields`] writes it
    /// (`targets.prod.constraints.beforDeployment`).
    pub path: String,
    /// The key hookgate reads that it is spelt like (`beforeDeployment`).
    pub known: &'static str,
}

impl fmt::Display for NearMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: hookgate does not read this key; did you mean `{}`?",
            self.path, self.known
        )
    }
}

impl NearMiss {
    /// The near miss that `key`, found not read at `path`, is; `None` when `key` is spelt like
    /// no key hookgate reads, or is one of them exactly (in a place that does not read it).
    pub(super) fn of(path: impl FnOnce() -> String, key: &str) -> Option<Self> {
        let written = normalized(key);
        if written.is_empty() || KNOWN.iter().any(|(known, _)| *known == key) {
            return None;
        }
        let length = written.chars().count();
        KNOWN
            .iter()
            .filter_map(|(known, normal)| {
                let allowed = allowed_distance(normal);
                // The distance is at least the difference in length: a long hostile key costs
                // nothing more than this comparison.
                if length.abs_diff(normal.len()) > allowed {
                    return None;
                }
                let distance = strsim::osa_distance(&written, normal);
                (distance <= allowed).then_some((distance, *known))
            })
            .min()
            .map(|(_, known)| Self {
                path: path(),
                known,
            })
    }
}

/// How far a key may be from one hookgate reads, counted after [`normalized`], to be taken for
/// it: one edit for short keys, where two would match unrelated words (`url` and `ttl`), two
/// for long ones.
fn allowed_distance(known: &str) -> usize {
    if known.len() <= 8 { 1 } else { 2 }
}

/// `key` in lower case, without `_` or `-`: `before_deployment`, `BeforeDeployment` and
/// `before-deployment` are all `beforeDeployment` written in another case convention.
fn normalized(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Every key hookgate reads anywhere in a file, with its [`normalized`] spelling.
static KNOWN: LazyLock<Vec<(&'static str, String)>> = LazyLock::new(|| {
    let mut keys: Vec<&'static str> = [
        fields::<DeploymentFile>(),
        fields::<DeploymentConfig>(),
        fields::<IfDeploymentInProgress>(),
        fields::<DurationSpec>(),
        fields::<Target>(),
        fields::<Constraints>(),
        fields::<Pause>(),
        fields::<RunWebhook>(),
        fields::<Analysis>(),
        fields::<AnalysisConfig>(),
        fields::<AnalysisQuery>(),
        fields::<Strategy>(),
        fields::<Canary>(),
        fields::<SetWeight>(),
        fields::<ExposeServices>(),
        fields::<BlueGreen>(),
        fields::<Webhook>(),
        fields::<Header>(),
        fields::<BodyTemplate>(),
        CONSTRAINTS,
        CANARY_STEPS,
    ]
    .concat();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter().map(|key| (key, normalized(key))).collect()
});

/// The keys `T`'s derived `Deserialize` reads, which it hands to `deserialize_struct`.
fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(FieldNames) {
        Err(Captured(Some(fields))) => fields,
        _ => unreachable!("every type listed in `KNOWN` is a struct read by a derived impl"),
    }
}

/// A deserializer that reads nothing and stops at the first struct asked of it, with its
/// field names.
struct FieldNames;

/// [`FieldNames`]'s way out: the field names, or `None` when something else was asked.
#[derive(Debug)]
struct Captured(Option<&'static [&'static str]>);

impl fmt::Display for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("only a struct's field names are read here")
    }
}

impl std::error::Error for Captured {}

impl de::Error for Captured {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Self(None)
    }
}

impl<'de> Deserializer<'de> for FieldNames {
    type Error = Captured;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Captured> {
        Err(Captured(None))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Captured> {
        Err(Captured(Some(fields)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(key: &str) -> Option<&'static str> {
        NearMiss::of(|| key.to_owned(), key).map(|miss| miss.known)
    }

    #[test]
    fn the_known_keys_come_from_every_level_of_the_file() {
        let known: Vec<&str> = KNOWN.iter().map(|(key, _)| *key).collect();
        for key in [
            "application",
            "ifDeploymentInProgress",
            "beforeDeployment",
            "untilApproved",
            "runWebhook",
            "setWeight",
            "exposeServices",
            "shutDownOldVersionAfter",
            "uriTemplate",
            "inline",
            "key",
            "numberOfJudgmentRuns",
            "queryTemplate",
            "retryableStatusCodes",
        ] {
            assert!(known.contains(&key), "{key} missing from {known:?}");
        }
    }

    #[test]
    fn typos_and_other_case_conventions_are_near_misses() {
        assert_eq!(near("beforDeployment"), Some("beforeDeployment"));
        assert_eq!(near("untilAproved"), Some("untilApproved"));
        assert_eq!(near("before_deployment"), Some("beforeDeployment"));
        assert_eq!(near("DependsOn"), Some("dependsOn"));
        assert_eq!(near("depends-on"), Some("dependsOn"));
        assert_eq!(near("retryCont"), Some("retryCount"));
        assert_eq!(near("requiresRole"), Some("requiresRoles"));
        assert_eq!(near("uirTemplate"), Some("uriTemplate"));
    }

    #[test]
    fn other_keys_are_not() {
        // Armory's own keys that hookgate has no use for.
        for key in [
            "version",
            "kind",
            "manifests",
            "path",
            "trafficManagement",
            "smi",
        ] {
            assert_eq!(near(key), None, "{key}");
        }
        // Short keys two edits from a known one, and keys read in another place.
        for key in ["url", "note", "units", "strategy", "", "_-"] {
            assert_eq!(near(key), None, "{key:?}");
        }
    }
}
