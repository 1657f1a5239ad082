//! Keys a file holds that hookgate does not read, but likely meant to be one it does:
//! misspelt, or in a place that does not read them.
//!
//! PROTOCOL.md §2 ignores unknown keys, so a misspelt `beforeDeployment` is no error and
//! silently drops its gates. The keys each file type reads are taken from its own
//! `Deserialize` impl, so that they cannot drift from it; a new file type must be added to
//! [`KNOWN`] by hand.

use std::fmt;
use std::sync::LazyLock;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::file::{
    Analysis, AnalysisConfig, AnalysisQuery, BlueGreen, BodyTemplate, CANARY_STEPS, CONSTRAINTS,
    Canary, Constraints, DeploymentConfig, DeploymentFile, DurationSpec, ExposeServices, Header,
    IfDeploymentInProgress, Pause, RunWebhook, SetWeight, Strategy, Target, Webhook,
};

/// A key of the deployment file that hookgate does not read, spelt like one it does or placed
/// where that one is not read: most likely a slip that drops what the key was meant to say.
///
/// Listed by [`DeploymentFile::near_misses`], [`Plan::near_misses`](super::Plan::near_misses)
/// and the engine's `Started::near_misses`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearMiss {
    /// Where the key is, written as [`DeploymentFile::ignored_fields`] writes it
    /// (`targets.prod.constraints.beforDeployment`).
    pub path: String,
    /// The key hookgate reads that it is likely meant to be (`beforeDeployment`).
    pub known: &'static str,
    /// What is likely wrong with it.
    pub slip: Slip,
}

/// What is likely wrong with a [`NearMiss`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Slip {
    /// Its spelling: one or two edits from a key hookgate reads (`beforDeployment`), the
    /// same in another case convention (`before_deployment`), the start of one
    /// (`beforeDeploy`), or one with more written before or after it (`waitUntilApproved`).
    /// It may be in the wrong place as well.
    Spelling,
    /// Its place: hookgate reads a key spelt so, elsewhere in a file (`dependsOn` directly
    /// under a target instead of under its `constraints`, `requiresRoles` beside `pause`
    /// instead of inside it).
    Place,
}

impl fmt::Display for NearMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A key is the file's text: its control characters must not start a line of a log.
        let path = self.path.escape_debug();
        match self.slip {
            Slip::Spelling => write!(
                f,
                "{path}: hookgate does not read this key; did you mean `{}`?",
                self.known
            ),
            Slip::Place => write!(
                f,
                "{path}: hookgate reads `{}` in another place, not here; check where it belongs",
                self.known
            ),
        }
    }
}

impl NearMiss {
    /// The near miss that `key`, found not read at `path`, is; `None` when `key` is like no
    /// key hookgate reads.
    pub(super) fn of(path: impl FnOnce() -> String, key: &str) -> Option<Self> {
        let (known, slip) = match KNOWN.iter().find(|known| known.key == key) {
            Some(known) => (known.key, Slip::Place),
            None => (closest(key, KNOWN.iter())?, Slip::Spelling),
        };
        Some(Self {
            path: path(),
            known,
            slip,
        })
    }
}

