//! The buffers an input's outputs are queued in, reused rather than allocated for every input.
//!
//! A deployment at rest holds no buffers for its outputs (they would double a waiting
//! deployment's memory), so each input's first action and first event would allocate one, for
//! the engine to free once it had performed and published them. Those buffers are kept per
//! thread instead, emptied, and lent to the deployment before an input ([`lend_queues`]). One
//! given back on another thread than the one it came from simply stays there.
//!
//! The copy of a deployment each input keeps to roll back to needs no such pool: it shares
//! the deployment's state (`Deployment` is two `Arc`s), and the input copies the state once.

use std::cell::RefCell;

use crate::core::{Action, Deployment, Event};

/// How many of each a thread keeps: about as many inputs as it has under way at once.
const KEPT: usize = 8;

/// The largest buffer kept, in elements: one a rare input filled with many outputs (a
/// deployment of many environments starting) is freed rather than held by the thread.
const LARGEST_KEPT: usize = 32;

/// What a thread keeps. One thread-local for both: each access to one costs a check that it
/// is set up, and an input's cycle takes and gives back both buffers.
struct Kept {
    actions: Vec<Vec<Action>>,
    events: Vec<Vec<Event>>,
}

thread_local! {
    static KEPT_HERE: RefCell<Kept> = const {
        RefCell::new(Kept {
            actions: Vec::new(),
            events: Vec::new(),
        })
    };
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

    use super::{KEPT, LARGEST_KEPT, give_back_queues, lend_queues};
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
