use std::sync::Arc;

use super::fixture::Fixture;
use crate::config::Plan;
use crate::core::{Deployment, DeploymentId, DeploymentStatus, IdSource, Settings, StartOptions};
use crate::ids::RandomIds;
use crate::store::{DynStore, MAX_KEY_BYTES, StoreError};

/// A state written under another deployment's id would be refused when read back, as
/// [`StoreError::Corrupt`]: `create` and `save` refuse it, and write nothing.
pub async fn another_deployments_state_refused(store: &DynStore) {
    let mut fx = Fixture::new("wrong-state");
    let application = fx.name("app");
    let first = fx.start("d", &application);
    first.create_in(store).await;
    let other = fx.start("other", &application);
    let elsewhere = fx.start("elsewhere", &application);
    let mut new = other.new_deployment();
    new.id = elsewhere.id().clone();
    let refused = store.create(new, &other.events).await;
    assert!(
        matches!(&refused, Err(StoreError::WrongState { id, state_of })
            if id == elsewhere.id() && state_of == other.id()),
        "a create under another id is refused: {refused:?}"
    );
    for id in [elsewhere.id(), other.id()] {
        let stored = store.load(id).await.expect("load succeeds");
        assert!(stored.is_none(), "the refused create wrote nothing");
    }
    let owner = store.find_by_callback(other.callback()).await;
    assert_eq!(owner.expect("lookup succeeds"), None);

    let refused = store
        .save(first.id(), 1, other.state(), DeploymentStatus::Running, &[])
        .await;
    assert!(
        matches!(&refused, Err(StoreError::WrongState { id, state_of })
            if id == first.id() && state_of == other.id()),
        "a save of another's state is refused: {refused:?}"
    );
    let stored = store.load(first.id()).await.expect("load succeeds");
    let stored = stored.expect("still stored");
    assert_eq!((stored.version, &stored.state), (1, first.state()));
}

/// A created deployment loads back as given, its stored plan text restores it, and each save
/// replaces its state and status.
pub async fn round_trip(store: &DynStore) {
    let mut fx = Fixture::new("round-trip");
    let application = fx.name("app");
    let mut d = fx.start("d", &application);
    let version = store.create(d.new_deployment(), &d.events).await;
    assert_eq!(version.expect("create succeeds"), 1);

    let loaded = store.load(d.id()).await.expect("load succeeds");
    let loaded = loaded.expect("a created deployment is found");
    assert_eq!(loaded.id, *d.id());
    assert_eq!(loaded.application, application);
    assert_eq!(loaded.plan_source, d.source);
    assert_eq!(loaded.state, *d.state());
    assert_eq!(loaded.status, DeploymentStatus::Running);
    assert_eq!(loaded.version, 1);
    assert_eq!(
        loaded.created_at, loaded.updated_at,
        "both stamped at create"
    );

    let plan = Plan::from_yaml(&loaded.plan_source).expect("the stored plan text is valid");
    let restored = Deployment::restore(Arc::new(plan), loaded.state.clone());
    let restored = restored.expect("the stored state restores with the stored plan");
    assert!(
        restored.callback_ids().eq(d.deployment.callback_ids()),
        "the restored deployment keeps its callback ids"
    );

    let events = d.sent(1);
    assert_eq!(d.save(store, 1, &events).await.expect("save succeeds"), 2);
    let events = d.cancel();
    assert_eq!(d.save(store, 2, &events).await.expect("save succeeds"), 3);
    let saved = store.load(d.id()).await.expect("load succeeds");
    let saved = saved.expect("a saved deployment is found");
    assert_eq!(saved.state, *d.state());
    assert_eq!(saved.status, DeploymentStatus::Canceled);
    assert_eq!(saved.version, 3);
    assert_eq!(saved.plan_source, d.source, "a save keeps the plan text");
    assert_eq!(
        saved.created_at, loaded.created_at,
        "a save keeps created_at"
    );
    assert!(saved.updated_at >= saved.created_at);
}

/// Creating an id twice, a deployment with a callback id another one owns, or one listing a
/// callback id twice, is refused and writes nothing.
pub async fn duplicate_create_refused(store: &DynStore) {
    let mut fx = Fixture::new("duplicate");
    let application = fx.name("app");
    let first = fx.start("d", &application);
    first.create_in(store).await;

    let again = fx.start("d", &application);
    let refused = store.create(again.new_deployment(), &again.events).await;
    assert!(
        matches!(&refused, Err(StoreError::AlreadyExists { id }) if id == first.id()),
        "a second create of the same id is refused: {refused:?}"
    );
    let stored = store.load(first.id()).await.expect("load succeeds");
    assert_eq!(stored.expect("still stored").state, *first.state());
    let history = store.history(first.id()).await.expect("history succeeds");
    assert_eq!(
        history.len(),
        first.events.len(),
        "the refused create added no event"
    );
    let owner = store.find_by_callback(again.callback()).await;
    assert_eq!(owner.expect("lookup succeeds"), None);

    let other = fx.start("other", &application);
    let mut new = other.new_deployment();
    new.callback_ids.push(first.callback());
    let refused = store.create(new, &other.events).await;
    assert!(
        matches!(&refused, Err(StoreError::CallbackTaken { callback }) if *callback == first.callback()),
        "a taken callback id is refused: {refused:?}"
    );
    let shown = refused.unwrap_err().to_string();
    assert!(
        !shown.contains(&first.callback().to_string()),
        "the message, which may be logged, does not give the other gate's callback id: {shown}"
    );
    assert!(
        store
            .load(other.id())
            .await
            .expect("load succeeds")
            .is_none()
    );
    let owner = store.find_by_callback(other.callback()).await;
    assert_eq!(
        owner.expect("lookup succeeds"),
        None,
        "nothing of it is indexed"
    );
    let history = store.history(other.id()).await.expect("history succeeds");
    assert!(history.is_empty(), "the refused create added no event");
    let owner = store.find_by_callback(first.callback()).await;
    assert_eq!(owner.expect("lookup succeeds").as_ref(), Some(first.id()));

    // One id for two gates would send both gates' callbacks to whichever the store found.
    let twice = fx.start("twice", &application);
    let mut new = twice.new_deployment();
    new.callback_ids.push(twice.callback());
    let refused = store.create(new, &twice.events).await;
    assert!(
        matches!(&refused, Err(StoreError::CallbackTaken { callback }) if *callback == twice.callback()),
        "a create listing one callback id twice is refused: {refused:?}"
    );
    assert!(
        store
            .load(twice.id())
            .await
            .expect("load succeeds")
            .is_none()
    );
    let history = store.history(twice.id()).await.expect("history succeeds");
    assert!(history.is_empty(), "the refused create added no event");
    let owner = store.find_by_callback(twice.callback()).await;
    assert_eq!(
        owner.expect("lookup succeeds"),
        None,
        "nothing of it is indexed"
    );
}

