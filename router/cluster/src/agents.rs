//! A clustered router's view of the agent-nodes: reservations and deliveries over gRPC to
//! the node each agent is logged in on ([`RemoteAgents`]), and the availability streams
//! every agent-node publishes ([`run_feed`]).
//!
//! When an agent-node disappears, its agents count as disconnected. Agents who log in on
//! another node within the disconnect grace get their conversations back there (the node
//! asks the routers); for the others, the router returns their conversations to the queues
//! with their original age when the grace runs out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use centralino_base::config::AgentConfig;
use centralino_base::directory::Directory;
use centralino_link::grpc::{
    availability_from_proto, outcome_from_proto, reserve_to_proto, Channels,
};
use centralino_link::{
    AgentAdmin, AgentNodeLink, Availability, RejectReason, ReserveOutcome, ReserveRequest,
    RouterLink,
};
use centralino_membership::membership::{Membership, Role};
use centralino_proto::v1::agent_node_internal_client::AgentNodeInternalClient;
use centralino_proto::v1::{
    AgentStatus, CancelReservationRequest, ChatMessage, ConversationEndedRequest,
    ConversationOutcome, CustomerTypingRequest, DeliverRequest, Empty, SetAgentStatusRequest,
};
use parking_lot::RwLock;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::Status;
use tracing::{debug, info, warn};

use centralino_core::conversation::{GetRecord, Release};
use centralino_core::dispatch::Dispatch;
use centralino_core::metrics as m;
use centralino_core::router::Router;
use centralino_core::store::records::State;

/// What the router knows of one agent.
#[derive(Debug, Clone)]
struct Seen {
    node: String,
    last: Availability,
    /// Since when the agent's node is gone.
    orphaned: Option<Instant>,
    /// Added to the versions the agent's node publishes: one for every "disconnected"
    /// this router published for the agent itself (its node gone), so that what the node
    /// publishes after it is back — the same versions as before — is not taken for stale.
    bump: u64,
}

/// [`AgentNodeLink`] over gRPC to the agent-nodes.
pub struct RemoteAgents {
    membership: Arc<Membership>,
    claims: Arc<crate::peer::Claims>,
    channels: Channels,
    agents: RwLock<HashMap<String, Seen>>,
}

impl RemoteAgents {
    /// Returns the link; agent-nodes are dialled over TLS with `tls` (the internal plane),
    /// plaintext without.
    /// A reservation goes only to the node holding the agent's login claim (`claims`).
    pub fn new(
        membership: Arc<Membership>,
        claims: Arc<crate::peer::Claims>,
        tls: Option<centralino_base::tls::ClientTls>,
    ) -> Arc<Self> {
        Arc::new(Self {
            membership,
            claims,
            channels: Channels::with_tls(tls),
            agents: RwLock::new(HashMap::new()),
        })
    }

    /// Returns a client of the node `agent_id` is logged in on.
    fn client(&self, agent_id: &str) -> Result<Option<AgentNodeInternalClient<Channel>>, Status> {
        Ok(self.node_client(agent_id)?.map(|(_, client)| client))
    }

    /// Returns the node `agent_id` is logged in on and a client of it.
    fn node_client(
        &self,
        agent_id: &str,
    ) -> Result<Option<(String, AgentNodeInternalClient<Channel>)>, Status> {
        let node = match self.agents.read().get(agent_id) {
            Some(seen) if seen.orphaned.is_none() => seen.node.clone(),
            _ => return Ok(None),
        };
        let Some(member) = self
            .membership
            .with_role(Role::AgentNode)
            .into_iter()
            .find(|m| m.id == node)
        else {
            return Ok(None);
        };
        Ok(Some((
            node,
            AgentNodeInternalClient::new(self.channels.get(&member.addr)?),
        )))
    }
}

#[async_trait]
impl AgentNodeLink for RemoteAgents {
    async fn reserve(&self, request: ReserveRequest) -> Result<ReserveOutcome, Status> {
        let Some((node, mut client)) = self.node_client(&request.agent_id)? else {
            return Ok(ReserveOutcome::Rejected(RejectReason::NotLoggedIn));
        };
        // The claim is the authority on where the agent is: an availability feed from a
        // node that lost it (paused or cut off past its lease) gets no reservation.
        if !self.claims.held_by(&request.agent_id, &node).await? {
            m::cluster_claim_refusal("reserve");
            warn!(agent_id = %request.agent_id, %node, "no reservation: that agent-node does not hold the agent's login claim");
            return Ok(ReserveOutcome::Rejected(RejectReason::NotLoggedIn));
        }
        let r = client.reserve(reserve_to_proto(request)).await?;
        Ok(outcome_from_proto(r.into_inner().result))
    }

