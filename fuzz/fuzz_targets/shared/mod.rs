//! What the targets that drive async entry points share.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// One runtime for all runs: building one per input would dominate the time per run.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}