/// Ids never stored are absent, not errors; saving one is [`StoreError::NotFound`]. An id or
/// application holding a NUL character, which no store keeps, is unknown too, and creating
/// one is [`StoreError::Unstorable`]; an id longer than [`MAX_KEY_BYTES`] is
/// [`StoreError::TooLong`].
pub async fn unknown_ids(store: &DynStore) {
    let mut fx = Fixture::new("unknown");
    let d = fx.start("never-created", &fx.name("app"));
    assert!(store.load(d.id()).await.expect("load succeeds").is_none());
    let owner = store.find_by_callback(RandomIds.callback_id()).await;
    assert_eq!(owner.expect("lookup succeeds"), None);
    let history = store.history(d.id()).await.expect("history succeeds");
    assert!(history.is_empty());
    let saved = d.save(store, 1, &d.events).await;
    assert!(
        matches!(&saved, Err(StoreError::NotFound { id }) if id == d.id()),
        "saving an unknown id is refused: {saved:?}"
    );
    assert!(store.load(d.id()).await.expect("load succeeds").is_none());
    let running = store.running_for_application(&fx.name("app")).await;
    assert!(running.expect("query succeeds").is_empty());
    // An id from outside (an approval URL) may hold what no stored id does.
    let odd = DeploymentId::from("a\0b\n");
    assert!(store.load(&odd).await.expect("load succeeds").is_none());
    assert!(
        store
            .history(&odd)
            .await
            .expect("history succeeds")
            .is_empty()
    );
    // Unknown, as any id never stored: not a failure the caller would retry.
    let odd = fx.start("a\0b", &fx.name("app"));
    let saved = odd.save(store, 1, &[]).await;
    assert!(
        matches!(&saved, Err(StoreError::NotFound { id }) if id == odd.id()),
        "saving an id no row can have: {saved:?}"
    );
    let running = store.running_for_application("sh\0op").await;
    assert!(
        running
            .expect("an application no row can have runs nothing")
            .is_empty()
    );
    // Refused by every store, as one of them cannot keep it, and nothing is written.
    let created = store.create(odd.new_deployment(), &odd.events).await;
    assert!(
        matches!(
            created,
            Err(StoreError::Unstorable {
                what: "deployment id"
            })
        ),
        "{created:?}"
    );
    assert!(store.load(odd.id()).await.expect("load succeeds").is_none());
    // Longer than the stores' indexes take: refused as such, never as the database failing.
    let long = fx.start(&"i".repeat(MAX_KEY_BYTES), &fx.name("app"));
    let created = store.create(long.new_deployment(), &long.events).await;
    assert!(
        matches!(
            created,
            Err(StoreError::TooLong {
                what: "deployment id",
                max: MAX_KEY_BYTES,
                ..
            })
        ),
        "{created:?}"
    );
    assert!(
        store
            .load(long.id())
            .await
            .expect("load succeeds")
            .is_none()
    );
    let longest = "i".repeat(MAX_KEY_BYTES - fx.name("").len());
    let longest = fx.start(&longest, &fx.name("app"));
    assert_eq!(longest.id().0.len(), MAX_KEY_BYTES);
    longest.create_in(store).await;
    assert!(
        store
            .load(longest.id())
            .await
            .expect("load succeeds")
            .is_some()
    );
}

/// A state with a 1 MiB context value and a save of 2,000 events round-trip.
pub async fn large_state(store: &DynStore) {
    let mut fx = Fixture::new("large");
    let blob = "é".repeat(512 * 1024);
    let options = StartOptions::default()
        .with_context("blob", blob.clone())
        .with_settings(Settings::default().with_max_progress_notes(2_000));
    let mut d = fx.start_with("d", &fx.name("app"), options);
    d.create_in(store).await;
    let mut events = Vec::new();
    for i in 0..2_000 {
        events.extend(d.progress(&format!("note {i}: {}", "x".repeat(100))));
    }
    d.save(store, 1, &events).await.expect("save succeeds");
    let loaded = store.load(d.id()).await.expect("load succeeds");
    assert_eq!(loaded.expect("stored").state, *d.state());
    let history = store.history(d.id()).await.expect("history succeeds");
    assert_eq!(history.len(), d.events.len() + events.len());
    assert_eq!(history.last().map(|e| &e.event), events.last());
}
