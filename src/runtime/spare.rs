//! The state each input copies and the buffers its outputs are queued in, reused rather than
//! allocated for every input.
//!
//! The copy of a deployment each input keeps to roll back to shares its state (`Deployment` is
//! two `Arc`s), as the memory store's row does, so the input copies the state once before
//! changing it. Copied into fresh memory, that took three allocations (the state, its
//! environments, its gates) and their frees at every input. A thread keeps a few states
//! instead (none of a deployment of many targets), the copies kept to roll back to once their
//! writes are done with them, and copies the next input's state over one ([`unshare`]) with
//! `clone_from`, which reuses its vectors. Only a state with about the room the copy needs is
//! used: the copy becomes the deployment's own, and the memory store's row once written, and a
//! kept state of a larger deployment would lend it vectors far larger than its own for as long
//! as it waits. A kept state holds on to what the deployment it last copied shares between its
//! copies (its ids, context and preview URLs) until it is written over or its thread ends.
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

/// The room a kept state may have for a copy of `n` environments, or gates: twice what it
/// needs, or the four elements a vector takes at its first growth. A vector that grows takes
/// twice its room (or four at first), so the copy over a smaller state fits too.
fn fits(room: usize, n: usize) -> bool {
    room <= (2 * n).max(4)
}

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
/// one kept to roll back to, the memory store's row) shares it and the thread kept one that
/// [`fits`] it; the input copies it into fresh memory otherwise.
pub(crate) fn unshare(d: &mut Deployment) {
    if !d.shares_state() {
        return;
    }
    let (envs, gates) = (d.state().envs.len(), d.state().gates.len());
    let Some(spare) = KEPT_HERE.with_borrow_mut(|kept| take_fitting(&mut kept.states, envs, gates))
    else {
        return;
    };
    if let Some(unused) = d.unshare_into(spare) {
        keep_state(unused);
    }
}

/// The kept state last given back of those with the room for `envs` environments and `gates`
/// gates and not much more. When none has, one is freed: a thread whose deployments changed
/// size keeps states of the sizes it now copies, rather than ones it never uses.
fn take_fitting(
    states: &mut Vec<Arc<DeploymentState>>,
    envs: usize,
    gates: usize,
) -> Option<Arc<DeploymentState>> {
    let fitting = states
        .iter()
        .rposition(|s| fits(s.envs.capacity(), envs) && fits(s.gates.capacity(), gates));
    match fitting {
        Some(at) => Some(states.swap_remove(at)),
        None => {
            states.pop();
            None
        }
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

    /// A deployment of `n` targets, each with one environment and no gate.
    fn of_targets(id: &str, n: usize) -> Deployment {
        let targets: Vec<String> = (0..n).map(|i| format!("t{i}: {{}}")).collect();
        started(
            id,
            &format!("application: shop\ntargets: {{{}}}\n", targets.join(", ")),
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

    /// A kept state with far more room than a copy needs is not copied over, which would lend
    /// the copy (the deployment's own state, and the memory store's row) vectors many times its
    /// size for as long as it waits; it is freed, and the next kept state that fits is used.
    #[test]
    fn a_kept_state_with_far_more_room_lends_it_to_no_copy() {
        super::give_back(of_targets("big", 60));
        let mut small = started("small", "application: cart\ntargets: {prod: {}}\n");
        let row = small.clone();
        super::unshare(&mut small);
        assert!(small.state().envs.capacity() <= 4);
        assert!(small.state().gates.capacity() <= 4);
        assert_eq!(small.state(), row.state());
        super::KEPT_HERE.with_borrow(|kept| assert!(kept.states.is_empty(), "freed"));

        let three = "application: shop\ntargets: {a: {}, b: {}, c: {}}\n";
        super::give_back(started("three", three));
        let fitting: *const DeploymentState =
            super::KEPT_HERE.with_borrow(|kept| Arc::as_ptr(kept.states.last().expect("kept")));
        super::give_back(of_targets("big again", 60));
        let mut two = started("two", "application: cart\ntargets: {a: {}, b: {}}\n");
        let row = two.clone();
        super::unshare(&mut two);
        assert!(
            std::ptr::eq(&**two.state(), fitting),
            "copied over the kept state that fits, not the last one kept"
        );
        assert_eq!(two.state(), row.state());
        super::KEPT_HERE
            .with_borrow(|kept| assert_eq!(kept.states.len(), 1, "the big one is left"));
    }

    /// The state of a deployment of more targets than `LARGEST_STATE_KEPT` is freed, not kept.
    #[test]
    fn a_state_of_many_targets_is_not_kept() {
        let many = of_targets("many", LARGEST_STATE_KEPT + 1);
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
