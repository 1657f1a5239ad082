use std::future::Future;
use std::pin::Pin;

use super::fixture::{Fixture, oldest_first};
use super::join_all;
use crate::core::{DeploymentId, DeploymentStatus};
use crate::store::{DynStore, StoreError, StoredDeployment};

/// Each callback id leads to its own deployment, before and after the deployment finishes.
pub async fn callback_lookup(store: &DynStore) {
    let mut fx = Fixture::new("callback");
    let application = fx.name("app");
    let mut a = fx.start("a", &application);
    let b = fx.start("b", &application);
    for d in [&a, &b] {
        d.create_in(store).await;
    }
    a.cancel_created(store).await;
    for d in [&a, &b] {
        let owner = store.find_by_callback(d.callback()).await;
        assert_eq!(owner.expect("lookup succeeds").as_ref(), Some(d.id()));
    }
}

/// `list_unfinished` returns the queued and running deployments, oldest first, and none that
/// finished, whether at create or by a save.
pub async fn unfinished_listing(store: &DynStore) {
    let mut fx = Fixture::new("unfinished");
    let application = fx.name("app");
    // Created in this order, under ids that sort the other way round.
    let running = fx.start("z-running", &application);
    let queued = fx.start("y-queued", &application);
    let mut canceled = fx.start("c-canceled", &application);
    let rejected = fx.start("d-rejected", &application);
    running.create_in(store).await;
    let queued_new = queued
        .new_deployment()
        .with_status(DeploymentStatus::Queued);
    store
        .create(queued_new, &queued.events)
        .await
        .expect("create succeeds");
    canceled.create_in(store).await;
    let rejected_new = rejected
        .new_deployment()
        .with_status(DeploymentStatus::Rejected);
    store
        .create(rejected_new, &[])
        .await
        .expect("create succeeds");
    canceled.cancel_created(store).await;

    let listed = store.list_unfinished().await.expect("listing succeeds");
    let ours: Vec<&StoredDeployment> = listed
        .deployments
        .iter()
        .filter(|d| d.application == application)
        .collect();
    let ids: Vec<DeploymentId> = ours.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids, oldest_first(store, &[running.id(), queued.id()]).await);
    let listed = |id: &DeploymentId| ours.iter().find(|d| d.id == *id).expect("listed");
    assert_eq!(
        listed(running.id()).state,
        *running.state(),
        "listed deployments are whole"
    );
    assert_eq!(listed(queued.id()).status, DeploymentStatus::Queued);
}

/// `running_for_application` returns the application's `running` deployments, oldest first:
/// not queued ones, not finished ones, not another application's.
pub async fn running_for_application(store: &DynStore) {
    let mut fx = Fixture::new("running");
    let (application, other_application) = (fx.name("app"), fx.name("other"));
    // The older running deployment under the id that sorts later.
    let first = fx.start("z-first", &application);
    let queued = fx.start("b-queued", &application);
    let mut finished = fx.start("c-finished", &application);
    let second = fx.start("a-second", &application);
    let other = fx.start("e-other", &other_application);
    for started in [&first, &finished, &second, &other] {
        started.create_in(store).await;
    }
    let queued_new = queued
        .new_deployment()
        .with_status(DeploymentStatus::Queued);
    store
        .create(queued_new, &queued.events)
        .await
        .expect("create succeeds");
    finished.cancel_created(store).await;

    let running = store.running_for_application(&application).await;
    let running = running.expect("query succeeds");
    assert_eq!(
        running,
        oldest_first(store, &[first.id(), second.id()]).await
    );
    let running = store.running_for_application(&other_application).await;
    assert_eq!(running.expect("query succeeds"), [other.id().clone()]);

    // Dequeued: the host saves it as running.
    queued.save(store, 1, &[]).await.expect("save succeeds");
    let running = store.running_for_application(&application).await;
    let running = running.expect("query succeeds");
    assert_eq!(running.len(), 3);
    assert!(running.contains(queued.id()));
}

