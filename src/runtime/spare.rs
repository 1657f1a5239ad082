//! The state each input copies and the buffers its outputs are queued in, reused rather than
//! allocated for every input.
//!
//! The copy of a deployment each input keeps to roll back to shares its state (`Deployment` is
//! two `Arc`s), as the memory store's row does, so the input copies the state once before
//! changing it. Copied into fresh memory, that took three allocations (the state, its
//! environments, its gates) and their frees at every input. A thread keeps a few states
//! instead (none of a deployment of many targets), the copies kept to roll back to once their
//! writes are done with them, and copies the next input's state over one ([`unshare`]) with
//! `clone_from`, which reuses its vectors. A kept state holds on to what the deployment it last
//! copied shares between its copies (its ids, context and preview URLs) until it is written
//! over or its thread ends.
//!
//! A deployment at rest holds no buffers for its outputs (they would double a waiting
//! deployment's memory), so each input's first action and first event would allocate one, for
//! the engine to free once it had performed and published them. Those buffers are kept per
//! thread too, emptied, and lent to the deployment before an input ([`lend_queues`]). What is
//! given back on another thread than the one it came from simply stays there.

use std::cell::RefCell;
use std::sync::Arc;

use crate::core::{Action, Deployment, DeploymentState, Event};

/// How many of each a thread keeps: about as many inputs as it has under way at once.
const KEPT: usize = 8;

/// The largest buffer kept, in elements: one a rare input filled with many outputs (a
/// deployment of many environments starting) is freed rather than held by the thread.
const LARGEST_KEPT: usize = 32;

/// The most environments, and gates, of a state kept: the state of a deployment of many
/// targets is freed rather than held by the thread until a later input writes over it.
const LARGEST_STATE_KEPT: usize = 64;

/// What a thread keeps. One thread-local for all of it: each access to one costs a check that
/// it is set up, and an input's cycle takes and gives back a state and both buffers.
struct Kept {
    /// Each held by nothing else.
    states: Vec<Arc<DeploymentState>>,
    actions: Vec<Vec<Action>>,
    events: Vec<Vec<Event>>,
}

thread_local! {
    static KEPT_HERE: RefCell<Kept> = const {
        RefCell::new(Kept {
            states: Vec::new(),
            actions: Vec::new(),
            events: Vec::new(),
        })
    };
}

/// Makes `d` hold its state alone, copied over a state this thread kept, if another copy (the
/// one kept to roll back to, the memory store's row) shares it and the thread kept one; the
/// input copies it into fresh memory otherwise.
pub(crate) fn unshare(d: &mut Deployment) {
    if !d.shares_state() {
        return;
    }
    let Some(spare) = KEPT_HERE.with_borrow_mut(|kept| kept.states.pop()) else {
        return;
    };
    if let Some(unused) = d.unshare_into(spare) {
        keep_state(unused);
    }
}

/// Keeps the state of `before`, the copy an input kept to roll back to, once its write is done
/// with it, if nothing else holds it (the store's row let go of it when the write replaced it).
pub(crate) fn give_back(before: Deployment) {
    keep_state(before.into_state());
}

fn keep_state(mut state: Arc<DeploymentState>) {
    let Some(alone) = Arc::get_mut(&mut state) else {
        return;
    };
    if alone.envs.capacity() > LARGEST_STATE_KEPT || alone.gates.capacity() > LARGEST_STATE_KEPT {
        return;
    }
    KEPT_HERE.with_borrow_mut(|kept| {
        if kept.states.len() < KEPT {
            kept.states.push(state);
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

    use super::{KEPT, LARGEST_KEPT, LARGEST_STATE_KEPT, give_back_queues, lend_queues};
    use crate::config::Plan;
    use crate::core::{Deployment, DeploymentId, DeploymentState, StartOptions};
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

    /// A state given back once its write is done with it is the one the next shared state is
    /// copied over, written over whatever it held; one that something else still holds (the
    /// store's row) is not kept, and a state held alone is not copied.
    #[test]
    fn a_kept_state_takes_the_next_copy() {
        let two = started(
            "two",
            "application: shop\ntargets: {staging: {}, prod: {dependsOn: [staging]}}\n",
        );
        let held_elsewhere = two.clone();
        super::give_back(two.clone());
        super::KEPT_HERE.with_borrow(|kept| assert!(kept.states.is_empty(), "the row holds it"));
        drop(held_elsewhere);
        let kept: *const DeploymentState = &**two.state();
        super::give_back(two);
        super::KEPT_HERE.with_borrow(|kept| assert_eq!(kept.states.len(), 1));

        let mut one = started("one", "application: cart\ntargets: {prod: {}}\n");
        let alone: *const DeploymentState = &**one.state();
        super::unshare(&mut one);
        assert!(
            std::ptr::eq(&**one.state(), alone),
            "held alone: not copied"
        );
        let before = one.clone();
        super::unshare(&mut one);
        assert!(
            std::ptr::eq(&**one.state(), kept),
            "copied over the kept state"
        );
        assert_eq!(one.state(), before.state());
        assert_eq!(one.id(), &DeploymentId::from("one"));
        super::KEPT_HERE.with_borrow(|kept| assert!(kept.states.is_empty()));
    }

    /// The state of a deployment of more targets than `LARGEST_STATE_KEPT` is freed, not kept.
    #[test]
    fn a_state_of_many_targets_is_not_kept() {
        let targets: Vec<String> = (0..=LARGEST_STATE_KEPT)
            .map(|i| format!("t{i}: {{}}"))
            .collect();
        let many = started(
            "many",
            &format!("application: shop\ntargets: {{{}}}\n", targets.join(", ")),
        );
        assert!(many.state().envs.len() > LARGEST_STATE_KEPT);
        super::give_back(many);
        super::KEPT_HERE.with_borrow(|kept| assert!(kept.states.is_empty()));

        super::give_back(started("few", "application: shop\ntargets: {prod: {}}\n"));
        super::KEPT_HERE.with_borrow(|kept| assert_eq!(kept.states.len(), 1));
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