/// Of `kinds`, the one an entry's key `key` (not one of them) is likely meant to be, for the
/// error of an entry holding none.
pub(super) fn likely_kind(key: &str, kinds: &[&'static str]) -> Option<&'static str> {
    // Every kind is among the keys read, already normalized and counted there.
    closest(key, KNOWN.iter().filter(|known| kinds.contains(&known.key)))
}

/// A key hookgate reads, with what [`closest`] compares of it.
struct Known {
    key: &'static str,
    /// Its [`normalized`] spelling.
    normal: String,
    letters: Letters,
}

impl Known {
    fn new(key: &'static str) -> Self {
        let normal = normalized(key);
        let letters = Letters::of(&normal);
        Self {
            key,
            normal,
            letters,
        }
    }
}

/// How many of each letter a spelling holds: `a` to `z`, and one count for every other.
#[derive(Clone, Copy)]
struct Letters([u8; 27]);

impl Letters {
    fn of(normal: &str) -> Self {
        let mut counts = [0_u8; 27];
        for c in normal.chars() {
            let at = if c.is_ascii_lowercase() {
                usize::from(c as u8 - b'a')
            } else {
                26
            };
            counts[at] = counts[at].saturating_add(1);
        }
        Self(counts)
    }

    /// The fewest edits that can turn one spelling into the other: an insertion or a deletion
    /// changes one count by one, a substitution two counts, a transposition none.
    fn fewest_edits(&self, other: &Self) -> usize {
        let changed: usize = (self.0.iter().zip(&other.0))
            .map(|(a, b)| usize::from(a.abs_diff(*b)))
            .sum();
        changed.div_ceil(2)
    }
}

/// The candidate `key` is spelt most like, by [`Spelling`](Slip::Spelling)'s rules; edits
/// before starts and ends, fewer before more, then in the candidates' order.
fn closest<'k>(key: &str, candidates: impl Iterator<Item = &'k Known>) -> Option<&'static str> {
    let written = normalized(key);
    let length = written.chars().count();
    if length == 0 {
        return None;
    }
    let letters = Letters::of(&written);
    candidates
        .enumerate()
        .filter_map(|(order, known)| {
            let normal = known.normal.as_str();
            let allowed = allowed_distance(normal);
            // Both bounds of the distance are far cheaper than counting it, and rule out
            // nearly every pair: a hostile file's thousand keys cost little more than reading.
            if length.abs_diff(normal.len()) <= allowed
                && letters.fewest_edits(&known.letters) <= allowed
            {
                let distance = strsim::osa_distance(&written, normal);
                if distance <= allowed {
                    return Some((0, distance, order, known.key));
                }
            }
            let part = (length >= MIN_PART && normal.starts_with(&written))
                || (normal.len() >= MIN_WHOLE
                    && (written.starts_with(normal) || written.ends_with(normal)));
            part.then(|| (1, length.abs_diff(normal.len()), order, known.key))
        })
        .min()
        .map(|(.., known)| known)
}

/// The fewest characters a key that is the start of a longer one hookgate reads must have
/// (`beforeDeploy`): shorter starts (`time`, `name`) are words of their own.
const MIN_PART: usize = 6;

/// The fewest characters a key hookgate reads must have to be taken for the start or end of a
/// longer one (`untilApproved` in `waitUntilApproved`): shorter ones (`name`, `unit`) end many
/// other words.
const MIN_WHOLE: usize = 8;

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
static KNOWN: LazyLock<Vec<Known>> = LazyLock::new(|| {
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
    keys.into_iter().map(Known::new).collect()
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
        NearMiss::of(|| key.to_owned(), key)
            .filter(|miss| miss.slip == Slip::Spelling)
            .map(|miss| miss.known)
    }

    #[test]
    fn the_known_keys_come_from_every_level_of_the_file() {
        let known: Vec<&str> = KNOWN.iter().map(|known| known.key).collect();
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
        assert_eq!(near("beforeDeploy"), Some("beforeDeployment"));
        assert_eq!(near("afterDeploy"), Some("afterDeployment"));
        assert_eq!(near("waitUntilApproved"), Some("untilApproved"));
        assert_eq!(near("retryCountMax"), Some("retryCount"));
    }

    #[test]
    fn a_key_read_elsewhere_is_a_slip_of_place() {
        let miss = NearMiss::of(|| "targets.prod.dependsOn".into(), "dependsOn").unwrap();
        assert_eq!((miss.known, miss.slip), ("dependsOn", Slip::Place));
        assert_eq!(
            miss.to_string(),
            "targets.prod.dependsOn: hookgate reads `dependsOn` in another place, not here; \
             check where it belongs"
        );
    }

    #[test]
    fn a_shown_path_cannot_start_a_line() {
        let miss = NearMiss::of(|| "strategies.c\nINFO forged.stepz".into(), "stepz").unwrap();
        assert!(!miss.to_string().contains('\n'), "{miss}");
    }

    #[test]
    fn an_entry_kind_is_named_for_a_key_like_it() {
        let kinds = &["pause", "runWebhook", "analysis"];
        assert_eq!(likely_kind("puase", kinds), Some("pause"));
        assert_eq!(likely_kind("run_webhook", kinds), Some("runWebhook"));
        assert_eq!(likely_kind("note", kinds), None);
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
            "artifacts",
            "providerOptions",
            "region",
            "deployAsIamRole",
            "lookbackMethod",
            "keepDeploymentObject",
            "activeRootUrl",
            "previewRootUrl",
        ] {
            assert_eq!(near(key), None, "{key}");
        }
        // Short keys two edits from a known one, short starts, and keys read in another place.
        for key in [
            "url",
            "note",
            "units",
            "strategy",
            "",
            "_-",
            "time",
            "retry",
            "timeoutSeconds",
        ] {
            assert_eq!(near(key), None, "{key:?}");
        }
    }
}
