use serde_json::Value;

/// Resource limits for reading a deployment file, so that a hostile or broken file is refused
/// before it costs much memory or time. [`Limits::default`] suits hand-written files.
///
/// Whatever the limits, a file has at most 10,000 targets and 10,000 webhooks, and a canary at
/// most 10,000 steps: positions are 16-bit in each deployment's state. It nests at most 64
/// levels deep (see [`Limits::max_depth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest file, in bytes. Default 1 MiB. It also bounds what the file may expand to: its
    /// text with YAML aliases expanded (4 times this), and the plan built from it, where a
    /// strategy, context, query list or name is repeated for every target and step using it,
    /// with the gates built to check strategies no target uses (16 times this, estimated from
    /// the file before the plan is built). A YAML file may also
    /// hold at most a quarter of this in nodes (maps, lists and values) and this many parser
    /// events, and never fewer than 250,000 and 1,000,000.
    pub max_file_bytes: usize,
    /// Deepest nesting of maps and lists. Default 64, which is also the most: reading a file
    /// takes call stack for every level of nesting (about 4 KiB in an optimised build, 24 KiB
    /// in a debug build), and 64 levels, about 1.5 MiB in a debug build, fit the 2 MiB stack of
    /// a spawned thread or a tokio worker, where a deeper file could overflow it and abort the
    /// process.
    pub max_depth: usize,
    /// Most targets. Default 1,000; at most 10,000.
    pub max_targets: usize,
    /// Most webhooks. Default 1,000; at most 10,000.
    pub max_webhooks: usize,
    /// Most gates (pauses, webhooks, analyses) over all targets, counting a strategy once per
    /// target that uses it. Default 10,000.
    pub max_gates: usize,
    /// Longest template (`uriTemplate`, a header value, `bodyTemplate.inline`), in bytes.
    /// Default 64 KiB.
    pub max_template_bytes: usize,
    /// Most `headers` of one webhook. Default 100; at most 10,000, well within what one HTTP
    /// request's header map can hold.
    pub max_headers: usize,
}

impl Limits {
    /// The longest `application`, in bytes, whatever the limits: the stores index deployments
    /// by it, and an index entry of PostgreSQL's holds at most about 2.7 KB, beyond which every
    /// start of the file would fail. 255 bytes leaves room for any name a cluster's own limits
    /// (63 for a label) allow.
    pub const MAX_APPLICATION_BYTES: usize = 255;
}

/// The most targets, webhooks and steps in one canary, whatever the limits: their indices are
/// 16-bit to keep per-deployment state small.
pub(crate) const HARD_MAX_INDEX: usize = 10_000;

/// The deepest nesting, whatever the limits: see [`Limits::max_depth`].
pub(crate) const HARD_MAX_DEPTH: usize = 64;

/// The most headers of one webhook, whatever the limits: `http`'s header map refuses a little
/// over 24,000 entries.
pub(crate) const HARD_MAX_HEADERS: usize = 10_000;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 1 << 20,
            max_depth: 64,
            max_targets: 1_000,
            max_webhooks: 1_000,
            max_gates: 10_000,
            max_template_bytes: 64 << 10,
            max_headers: 100,
        }
    }
}

impl Limits {
    /// Sets the largest file.
    #[must_use]
    pub fn with_max_file_bytes(mut self, bytes: usize) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    /// Sets the deepest nesting (capped at 64).
    #[must_use]
    pub fn with_max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth.min(HARD_MAX_DEPTH);
        self
    }

    /// The deepest nesting a file may have: [`Limits::max_depth`], which is a public field, kept
    /// within [`HARD_MAX_DEPTH`].
    pub(crate) fn depth_limit(&self) -> usize {
        self.max_depth.min(HARD_MAX_DEPTH)
    }

    /// Sets the most targets (capped at 10,000).
    #[must_use]
    pub fn with_max_targets(mut self, targets: usize) -> Self {
        self.max_targets = targets.min(HARD_MAX_INDEX);
        self
    }

    /// Sets the most webhooks (capped at 10,000).
    #[must_use]
    pub fn with_max_webhooks(mut self, webhooks: usize) -> Self {
        self.max_webhooks = webhooks.min(HARD_MAX_INDEX);
        self
    }

    /// Sets the most gates.
    #[must_use]
    pub fn with_max_gates(mut self, gates: usize) -> Self {
        self.max_gates = gates;
        self
    }

    /// Sets the longest template.
    #[must_use]
    pub fn with_max_template_bytes(mut self, bytes: usize) -> Self {
        self.max_template_bytes = bytes;
        self
    }

    /// Sets the most headers of one webhook (capped at 10,000).
    #[must_use]
    pub fn with_max_headers(mut self, headers: usize) -> Self {
        self.max_headers = headers.min(HARD_MAX_HEADERS);
        self
    }
}

/// How deeply maps and lists nest in `value`; walked with an explicit stack, so a deep value
/// cannot exhaust the call stack here.
pub(crate) fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(d);
                stack.extend(items.iter().map(|i| (i, d + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(d);
                stack.extend(map.values().map(|i| (i, d + 1)));
            }
            _ => {}
        }
    }
    deepest
}