/// An exclusive create ([`NewDeployment::exclusive`](crate::store::NewDeployment::exclusive))
/// is refused with [`StoreError::ApplicationBusy`] while another deployment of its application
/// runs, and writes nothing; it succeeds once that one finished, beside a queued one and beside
/// another application's. Of several exclusive creates racing for an idle application, one
/// wins and the others are refused.
pub async fn exclusive_creates(store: &DynStore) {
    let mut fx = Fixture::new("exclusive");
    let (application, other_application) = (fx.name("app"), fx.name("other"));
    let mut first = fx.start("a-first", &application);
    let refused = fx.start("b-refused", &application);
    let after = fx.start("c-after", &application);
    let queued = fx.start("d-queued", &application);
    let other = fx.start("e-other", &other_application);
    store
        .create(first.new_deployment().exclusive(), &first.events)
        .await
        .expect("nothing of the application runs yet");
    match store
        .create(refused.new_deployment().exclusive(), &refused.events)
        .await
    {
        Err(StoreError::ApplicationBusy {
            application: busy,
            running,
        }) => {
            assert_eq!(busy, application);
            assert_eq!(&running, first.id());
        }
        other => panic!("expected ApplicationBusy, got {other:?}"),
    }
    // Refused for both its application and a taken callback id, it is refused as every store
    // refuses it: for the application, which a host queues behind rather than fails.
    let mut both = refused.new_deployment().exclusive();
    both.callback_ids.push(first.callback());
    match store.create(both, &refused.events).await {
        Err(StoreError::ApplicationBusy { running, .. }) => assert_eq!(&running, first.id()),
        other => panic!("expected ApplicationBusy first, got {other:?}"),
    }
    assert!(
        store
            .load(refused.id())
            .await
            .expect("load succeeds")
            .is_none(),
        "a refused create writes nothing"
    );
    // A create repeated after its answer was lost finds itself stored, not its application
    // busy with itself: a queue retrying it would otherwise wait behind it for good.
    match store
        .create(first.new_deployment().exclusive(), &first.events)
        .await
    {
        Err(StoreError::AlreadyExists { id }) => assert_eq!(&id, first.id()),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        store
            .find_by_callback(refused.callback())
            .await
            .expect("lookup succeeds"),
        None,
        "nor indexes its callbacks"
    );
    store
        .create(other.new_deployment().exclusive(), &other.events)
        .await
        .expect("another application's is not held up");
    store
        .create(
            queued
                .new_deployment()
                .with_status(DeploymentStatus::Queued),
            &queued.events,
        )
        .await
        .expect("a queued one does not need the application");
    // Its own id stored wins over another running deployment of the application.
    match store
        .create(queued.new_deployment().exclusive(), &queued.events)
        .await
    {
        Err(StoreError::AlreadyExists { id }) => assert_eq!(&id, queued.id()),
        other => panic!("expected AlreadyExists while another runs, got {other:?}"),
    }

    first.cancel_created(store).await;
    store
        .create(after.new_deployment().exclusive(), &after.events)
        .await
        .expect("the running one finished");

    let racing_application = fx.name("race");
    let racing: Vec<_> = (0..4)
        .map(|i| fx.start(&format!("f-race-{i}"), &racing_application))
        .collect();
    type Create<'a> = Pin<Box<dyn Future<Output = Result<u64, StoreError>> + Send + 'a>>;
    let creates: Vec<Create<'_>> = racing
        .iter()
        .map(|d| Box::pin(store.create(d.new_deployment().exclusive(), &d.events)) as Create<'_>)
        .collect();
    let results = join_all(creates).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::ApplicationBusy { .. })))
        .count();
    assert_eq!((won, busy), (1, 3), "{results:?}");
    let running = store
        .running_for_application(&racing_application)
        .await
        .expect("query succeeds");
    assert_eq!(running.len(), 1);
}
