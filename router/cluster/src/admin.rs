//! The operators' `Admin` service of a clustered router: one view of the whole cluster,
//! whichever router a call reaches.
//!
//! - `GetSnapshot` asks every other live router (membership lists them) for its own part
//!   over the internal plane, within [`PEER_DEADLINE`], and merges: each department's queue
//!   as its owner reports it, counters summed, agents as the agent-nodes publish them. A
//!   router that does not answer in time is named in `routers_missing`; the call still
//!   succeeds.
//! - `ForceTransfer`, `GetTranscript` and `WatchConversation` of a conversation in another
//!   router's partition go to that owner; `SetAgentStatus` goes to the agent-node the agent
//!   is logged in on ([`crate::agents::ClusterAgentAdmin`]).
//! - The operator's token is checked here, at the entry router, before anything is
//!   forwarded. The owner serves the forwarded call on its internal listener, which only
//!   routers reach (mutual TLS, [`AdminApi::for_peers`]); a forwarding header on the public
//!   port means nothing.
//!
//! - `ListConversations`, `GetTranscript` of a closed conversation and `ExportCustomer`
//!   read the record every router shares (PostgreSQL): any router sees every router's
//!   closed conversations, also after their router died.
//! - `EraseCustomer` is forwarded to the owners of the customer's live conversations (each
//!   closes and retires its own), then erased in the record here.
//!
//! The integration event stream answers for this router.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use centralino_core::ingress::AdminApi;
use centralino_core::metrics as m;
use centralino_core::router::Router;
use centralino_core::shared::Owner;
use centralino_core::store::records::partition_of;
use centralino_membership::membership::{Membership, Role};
use centralino_proto::v1::admin_client::AdminClient;
use centralino_proto::v1::admin_server::Admin;
use centralino_proto::v1::{
    ConversationEvent, Counters, EraseCustomerRequest, EraseCustomerResponse,
    ExportCustomerRequest, ExportCustomerResponse, ForceTransferRequest, ForceTransferResponse,
    GetSnapshotRequest, GetTranscriptRequest, ListConversationsRequest, ListConversationsResponse,
    QueueSnapshot, ServiceToday, SetAgentStatusRequest, SetAgentStatusResponse,
    SetCustomerTierRequest, SetCustomerTierResponse, Snapshot, StreamIntegrationEventsRequest,
    Transcript, WatchConversationRequest,
};
use centralino_proto::v1::{
    CreateOperatorTokenRequest, CreateOperatorTokenResponse, ListOperatorTokensRequest,
    ListOperatorTokensResponse, RevokeOperatorTokenRequest, RevokeOperatorTokenResponse,
};
use centralino_proto::v1::{
    DirectoryEntry, GetDirectoryEntryRequest, ListDirectoryAuditRequest,
    ListDirectoryAuditResponse, ListDirectoryEntriesRequest, ListDirectoryEntriesResponse,
    PutDirectoryEntryRequest, SetDirectoryEntryDisabledRequest,
};
use futures::Stream;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tracing::{debug, warn};

use crate::partitions::ClusterView;

/// How long a snapshot waits for another router's part before naming it missing.
pub const PEER_DEADLINE: Duration = Duration::from_secs(1);
/// Deadline of an Admin call forwarded to the owner of a conversation.
const FORWARD_DEADLINE: Duration = Duration::from_secs(10);

type EventStream = std::pin::Pin<Box<dyn Stream<Item = Result<ConversationEvent, Status>> + Send>>;

/// The `Admin` service of a clustered router's public listener (see the module comment).
pub struct ClusterAdminApi {
    inner: AdminApi,
    router: Arc<Router>,
    view: Arc<ClusterView>,
    membership: Arc<Membership>,
    node_id: String,
}

/// Where a call about a conversation goes.
enum Route {
    Here,
    There(AdminClient<Channel>),
}

impl ClusterAdminApi {
    /// Returns the service: `inner` answers for this router (`node_id`); other routers are
    /// found in `membership` and reached through `view`'s channels (the internal plane).
    pub fn new(
        inner: AdminApi,
        router: Arc<Router>,
        view: Arc<ClusterView>,
        membership: Arc<Membership>,
        node_id: String,
    ) -> Self {
        Self {
            inner,
            router,
            view,
            membership,
            node_id,
        }
    }