    async fn cancel_reservation(&self, agent_id: &str, reservation_id: &str) -> Result<(), Status> {
        if let Some(mut client) = self.client(agent_id)? {
            client
                .cancel_reservation(CancelReservationRequest {
                    agent_id: agent_id.to_string(),
                    reservation_id: reservation_id.to_string(),
                })
                .await?;
        }
        Ok(())
    }

    async fn deliver(
        &self,
        agent_id: &str,
        conversation_id: &str,
        message: ChatMessage,
    ) -> Result<(), Status> {
        let mut client = self
            .client(agent_id)?
            .ok_or_else(|| Status::not_found("agent is not on any agent-node"))?;
        client
            .deliver(DeliverRequest {
                agent_id: agent_id.to_string(),
                conversation_id: conversation_id.to_string(),
                message: Some(message),
            })
            .await?;
        Ok(())
    }

    async fn customer_typing(
        &self,
        agent_id: &str,
        conversation_id: &str,
        typing: bool,
    ) -> Result<(), Status> {
        let mut client = self
            .client(agent_id)?
            .ok_or_else(|| Status::not_found("agent is not on any agent-node"))?;
        client
            .customer_typing(CustomerTypingRequest {
                agent_id: agent_id.to_string(),
                conversation_id: conversation_id.to_string(),
                typing,
            })
            .await?;
        Ok(())
    }

    async fn conversation_ended(
        &self,
        agent_id: &str,
        conversation_id: &str,
        outcome: ConversationOutcome,
    ) -> Result<(), Status> {
        if let Some(mut client) = self.client(agent_id)? {
            client
                .conversation_ended(ConversationEndedRequest {
                    agent_id: agent_id.to_string(),
                    conversation_id: conversation_id.to_string(),
                    outcome: outcome as i32,
                })
                .await?;
        }
        Ok(())
    }
}

/// The operators' view of the agents in a cluster ([`AgentAdmin`]): every agent as the
/// agent-nodes (the capacity authorities) last published them on their availability
/// streams, and a supervisor's status change carried to the agent-node the agent is logged
/// in on, whichever router the Admin call reached.
pub struct ClusterAgentAdmin {
    agents: Arc<RemoteAgents>,
    directory: Directory,
}

impl ClusterAgentAdmin {
    /// Returns the view over `agents`, for the agents of the live `directory`.
    pub fn new(agents: Arc<RemoteAgents>, directory: Directory) -> Arc<Self> {
        Arc::new(Self { agents, directory })
    }
}

#[async_trait]
impl AgentAdmin for ClusterAgentAdmin {
    async fn availability(&self) -> Vec<Availability> {
        let mut all: Vec<Availability> = self
            .agents
            .agents
            .read()
            .values()
            .map(|s| s.last.clone())
            .collect();
        all.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        all
    }

    fn accounts(&self) -> Vec<AgentConfig> {
        self.directory
            .snapshot()
            .agents
            .values()
            .map(|a| (*a.config).clone())
            .collect()
    }

    async fn set_status(&self, agent_id: &str, status: AgentStatus) -> Result<(), Status> {
        if !self.directory.snapshot().agents.contains_key(agent_id) {
            return Err(Status::not_found(format!("unknown agent {agent_id:?}")));
        }
        let mut client = self.agents.client(agent_id)?.ok_or_else(|| {
            Status::failed_precondition("agent is not logged in on any agent-node")
        })?;
        m::cluster_forwarded();
        client
            .set_agent_status(SetAgentStatusRequest {
                agent_id: agent_id.to_string(),
                status: status as i32,
            })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Cancelled | tonic::Code::Unknown | tonic::Code::DeadlineExceeded => {
                    Status::unavailable(format!(
                        "the agent's agent-node did not answer ({}); try again",
                        s.message()
                    ))
                }
                _ => s,
            })?;
        Ok(())
    }
}

