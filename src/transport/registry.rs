use std::{collections::HashMap, fmt, sync::Arc};

use super::{DynTransport, HttpTransport, TransportError};

/// Picks the transport for a webhook by its `networkMode`.
///
/// `networkMode: direct` webhooks use the direct transport; `remoteNetworkAgent` webhooks use
/// the transport registered for their agent identifier (which reaches the agent's network, e.g.
/// through a tunnel). Check a deployment's agents with [`check_agents`](Self::check_agents)
/// before it starts, so a missing agent refuses the deployment instead of failing a gate
/// halfway through. An agent resolves its webhooks' host names in its own network, so an
/// address policy for them belongs at the agent (see [`AddressPolicy`](super::AddressPolicy)).
///
/// ```
/// use bytes::Bytes;
/// use hookgate::transport::{TransportError, TransportRegistry};
///
/// let answer = |_r: http::Request<Bytes>| async {
///     Ok::<_, TransportError>(http::Response::new(Bytes::new()))
/// };
/// let registry = TransportRegistry::new(answer).with_agent("agent-1", answer);
/// assert!(registry.route(None).is_ok());
/// assert!(registry.route(Some("agent-1")).is_ok());
/// assert!(registry.check_agents(["agent-1", "agent-2"]).is_err());
/// ```
#[derive(Clone)]
pub struct TransportRegistry {
    direct: DynTransport,
    agents: HashMap<String, DynTransport>,
}

impl TransportRegistry {
    /// A registry whose direct transport is `direct` and which knows no agents yet.
    pub fn new(direct: impl HttpTransport + 'static) -> Self {
        Self {
            direct: Arc::new(direct),
            agents: HashMap::new(),
        }
    }

    /// Registers (or replaces) the transport for the remote network agent `agent`.
    #[must_use]
    pub fn with_agent(
        mut self,
        agent: impl Into<String>,
        transport: impl HttpTransport + 'static,
    ) -> Self {
        self.agents.insert(agent.into(), Arc::new(transport));
        self
    }

    /// The transport for a webhook: the direct one for `None`, the agent's for `Some(agent)`.
    ///
    /// # Errors
    ///
    /// [`TransportError::UnknownAgents`] when no transport is registered for `agent`.
    pub fn route(&self, agent: Option<&str>) -> Result<&DynTransport, TransportError> {
        match agent {
            None => Ok(&self.direct),
            Some(agent) => self
                .agents
                .get(agent)
                .ok_or_else(|| TransportError::UnknownAgents {
                    agents: vec![agent.to_owned()],
                }),
        }
    }

    /// Checks that every agent in `agents` has a transport.
    ///
    /// # Errors
    ///
    /// [`TransportError::UnknownAgents`] listing every missing agent once.
    pub fn check_agents<'a>(
        &self,
        agents: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), TransportError> {
        let mut missing: Vec<String> = Vec::new();
        for agent in agents {
            if !self.agents.contains_key(agent) && !missing.iter().any(|m| m == agent) {
                missing.push(agent.to_owned());
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(TransportError::UnknownAgents { agents: missing })
        }
    }
}

impl fmt::Debug for TransportRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut agents: Vec<&str> = self.agents.keys().map(String::as_str).collect();
        agents.sort_unstable();
        f.debug_struct("TransportRegistry")
            .field("agents", &agents)
            .finish_non_exhaustive()
    }
}