    /// Returns where calls about `conversation_id` are answered: here when the actor lives
    /// here or the id is bad (the local service gives the precise error), else the owner of
    /// its partition; UNAVAILABLE while the partition has no owner.
    fn route(&self, conversation_id: &str) -> Result<Route, Status> {
        if conversation_id.is_empty()
            || conversation_id.len() > 256
            || self.router.conversation(conversation_id).is_some()
        {
            return Ok(Route::Here);
        }
        match self.router.shared.owner(partition_of(conversation_id)) {
            Owner::Local => Ok(Route::Here),
            Owner::Remote(addr) => {
                m::cluster_forwarded();
                Ok(Route::There(AdminClient::new(self.view.channel(&addr)?)))
            }
            Owner::Unknown => Err(Status::unavailable(
                "the conversation's partition is changing owner, retry shortly",
            )),
        }
    }

    /// Asks the router `id` at `addr` for its own part of the snapshot; None when it does
    /// not answer within [`PEER_DEADLINE`].
    async fn peer_snapshot(
        &self,
        id: &str,
        addr: &str,
        authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ) -> Option<Snapshot> {
        let mut client = AdminClient::new(self.view.channel(addr).ok()?);
        let mut request = Request::new(GetSnapshotRequest {});
        request.set_timeout(PEER_DEADLINE);
        if let Some(value) = authorization {
            request.metadata_mut().insert("authorization", value);
        }
        match tokio::time::timeout(PEER_DEADLINE, client.get_snapshot(request)).await {
            Ok(Ok(snapshot)) => Some(snapshot.into_inner()),
            Ok(Err(status)) => {
                debug!(router = id, %status, "snapshot: a router refused its part");
                None
            }
            Err(_) => {
                debug!(router = id, "snapshot: a router did not answer in time");
                None
            }
        }
    }
}

/// Copies the operator's `authorization` into a forwarded call (the owner checks it again
/// when its internal plane is not mutual TLS) and sets the forwarding deadline.
fn forwarded<T>(request: Request<T>) -> Request<T> {
    let authorization = request.metadata().get("authorization").cloned();
    let mut out = Request::new(request.into_inner());
    if let Some(value) = authorization {
        out.metadata_mut().insert("authorization", value);
    }
    out.set_timeout(FORWARD_DEADLINE);
    out
}

/// A forwarded call the owner did not answer tells the client to try again.
fn from_owner(status: Status) -> Status {
    match status.code() {
        Code::Cancelled | Code::Unknown | Code::DeadlineExceeded => Status::unavailable(format!(
            "the owner of this conversation did not answer ({}); try again",
            status.message()
        )),
        _ => status,
    }
}

/// Adds every counter of `b` to `a`.
/// Adds what one router's erasure did to the total (each row is deleted once, by whichever
/// router's erasure reaches it first).
fn add_erased(total: &mut EraseCustomerResponse, part: &EraseCustomerResponse) {
    total.live_closed += part.live_closed;
    total.conversations += part.conversations;
    total.profiles += part.profiles;
    total.events += part.events;
}

fn add_counters(a: &mut Counters, b: &Counters) {
    a.conversations_started += b.conversations_started;
    a.conversations_completed += b.conversations_completed;
    a.conversations_abandoned += b.conversations_abandoned;
    a.conversations_open += b.conversations_open;
    a.sticky_hits += b.sticky_hits;
    a.sticky_misses += b.sticky_misses;
    a.sticky_timeouts += b.sticky_timeouts;
    a.offers += b.offers;
    a.offers_accepted += b.offers_accepted;
    a.offers_declined += b.offers_declined;
    a.offers_timed_out += b.offers_timed_out;
    a.csat_good += b.csat_good;
    a.csat_bad += b.csat_bad;
    a.messages += b.messages;
    a.conversations_offline += b.conversations_offline;
    a.conversations_escalated += b.conversations_escalated;
    a.transfers += b.transfers;
    a.language_handovers += b.language_handovers;
    a.recontacts += b.recontacts;
}

/// Who reported a part of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reporter {
    /// This router.
    Here,
    /// The router at this internal address.
    At(String),
}

