//! Deployments an earlier release stored, with analysis fields it ignored or strategy names it
//! took and this release checks: they resume and run on, while a new deployment of the same
//! file is refused.
#![cfg(all(feature = "runtime", feature = "test-util"))]

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use hookgate::config::Plan;
use hookgate::core::{Deployment, DeploymentId, DeploymentStatus, StartOptions};
use hookgate::runtime::{Engine, RuntimeError, SimulatedHost};
use hookgate::store::{MemoryStore, NewDeployment, Store};
use hookgate::test_util::{RecordingTransport, SequentialIds};

mod analysis_files;
mod finish;

use analysis_files::canary_analysis;

/// Files an earlier release took: the analysis section and `interval` were ignored keys then,
/// and a step's query names were the host's to know.
fn stored_before() -> [String; 4] {
    let section = "analysis:
  queries:
    - {name: cpu, upperLimit: 1, queryTemplate: 'avg(cpu)'}
";
    let unjudgeable = "analysis:
  queries:
    - {name: cpu, lowerLimit: 2, upperLimit: 1}
    - {name: cpu, queryTemplate: 'avg(cpu)'}
";
    [
        // A step naming a query the host knows besides those the section lists.
        canary_analysis("queries: [cpu, host-known]", section),
        // `interval` without `units`.
        canary_analysis("queries: [cpu], interval: 5", ""),
        // Queries that could never be judged, and no runs at all.
        canary_analysis(
            "queries: [cpu], numberOfJudgmentRuns: 0, metricProviderName: ''",
            unjudgeable,
        ),
        // A strategy name holding an invisible character, which releases since refuse.
        canary_analysis("queries: [cpu]", "")
            .replace("strategy: c}", "strategy: \"c\\u200B\"}")
            .replace("  c:\n", "  \"c\\u200B\":\n"),
    ]
}

#[tokio::test]
async fn a_deployment_stored_with_analysis_fields_this_release_refuses_resumes_and_finishes() {
    // The same layout, which both releases take.
    let layout = canary_analysis("queries: [cpu]", "");
    for source in stored_before() {
        let source = source.as_str();
        assert!(
            Plan::from_yaml(source).is_err(),
            "refused when read now:\n{source}"
        );
        let store = Arc::new(MemoryStore::new());
        let plan = Arc::new(Plan::from_yaml(&layout).unwrap());
        let id = DeploymentId::from("d-old");
        let mut d = Deployment::start(
            plan,
            id.clone(),
            StartOptions::default(),
            &mut SequentialIds::starting_at(1),
            Utc::now(),
        );
        let events: Vec<_> = std::iter::from_fn(|| d.poll_event()).collect();
        store
            .create(NewDeployment::new(&d, source), &events)
            .await
            .unwrap();
        let external = RecordingTransport::new();
        let engine = Engine::builder(
            external.dispatcher("https://hookgate.example").unwrap(),
            SimulatedHost,
        )
        .shared_store(store.clone())
        .build();

        let recovered = engine.recover().await.unwrap();
        assert_eq!(recovered.not_resumed, [], "{source}");
        assert_eq!(recovered.resumed, 1);
        let status = finish::finished(&engine, &id, "the resumed deployment").await;
        assert_eq!(status, DeploymentStatus::Succeeded, "{source}");
        assert!(matches!(
            engine.start(source, BTreeMap::new()).await,
            Err(RuntimeError::Config(_))
        ));
    }
}