/// Follows the availability stream of every agent-node, handles agent-nodes that go away,
/// and keeps the member gauges; runs until `stop` turns true.
pub async fn run_feed(
    agents: Arc<RemoteAgents>,
    dispatch: Arc<Dispatch>,
    router: Arc<Router>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut members = agents.membership.members();
    let mut streams: HashMap<String, (String, JoinHandle<()>)> = HashMap::new();
    let grace = router.shared.clock.wall(Duration::from_secs(
        router.shared.config.desk.disconnect_grace_secs,
    ));
    loop {
        let nodes: HashMap<String, String> = agents
            .membership
            .with_role(Role::AgentNode)
            .into_iter()
            .map(|m| (m.id, m.addr))
            .collect();
        let routers = agents.membership.with_role(Role::Router).len();
        m::cluster_members(routers, nodes.len());
        // Nodes gone (or moved to another address): stop their streams, orphan their agents.
        let gone: Vec<String> = streams
            .iter()
            .filter(|(id, (addr, _))| nodes.get(*id) != Some(addr))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some((_, task)) = streams.remove(&id) {
                task.abort();
            }
            orphan(&agents, &dispatch, &id);
        }
        for (id, addr) in &nodes {
            if !streams.contains_key(id) {
                let task = tokio::spawn(follow(
                    agents.clone(),
                    dispatch.clone(),
                    id.clone(),
                    addr.clone(),
                ));
                streams.insert(id.clone(), (addr.clone(), task));
            }
        }
        release_orphans(&agents, &router, grace).await;
        tokio::select! {
            _ = members.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    for (_, (_, task)) in streams {
        task.abort();
    }
}

/// Streams one agent-node's availability into the queues, reconnecting after errors.
async fn follow(agents: Arc<RemoteAgents>, dispatch: Arc<Dispatch>, node: String, addr: String) {
    loop {
        let stream = match agents.channels.get(&addr) {
            Ok(channel) => AgentNodeInternalClient::new(channel)
                .watch_availability(Empty {})
                .await
                .map(tonic::Response::into_inner),
            Err(e) => Err(e),
        };
        match stream {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(update)) => {
                        let mut a = availability_from_proto(&update);
                        {
                            let mut seen = agents.agents.write();
                            let bump = seen.get(&a.agent_id).map_or(0, |s| s.bump);
                            a.version += bump;
                            // An agent offline here but live on another node (a login
                            // refused here, a node that forgets her) stays where she is.
                            let elsewhere = seen
                                .get(&a.agent_id)
                                .is_some_and(|s| s.node != node && s.orphaned.is_none());
                            if elsewhere && a.status == AgentStatus::Offline {
                                continue;
                            }
                            // The node is the one this stream comes from, whatever the
                            // update says.
                            seen.insert(
                                a.agent_id.clone(),
                                Seen {
                                    node: node.clone(),
                                    last: a.clone(),
                                    orphaned: None,
                                    bump,
                                },
                            );
                        }
                        dispatch.availability(a);
                    }
                    Ok(None) => break,
                    Err(status) => {
                        debug!(%node, %status, "availability stream ended");
                        break;
                    }
                }
            },
            Err(status) => debug!(%node, %status, "cannot watch an agent-node's availability"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The agents of a node that went away count as disconnected from now on.
fn orphan(agents: &RemoteAgents, dispatch: &Dispatch, node: &str) {
    let mut updates = Vec::new();
    {
        let mut seen = agents.agents.write();
        for s in seen.values_mut() {
            if s.node == node && s.orphaned.is_none() {
                s.orphaned = Some(Instant::now());
                s.bump += 1;
                s.last.version += 1;
                s.last.status = AgentStatus::Disconnected;
                updates.push(s.last.clone());
            }
        }
    }
    info!(%node, agents = updates.len(), "cluster: agent-node gone, its agents are disconnected");
    for update in updates {
        dispatch.availability(update);
    }
}

/// Returns the conversations of agents whose node is gone for longer than the grace to
/// their queues (they did not log in anywhere else).
async fn release_orphans(agents: &RemoteAgents, router: &Arc<Router>, grace: Duration) {
    let expired: Vec<String> = agents
        .agents
        .read()
        .iter()
        .filter(|(_, s)| s.orphaned.is_some_and(|t| t.elapsed() >= grace))
        .map(|(id, _)| id.clone())
        .collect();
    if expired.is_empty() {
        return;
    }
    for id in &expired {
        if let Some(s) = agents.agents.write().get_mut(id) {
            s.orphaned = None;
            s.node = String::new();
        }
    }
    let mut released = 0;
    for actor in router.all_conversations() {
        let Ok(rec) = actor.send(GetRecord).await else {
            continue;
        };
        let Some(agent) = rec
            .agent_id
            .filter(|a| rec.state == State::Assigned && expired.contains(a))
        else {
            continue;
        };
        match actor
            .send(Release {
                agent_id: agent.clone(),
                reason: "agent-node lost".to_string(),
            })
            .await
        {
            Ok(Ok(())) => released += 1,
            Ok(Err(status)) => warn!(%agent, %status, "cannot release a conversation"),
            Err(e) => warn!(%agent, error = %e, "cannot release a conversation"),
        }
    }
    info!(
        agents = expired.len(),
        released, "cluster: disconnect grace over for agents of a lost agent-node"
    );
}
