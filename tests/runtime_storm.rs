//! A storm: 200 deployments started at once; their callbacks arrive with random delays,
//! duplicates and conflicting outcomes. Every deployment must reach the outcome the first
//! accepted callback decided, and no callback answered 200 may be lost.
#![cfg(all(
    feature = "runtime",
    feature = "axum",
    feature = "reqwest",
    feature = "receiver"
))]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use support::world;

const DEPLOYMENTS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_deployments_with_duplicate_and_conflicting_callbacks() {
    let rng = std::sync::Mutex::new(Pcg64Mcg::seed_from_u64(20261129));
    let planned = Arc::new(AtomicUsize::new(0));
    let planning = Arc::clone(&planned);
    let decide = Arc::new(move |_: &str| {
        let mut rng = rng.lock().unwrap();
        let first = rng.next_u32().is_multiple_of(2);
        let sends = 3 + rng.next_u32() % 3;
        planning.fetch_add(sends as usize, Ordering::SeqCst);
        (0..sends)
            .map(|i| {
                let success = if i == 0 || !rng.next_u32().is_multiple_of(3) {
                    first
                } else {
                    !first
                };
                (u64::from(rng.next_u32() % 200), success)
            })
            .collect()
    });
    let mut w = world(|b| b, decide).await;
    let mut ids = Vec::new();
    for i in 0..DEPLOYMENTS {
        let file = format!(
            r#"
application: storm-{i}
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {{name: gate}}]
webhooks:
  - name: gate
    uriTemplate: "{{{{secrets.external}}}}/gate/{i}"
    headers: [{{key: Content-Type, value: application/json}}]
    bodyTemplate: {{inline: '{{"callbackUri": "{{{{armory.callbackUri}}}}"}}'}}
"#
        );
        ids.push(w.engine.start(&file, w.context()).await.unwrap().id);
    }
    let outcomes = w.all_finished(&ids).await;
    // The slower duplicates and conflicts land after the outcome; wait for every answer.
    let all_answered = async {
        while w.sent.lock().unwrap().len() < planned.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), all_answered)
        .await
        .expect("every callback was answered");

    let sent = w.sent.lock().unwrap().clone();
    for (i, id) in ids.iter().enumerate() {
        let path = format!("/gate/{i}");
        let mine: Vec<_> = sent.iter().filter(|(p, _, _)| *p == path).collect();
        let history = w.engine.history(id).await.unwrap();
        support::check_first_accepted_decides(id, &mine, outcomes[id], &history);
        let view = w.engine.view(id).await.unwrap();
        assert_eq!(view.open_gates().count(), 0);
    }
    // The mock server checks its expectations on drop by blocking on a Tokio lock, which spins
    // if the awaits above used up the task's cooperative budget; a yield renews it.
    tokio::task::yield_now().await;
}