impl Reporter {
    /// Returns whether this reporter is `owner`.
    fn is(&self, owner: &Owner) -> bool {
        match (self, owner) {
            (Reporter::Here, Owner::Local) => true,
            (Reporter::At(addr), Owner::Remote(owner)) => addr == owner,
            _ => false,
        }
    }
}

/// Merges the routers' service of today by department and language: the raw counts summed
/// (each conversation is counted by the one router it was answered or abandoned on), who
/// waits now as the department's owner reports it (the first report when no reporter owns
/// it), the derived ASA and service level computed again from the sums. Only the latest
/// day counts: around midnight a router still on yesterday is left out.
fn merge_service(
    parts: &[(Reporter, Snapshot)],
    owner_of: impl Fn(&str) -> Owner,
) -> Vec<ServiceToday> {
    let day = parts
        .iter()
        .flat_map(|(_, s)| s.service.iter().map(|t| t.day.as_str()))
        .max()
        .unwrap_or("")
        .to_string();
    // (department, language) -> (merged, whether its waiting came from the owner, or
    // whether some report gave it at all).
    let mut merged: BTreeMap<(String, String), (ServiceToday, Option<bool>)> = BTreeMap::new();
    for (reporter, snapshot) in parts {
        for t in snapshot.service.iter().filter(|t| t.day == day) {
            let by_owner = reporter.is(&owner_of(&t.department));
            let (m, waiting_from) = merged
                .entry((t.department.clone(), t.language.clone()))
                .or_insert_with(|| {
                    (
                        ServiceToday {
                            department: t.department.clone(),
                            language: t.language.clone(),
                            target_seconds: t.target_seconds,
                            day: day.clone(),
                            ..Default::default()
                        },
                        None,
                    )
                });
            m.answered += t.answered;
            m.answered_in_target += t.answered_in_target;
            m.abandoned += t.abandoned;
            m.wait_ms_total += t.wait_ms_total;
            m.target_seconds = m.target_seconds.max(t.target_seconds);
            let take = match *waiting_from {
                None => true,
                Some(from_owner) => by_owner && !from_owner,
            };
            if take {
                m.waiting = t.waiting;
                m.oldest_wait_seconds = t.oldest_wait_seconds;
                *waiting_from = Some(by_owner);
            }
        }
    }
    merged
        .into_values()
        .map(|(mut m, _)| {
            centralino_core::today::derive(&mut m);
            m
        })
        .collect()
}

/// Merges the parts of a snapshot: for each department the queue its owner (as
/// `owner_of` tells) reports, or the first report when no reporter owns it (as during a
/// hand-over); counters summed.
fn merge(
    parts: Vec<(Reporter, Snapshot)>,
    owner_of: impl Fn(&str) -> Owner,
) -> (Vec<QueueSnapshot>, Counters) {
    let mut queues: BTreeMap<String, (bool, QueueSnapshot)> = BTreeMap::new();
    let mut counters = Counters::default();
    for (reporter, snapshot) in parts {
        if let Some(c) = &snapshot.counters {
            add_counters(&mut counters, c);
        }
        for q in snapshot.queues {
            let by_owner = reporter.is(&owner_of(&q.department));
            let keep = matches!(queues.get(&q.department), Some((true, _)))
                || (queues.contains_key(&q.department) && !by_owner);
            if !keep {
                queues.insert(q.department.clone(), (by_owner, q));
            }
        }
    }
    (queues.into_values().map(|(_, q)| q).collect(), counters)
}

