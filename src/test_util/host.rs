use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::core::{HostStep, StepOutcome};
use crate::runtime::{Host, StepContext};

/// A [`Host`] whose steps and rollbacks wait until the test answers them (feature `runtime`
/// too): for a deploy that hangs past `deploymentConfig.timeout`, one that finishes later, a
/// rollback that fails. [`SimulatedHost`](crate::runtime::SimulatedHost) answers every step at
/// once instead.
///
/// Clones share the steps waiting, so the test keeps one and gives the engine another. A step
/// never answered waits for good, as a hung host's would; its deadline still fires.
///
/// ```
/// use hookgate::core::StepOutcome;
/// use hookgate::test_util::ScriptedHost;
///
/// let host = ScriptedHost::new();
/// // Given to the engine: `Engine::builder(dispatcher, host.clone())`. Then, in the test:
/// let answered = host.answer(
///     |asked| asked.context.environment() == "prod" && asked.step.is_some(),
///     StepOutcome::failed("image pull failed"),
/// );
/// assert!(answered.is_none(), "nothing was asked yet");
/// ```
#[derive(Debug, Clone, Default)]
pub struct ScriptedHost {
    waiting: Arc<Mutex<Vec<Waiting>>>,
}

/// A step or rollback a [`ScriptedHost`] was asked for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AskedStep {
    /// Where it runs: the deployment, the operation, the target.
    pub context: StepContext,
    /// The step; `None` for a rollback.
    pub step: Option<HostStep>,
}

#[derive(Debug)]
struct Waiting {
    asked: AskedStep,
    answer: oneshot::Sender<StepOutcome>,
}

impl ScriptedHost {
    /// A host with no step waiting.
    pub fn new() -> Self {
        Self::default()
    }

    /// The steps and rollbacks waiting for an answer, in the order they were asked for. One
    /// the engine stopped waiting for (it shut down) is left out.
    pub fn waiting(&self) -> Vec<AskedStep> {
        let mut waiting = self.lock();
        waiting.retain(|w| !w.answer.is_closed());
        waiting.iter().map(|w| w.asked.clone()).collect()
    }

    /// Answers the first waiting step for which `which` holds with `outcome`, and returns it;
    /// `None` when no step waiting is such.
    pub fn answer(
        &self,
        which: impl Fn(&AskedStep) -> bool,
        outcome: StepOutcome,
    ) -> Option<AskedStep> {
        let mut waiting = self.lock();
        waiting.retain(|w| !w.answer.is_closed());
        let at = waiting.iter().position(|w| which(&w.asked))?;
        let Waiting { asked, answer } = waiting.remove(at);
        // Closed since the look above: the engine no longer waits, and nothing is lost.
        let _ = answer.send(outcome);
        Some(asked)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn ask(&self, context: &StepContext, step: Option<&HostStep>) -> StepOutcome {
        let (answer, answered) = oneshot::channel();
        let asked = AskedStep {
            context: context.clone(),
            step: step.cloned(),
        };
        self.lock().push(Waiting { asked, answer });
        answered.await.unwrap_or_else(|_| {
            StepOutcome::failed("the scripted host was dropped without answering")
        })
    }
}

#[async_trait]
impl Host for ScriptedHost {
    async fn run_step(&self, context: &StepContext, step: &HostStep) -> StepOutcome {
        self.ask(context, Some(step)).await
    }

    async fn roll_back(&self, context: &StepContext) -> StepOutcome {
        self.ask(context, None).await
    }
}
