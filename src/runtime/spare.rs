//! The copy of a deployment each input keeps to roll back to, and the buffers its outputs are
//! queued in, reused rather than allocated for every input.
//!
//! Each input's cycle copies its deployment as it was, to put back if the write fails, and is
//! done with the copy once the write is. Allocating these afresh made up a large part of the
//! engine's allocations per callback. A few are kept per thread instead, each written over with
//! `clone_from`, which reuses its vectors. One given back on another thread than the one it
//! came from simply stays there. A kept copy holds on to what the deployment it last copied
//! shares between its copies (its plan, ids, context and preview URLs) until it is written over
//! or its thread ends.
//!
//! A deployment at rest holds no buffers for its outputs (they would double a waiting
//! deployment's memory), so each input's first action and first event would allocate one, for
//! the engine to free once it had performed and published them. Those buffers are kept per
//! thread too, emptied, and lent to the deployment before an input ([`lend_queues`]).

use std::cell::RefCell;

use crate::core::{Action, Deployment, Event};

/// How many of each a thread keeps: about as many inputs as it has under way at once.
const KEPT: usize = 8;

/// The largest buffer kept, in elements: one a rare input filled with many outputs (a
/// deployment of many environments starting) is freed rather than held by the thread.
const LARGEST_KEPT: usize = 32;

/// What a thread keeps. One thread-local for all of it: each access to one costs a check that
/// it is set up, and an input's cycle takes and gives back a copy and both buffers.
struct Kept {
    // Boxed, as the copies are handed out and back in the box the input's cycle carries.
    #[allow(clippy::vec_box)]
    copies: Vec<Box<Deployment>>,
    actions: Vec<Vec<Action>>,
    events: Vec<Vec<Event>>,
}

thread_local! {
    static KEPT_HERE: RefCell<Kept> = const {
        RefCell::new(Kept {
            copies: Vec::new(),
            actions: Vec::new(),
            events: Vec::new(),
        })
    };
}

/// A copy of `d`, written over one this thread kept if it has one.
pub(crate) fn copy(d: &Deployment) -> Box<Deployment> {
    match KEPT_HERE.with_borrow_mut(|kept| kept.copies.pop()) {
        Some(mut spare) => {
            (*spare).clone_from(d);
            spare
        }
        None => Box::new(d.clone()),
    }
}

/// Keeps `copy` for this thread's next [`copy`], unless it keeps enough already.
pub(crate) fn give_back(copy: Box<Deployment>) {
    KEPT_HERE.with_borrow_mut(|kept| {
        if kept.copies.len() < KEPT {
            kept.copies.push(copy);
        }
    });
}

/// Lends `d` buffers this thread kept for its next input's outputs, if it kept any.
pub(crate) fn lend_queues(d: &mut Deployment) {
    let (actions, events) = KEPT_HERE.with_borrow_mut(|kept| {
        (
            kept.actions.pop().unwrap_or_default(),
            kept.events.pop().unwrap_or_default(),
        )
    });
    d.lend_queues(actions, events);
}

/// Keeps the buffers of `actions` and `events`, emptied, for a later [`lend_queues`].
pub(crate) fn give_back_queues(actions: Vec<Action>, events: Vec<Event>) {
    KEPT_HERE.with_borrow_mut(|kept| {
        keep(&mut kept.actions, actions);
        keep(&mut kept.events, events);
    });
}

/// Keeps `buffer` in `kept` unless it is unused, too large to hold on to, or `kept` is full.
fn keep<T>(kept: &mut Vec<Vec<T>>, mut buffer: Vec<T>) {
    if buffer.capacity() == 0 || buffer.capacity() > LARGEST_KEPT || kept.len() >= KEPT {
        return;
    }
    buffer.clear();
    kept.push(buffer);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;

    use super::{KEPT, LARGEST_KEPT, copy, give_back, give_back_queues, lend_queues};
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
        super::KEPT_HERE.with_borrow(|kept| assert_eq!(kept.copies.len(), KEPT));
    }

    /// Buffers given back are emptied and lent to the next input's deployment; the thread
    /// keeps at most `KEPT` of each, none unused and none larger than `LARGEST_KEPT`.
    #[test]
    fn buffers_given_back_are_lent_to_the_next_input() {
        let mut d = started("d", "application: shop\ntargets: {prod: {}}\n");
        let (actions, mut events) = (d.take_actions(), d.take_events());
        assert!(!events.is_empty(), "the start's events");
        let buffer = events.as_ptr();
        events.truncate(1);
        give_back_queues(actions, events);
        lend_queues(&mut d);
        d.handle_cancel(Utc::now(), "ops").unwrap();
        let lent = d.take_events();
        assert_eq!(
            lent.as_ptr(),
            buffer,
            "the buffer given back, emptied, took the outputs"
        );
        assert!(!lent.is_empty());

        let many = (0..KEPT + 2).map(|_| (Vec::with_capacity(4), Vec::with_capacity(4)));
        many.for_each(|(a, e)| give_back_queues(a, e));
        give_back_queues(Vec::new(), Vec::with_capacity(LARGEST_KEPT + 1));
        super::KEPT_HERE.with_borrow(|kept| {
            assert_eq!((kept.actions.len(), kept.events.len()), (KEPT, KEPT));
            assert!(kept.events.iter().all(|e| e.capacity() <= LARGEST_KEPT));
        });
    }
}