#[tonic::async_trait]
impl Admin for ClusterAdminApi {
    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        self.inner.check_scope(&request, "GetSnapshot").await?;
        let authorization = request.metadata().get("authorization").cloned();
        let peers: Vec<(String, String)> = self
            .membership
            .with_role(Role::Router)
            .into_iter()
            .filter(|m| m.id != self.node_id)
            .map(|m| (m.id, m.addr))
            .collect();
        let asked = futures::future::join_all(peers.iter().map(|(id, addr)| {
            let authorization = authorization.clone();
            async move { (id, addr, self.peer_snapshot(id, addr, authorization).await) }
        }));
        let (local, answers) = tokio::join!(self.inner.get_snapshot(request), asked);
        let mut local = local?.into_inner();
        let mut routers = vec![self.node_id.clone()];
        let mut missing = Vec::new();
        let mut parts = vec![(
            Reporter::Here,
            Snapshot {
                queues: std::mem::take(&mut local.queues),
                counters: local.counters.take(),
                service: std::mem::take(&mut local.service),
                ..Default::default()
            },
        )];
        for (id, addr, answer) in answers {
            match answer {
                Some(snapshot) => {
                    routers.push(id.clone());
                    parts.push((Reporter::At(addr.clone()), snapshot));
                }
                None => missing.push(id.clone()),
            }
        }
        if !missing.is_empty() {
            warn!(?missing, "snapshot: routers missing from the cluster view");
            m::cluster_snapshot_missing(missing.len());
        }
        let owner_of = |department: &str| self.router.shared.owner(partition_of(department));
        let service = merge_service(&parts, owner_of);
        let (queues, counters) = merge(parts, owner_of);
        routers.sort();
        missing.sort();
        Ok(Response::new(Snapshot {
            queues,
            agents: local.agents,
            counters: Some(counters),
            now_unix_ms: local.now_unix_ms,
            routers,
            routers_missing: missing,
            service,
        }))
    }

    async fn list_conversations(
        &self,
        request: Request<ListConversationsRequest>,
    ) -> Result<Response<ListConversationsResponse>, Status> {
        self.inner.list_conversations(request).await
    }

    // The directory is in the record every router shares: answered here, never forwarded.

    async fn put_directory_entry(
        &self,
        request: Request<PutDirectoryEntryRequest>,
    ) -> Result<Response<DirectoryEntry>, Status> {
        self.inner.put_directory_entry(request).await
    }

    async fn get_directory_entry(
        &self,
        request: Request<GetDirectoryEntryRequest>,
    ) -> Result<Response<DirectoryEntry>, Status> {
        self.inner.get_directory_entry(request).await
    }

    async fn list_directory_entries(
        &self,
        request: Request<ListDirectoryEntriesRequest>,
    ) -> Result<Response<ListDirectoryEntriesResponse>, Status> {
        self.inner.list_directory_entries(request).await
    }

    async fn set_directory_entry_disabled(
        &self,
        request: Request<SetDirectoryEntryDisabledRequest>,
    ) -> Result<Response<DirectoryEntry>, Status> {
        self.inner.set_directory_entry_disabled(request).await
    }

    async fn list_directory_audit(
        &self,
        request: Request<ListDirectoryAuditRequest>,
    ) -> Result<Response<ListDirectoryAuditResponse>, Status> {
        self.inner.list_directory_audit(request).await
    }

    async fn create_operator_token(
        &self,
        request: Request<CreateOperatorTokenRequest>,
    ) -> Result<Response<CreateOperatorTokenResponse>, Status> {
        self.inner.create_operator_token(request).await
    }

    async fn list_operator_tokens(
        &self,
        request: Request<ListOperatorTokensRequest>,
    ) -> Result<Response<ListOperatorTokensResponse>, Status> {
        self.inner.list_operator_tokens(request).await
    }

    async fn revoke_operator_token(
        &self,
        request: Request<RevokeOperatorTokenRequest>,
    ) -> Result<Response<RevokeOperatorTokenResponse>, Status> {
        self.inner.revoke_operator_token(request).await
    }

    async fn get_transcript(
        &self,
        request: Request<GetTranscriptRequest>,
    ) -> Result<Response<Transcript>, Status> {
        self.inner.check_scope(&request, "GetTranscript").await?;
        let id = request.get_ref().conversation_id.clone();
        let route = match self.route(&id) {
            Ok(route) => route,
            // The partition is changing owner (its router died): a closed conversation is
            // in the record all the same.
            Err(unavailable) => {
                return match self.inner.get_transcript(request).await {
                    Err(status) if status.code() == Code::NotFound => Err(unavailable),
                    other => other,
                }
            }
        };
        match route {
            Route::Here => self.inner.get_transcript(request).await,
            Route::There(mut client) => {
                let copy = Request::from_parts(
                    request.metadata().clone(),
                    Default::default(),
                    request.get_ref().clone(),
                );
                let out = forwarded(copy);
                match client.get_transcript(out).await {
                    // Not live there: it may be archived here, by an earlier owner.
                    Err(status) if status.code() == Code::NotFound => {
                        self.inner.get_transcript(request).await
                    }
                    other => other.map_err(from_owner),
                }
            }
        }
    }

    type WatchConversationStream = EventStream;

    async fn watch_conversation(
        &self,
        request: Request<WatchConversationRequest>,
    ) -> Result<Response<Self::WatchConversationStream>, Status> {
        self.inner
            .check_scope(&request, "WatchConversation")
            .await?;
        let id = request.get_ref().conversation_id.clone();
        match self.route(&id)? {
            Route::Here => self.inner.watch_conversation(request).await,
            Route::There(mut client) => {
                let mut out = forwarded(request);
                // A stream runs as long as the operator watches.
                out.metadata_mut().remove("grpc-timeout");
                let stream = client
                    .watch_conversation(out)
                    .await
                    .map_err(from_owner)?
                    .into_inner();
                Ok(Response::new(Box::pin(stream) as EventStream))
            }
        }
    }

    async fn force_transfer(
        &self,
        request: Request<ForceTransferRequest>,
    ) -> Result<Response<ForceTransferResponse>, Status> {
        self.inner.check_scope(&request, "ForceTransfer").await?;
        let id = request.get_ref().conversation_id.clone();
        match self.route(&id)? {
            Route::Here => self.inner.force_transfer(request).await,
            Route::There(mut client) => client
                .force_transfer(forwarded(request))
                .await
                .map_err(from_owner),
        }
    }

    type StreamIntegrationEventsStream = <AdminApi as Admin>::StreamIntegrationEventsStream;

    async fn stream_integration_events(
        &self,
        request: Request<StreamIntegrationEventsRequest>,
    ) -> Result<Response<Self::StreamIntegrationEventsStream>, Status> {
        self.inner.stream_integration_events(request).await
    }

    async fn set_customer_tier(
        &self,
        request: Request<SetCustomerTierRequest>,
    ) -> Result<Response<SetCustomerTierResponse>, Status> {
        self.inner.set_customer_tier(request).await
    }

    async fn export_customer(
        &self,
        request: Request<ExportCustomerRequest>,
    ) -> Result<Response<ExportCustomerResponse>, Status> {
        // The record and the live store are the cluster's: answered here.
        self.inner.export_customer(request).await
    }

    async fn erase_customer(
        &self,
        request: Request<EraseCustomerRequest>,
    ) -> Result<Response<EraseCustomerResponse>, Status> {
        self.inner.check_scope(&request, "EraseCustomer").await?;
        let customer_id = request.get_ref().customer_id.clone();
        let mut owners = std::collections::BTreeSet::new();
        if !customer_id.is_empty() && customer_id.len() <= 256 {
            for rec in self.inner.live_conversations_of(&customer_id).await? {
                match self.router.shared.owner(partition_of(&rec.id)) {
                    Owner::Local => {}
                    Owner::Remote(addr) => {
                        owners.insert(addr);
                    }
                    Owner::Unknown => {
                        return Err(Status::unavailable(
                            "a partition of the customer's conversations is changing owner, retry shortly",
                        ))
                    }
                }
            }
        }
        // Each owner closes and retires its own live conversations (and erases what the
        // record holds by then); the erasure here comes last and catches the rest.
        let mut total = EraseCustomerResponse::default();
        for addr in owners {
            m::cluster_forwarded();
            let mut client = AdminClient::new(self.view.channel(&addr)?);
            let copy = Request::from_parts(
                request.metadata().clone(),
                Default::default(),
                request.get_ref().clone(),
            );
            let part = client
                .erase_customer(forwarded(copy))
                .await
                .map_err(from_owner)?
                .into_inner();
            add_erased(&mut total, &part);
        }
        let here = self.inner.erase_customer(request).await?.into_inner();
        add_erased(&mut total, &here);
        Ok(Response::new(total))
    }

    async fn set_agent_status(
        &self,
        request: Request<SetAgentStatusRequest>,
    ) -> Result<Response<SetAgentStatusResponse>, Status> {
        // The inner service's agents are the cluster's: the change goes to the agent-node
        // the agent is logged in on.
        self.inner.set_agent_status(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(department: &str, depth: u32) -> QueueSnapshot {
        QueueSnapshot {
            department: department.to_string(),
            depth,
            ..Default::default()
        }
    }

    fn part(reporter: Reporter, queues: Vec<QueueSnapshot>, started: u64) -> (Reporter, Snapshot) {
        let snapshot = Snapshot {
            queues,
            counters: Some(Counters {
                conversations_started: started,
                transfers: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        (reporter, snapshot)
    }

    fn owner_of(department: &str) -> Owner {
        match department {
            "support" => Owner::Local,
            "sales" => Owner::Remote("10.0.0.2:7001".into()),
            _ => Owner::Unknown,
        }
    }

    #[test]
    fn merge_sums_counters_and_takes_each_queue_from_its_owner() {
        let (queues, counters) = merge(
            vec![
                // A stale queue of "sales" on a router that no longer owns it.
                part(
                    Reporter::Here,
                    vec![queue("support", 2), queue("sales", 9)],
                    3,
                ),
                part(
                    Reporter::At("10.0.0.2:7001".into()),
                    vec![queue("sales", 1), queue("support", 7)],
                    4,
                ),
                // Nobody owns "billing" right now: the first report stands.
                part(
                    Reporter::At("10.0.0.3:7001".into()),
                    vec![queue("billing", 5)],
                    0,
                ),
                part(Reporter::Here, vec![queue("billing", 6)], 0),
            ],
            owner_of,
        );
        let got: Vec<(String, u32)> = queues
            .into_iter()
            .map(|q| (q.department, q.depth))
            .collect();
        assert_eq!(
            got,
            vec![
                ("billing".to_string(), 5),
                ("sales".to_string(), 1),
                ("support".to_string(), 2)
            ]
        );
        assert_eq!(counters.conversations_started, 7);
        assert_eq!(counters.transfers, 4);
    }

    fn service(
        department: &str,
        language: &str,
        day: &str,
        raw: [u64; 4],
        waiting: u32,
        oldest: u32,
    ) -> ServiceToday {
        ServiceToday {
            department: department.to_string(),
            language: language.to_string(),
            waiting,
            oldest_wait_seconds: oldest,
            answered: raw[0],
            answered_in_target: raw[1],
            abandoned: raw[2],
            wait_ms_total: raw[3],
            target_seconds: 20,
            day: day.to_string(),
            ..Default::default()
        }
    }

    fn service_part(reporter: Reporter, service: Vec<ServiceToday>) -> (Reporter, Snapshot) {
        let snapshot = Snapshot {
            service,
            ..Default::default()
        };
        (reporter, snapshot)
    }

    #[test]
    fn merge_service_sums_the_raw_counts_and_derives_again() {
        let today = "2026-03-11";
        let got = merge_service(
            &[
                // This router owns "support"; "sales" is the other router's.
                service_part(
                    Reporter::Here,
                    vec![
                        service("sales", "it", today, [2, 1, 0, 30_000], 9, 99),
                        service("support", "en", today, [1, 1, 1, 4_000], 3, 12),
                    ],
                ),
                service_part(
                    Reporter::At("10.0.0.2:7001".into()),
                    vec![
                        service("sales", "it", today, [2, 2, 2, 10_000], 1, 15),
                        service("support", "en", today, [0, 0, 0, 0], 0, 0),
                    ],
                ),
                // A router still on yesterday: left out.
                service_part(
                    Reporter::At("10.0.0.3:7001".into()),
                    vec![service("sales", "it", "2026-03-10", [50, 50, 0, 1], 0, 0)],
                ),
            ],
            owner_of,
        );
        assert_eq!(got.len(), 2);
        let sales = &got[0];
        assert_eq!(
            (sales.department.as_str(), sales.language.as_str()),
            ("sales", "it")
        );
        assert_eq!(
            (
                sales.answered,
                sales.answered_in_target,
                sales.abandoned,
                sales.wait_ms_total
            ),
            (4, 3, 2, 40_000)
        );
        // Who waits: as the owner reports it.
        assert_eq!((sales.waiting, sales.oldest_wait_seconds), (1, 15));
        assert_eq!(sales.asa_seconds, 10.0);
        assert_eq!(sales.service_level, 0.5);
        assert_eq!((sales.day.as_str(), sales.target_seconds), (today, 20));
        let support = &got[1];
        assert_eq!((support.waiting, support.oldest_wait_seconds), (3, 12));
        assert_eq!((support.answered, support.abandoned), (1, 1));
        assert_eq!((support.asa_seconds, support.service_level), (4.0, 0.5));
    }
}
