//! The copy of a deployment each input keeps to roll back to, reused rather than allocated for
//! every input.
//!
//! Each input's cycle copies its deployment as it was, to put back if the write fails, and is
//! done with the copy once the write is. Allocating these afresh made up a large part of the
//! engine's allocations per callback. A few are kept per thread instead, each written over with
//! `clone_from`, which reuses its vectors. One given back on another thread than the one it
//! came from simply stays there. A kept copy holds on to what the deployment it last copied
//! shares between its copies (its plan, ids, context and preview URLs) until it is written over
//! or its thread ends.

use std::cell::RefCell;

use crate::core::Deployment;

/// How many a thread keeps: about as many inputs as it has under way at once.
const KEPT: usize = 8;

thread_local! {
    // Boxed, as the copies are handed out and back in the box the input's cycle carries.
    #[allow(clippy::vec_box)]
    static SPARES: RefCell<Vec<Box<Deployment>>> = const { RefCell::new(Vec::new()) };
}

/// A copy of `d`, written over one this thread kept if it has one.
pub(crate) fn copy(d: &Deployment) -> Box<Deployment> {
    match SPARES.with_borrow_mut(Vec::pop) {
        Some(mut spare) => {
            (*spare).clone_from(d);
            spare
        }
        None => Box::new(d.clone()),
    }
}

/// Keeps `copy` for this thread's next [`copy`], unless it keeps enough already.
pub(crate) fn give_back(copy: Box<Deployment>) {
    SPARES.with_borrow_mut(|spares| {
        if spares.len() < KEPT {
            spares.push(copy);
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;

    use super::{KEPT, copy, give_back};
    use crate::config::Plan;
    use crate::core::{Deployment, DeploymentId, StartOptions};
    use crate::ids::RandomIds;

    fn started(id: &str, source: &str) -> Deployment {
        let plan = Arc::new(Plan::from_yaml(source).expect("a valid plan"));
        Deployment::start(
            plan,
            DeploymentId::from(id),
            StartOptions::default(),
            &mut RandomIds,
            Utc::now(),
        )
    }

    /// A copy written over a kept one is the deployment given, whatever the kept one held,
    /// and it is the kept box itself.
    #[test]
    fn a_kept_copy_is_written_over() {
        let two = started(
            "two",
            "application: shop\ntargets: {staging: {}, prod: {dependsOn: [staging]}}\n",
        );
        let one = started("one", "application: cart\ntargets: {prod: {}}\n");

        let first = copy(&two);
        assert_eq!(first.state(), two.state());
        let kept: *const Deployment = &*first;
        give_back(first);

        let second = copy(&one);
        assert_eq!(
            &*second as *const Deployment, kept,
            "the kept box is reused"
        );
        assert_eq!(second.state(), one.state());
        assert_eq!(second.plan().application(), "cart");
        assert_eq!(second.id(), &DeploymentId::from("one"));
    }

    /// A thread keeps at most `KEPT` copies; more given back are dropped.
    #[test]
    fn a_thread_keeps_a_few() {
        let d = started("d", "application: shop\ntargets: {prod: {}}\n");
        let copies: Vec<_> = (0..KEPT + 3).map(|_| copy(&d)).collect();
        copies.into_iter().for_each(give_back);
        super::SPARES.with_borrow(|spares| assert_eq!(spares.len(), KEPT));
    }
}
