//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of the browser API, generated once at
//! start-up from [`ROUTES`] (method, path, auth, which message goes in and out) and the
//! public file descriptor set (`centralino_proto::PUBLIC_FILE_DESCRIPTOR_SET`), so the
//! schemas are the protos' own and cannot drift from them.
//!
//! Each `centralino.v1` message is one schema under `components/schemas`, in the proto3 JSON
//! mapping the routes speak (pbjson): properties by their JSON name, 64-bit integers as
//! decimal strings, enums by value name, bytes as base64, nothing required. Messages a client
//! sends (and all they contain) refuse unknown properties, as the server does. A route whose
//! message is not in the descriptor set is left out of the document (and logged), never a
//! panic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};
use serde_json::{json, Map, Value};
use tonic::Status;

use crate::status::HttpError;

/// Path of the document.
pub const PATH: &str = "/v1/openapi.json";

/// The proto package every message of the API lives in.
const PACKAGE: &str = "centralino.v1";

/// Who may call a route: the bearer token it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone (starting a conversation, logging in).
    None,
    /// The conversation token `StartConversation` answered (also accepted in the body's
    /// `token`).
    Conversation,
    /// The conversation token, in `Authorization` only (event streams have no body).
    ConversationHeader,
    /// An operator token with the scope the Admin call needs.
    Operator,
    /// The desk session token `POST /v1/agent/sessions` answered.
    DeskSession,
}

/// What a route answers on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A `centralino.v1` message (full name) as JSON.
    Message(&'static str),
    /// A schema of this document that is not a proto message (component name).
    Schema(&'static str),
    /// Server-Sent Events, each `data:` one message (full name).
    Events(&'static str),
    /// No body.
    Empty,
}

/// One route of the browser API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method, lowercase (`post`).
    pub method: &'static str,
    /// Path with `{param}` placeholders.
    pub path: &'static str,
    /// The path parameters, with what each is.
    pub params: &'static [(&'static str, &'static str)],
    /// The OpenAPI operation id (unique).
    pub id: &'static str,
    /// One line about what the route does.
    pub summary: &'static str,
    /// The group it is listed under (`customer`, `agent desk`, `admin`, `meta`).
    pub tag: &'static str,
    /// The gRPC method the route calls (`centralino.v1.Admin/GetSnapshot`), if it is one.
    pub rpc: Option<&'static str>,
    /// The request body's message (full name), if the route takes one.
    pub request: Option<&'static str>,
    /// The answer on success.
    pub answer: Answer,
    /// The success status.
    pub status: u16,
    /// The token it needs.
    pub auth: Auth,
    /// Whether it resumes from `Last-Event-ID` / `?after=`.
    pub resumable: bool,
}

const CONVERSATION_ID: &[(&str, &str)] = &[(
    "id",
    "The conversation id (`conversationId` of StartConversationResponse).",
)];
const SESSION_ID: &[(&str, &str)] = &[(
    "sid",
    "The desk session id (`sessionId` of POST /v1/agent/sessions).",
)];

/// A customer call about one conversation (`POST /v1/conversations/{id}/...`).
const fn conversation(
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    rpc: &'static str,
    request: &'static str,
    response: &'static str,
) -> Route {
    Route {
        method: "post",
        path,
        params: CONVERSATION_ID,
        id,
        summary,
        tag: "customer",
        rpc: Some(rpc),
        request: Some(request),
        answer: Answer::Message(response),
        status: 200,
        auth: Auth::Conversation,
        resumable: false,
    }
}

/// A unary Admin call (`POST /v1/admin/{method}`).
const fn admin(
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    rpc: &'static str,
    request: &'static str,
    response: &'static str,
) -> Route {
    Route {
        method: "post",
        path,
        params: &[],
        id,
        summary,
        tag: "admin",
        rpc: Some(rpc),
        request: Some(request),
        answer: Answer::Message(response),
        status: 200,
        auth: Auth::Operator,
        resumable: false,
    }
}

/// Every route of the browser API (customer.rs, admin.rs, desk.rs and this module's own).
pub const ROUTES: &[Route] = &[
    // Customer.
    Route {
        method: "post",
        path: "/v1/conversations",
        params: &[],
        id: "startConversation",
        summary: "Starts a conversation; the answer's token authorizes the other customer calls.",
        tag: "customer",
        rpc: Some("centralino.v1.ConversationService/StartConversation"),
        request: Some("centralino.v1.StartConversationRequest"),
        answer: Answer::Message("centralino.v1.StartConversationResponse"),
        status: 200,
        auth: Auth::None,
        resumable: false,
    },
    Route {
        method: "get",
        path: "/v1/conversations/{id}/events",
        params: CONVERSATION_ID,
        id: "streamConversationEvents",
        summary: "The conversation's events as Server-Sent Events; ends after `closed`.",
        tag: "customer",
        rpc: Some("centralino.v1.ConversationService/StreamEvents"),
        request: None,
        answer: Answer::Events("centralino.v1.ConversationEvent"),
        status: 200,
        auth: Auth::ConversationHeader,
        resumable: true,
    },
    conversation(
        "/v1/conversations/{id}/messages",
        "sendMessage",
        "Sends the customer's message (a retry with the same messageId is not delivered twice).",
        "centralino.v1.ConversationService/SendMessage",
        "centralino.v1.SendMessageRequest",
        "centralino.v1.SendMessageResponse",
    ),
    conversation(
        "/v1/conversations/{id}/typing",
        "sendTyping",
        "Tells the agent whether the customer is typing.",
        "centralino.v1.ConversationService/SendTyping",
        "centralino.v1.SendTypingRequest",
        "centralino.v1.SendTypingResponse",
    ),
    conversation(
        "/v1/conversations/{id}/rating",
        "rateConversation",
        "Rates the conversation after it closed.",
        "centralino.v1.ConversationService/RateConversation",
        "centralino.v1.RateConversationRequest",
        "centralino.v1.RateConversationResponse",
    ),
    conversation(
        "/v1/conversations/{id}/close",
        "closeConversation",
        "Closes the conversation.",
        "centralino.v1.ConversationService/CloseConversation",
        "centralino.v1.CloseConversationRequest",
        "centralino.v1.CloseConversationResponse",
    ),
    conversation(
        "/v1/conversations/{id}/offline-message",
        "leaveOfflineMessage",
        "Leaves a message while nobody is available.",
        "centralino.v1.ConversationService/LeaveOfflineMessage",
        "centralino.v1.LeaveOfflineMessageRequest",
        "centralino.v1.LeaveOfflineMessageResponse",
    ),
    conversation(
        "/v1/conversations/{id}/callback",
        "requestCallback",
        "Asks to be called back.",
        "centralino.v1.ConversationService/RequestCallback",
        "centralino.v1.RequestCallbackRequest",
        "centralino.v1.RequestCallbackResponse",
    ),
    // Agent desk.
    Route {
        method: "post",
        path: "/v1/agent/sessions",
        params: &[],
        id: "openDeskSession",
        summary: "Logs an agent in: a desk session (as the AgentDesk/Session stream's login).",
        tag: "agent desk",
        rpc: None,
        request: Some("centralino.v1.Login"),
        answer: Answer::Schema("DeskSession"),
        status: 201,
        auth: Auth::None,
        resumable: false,
    },
    Route {
        method: "get",
        path: "/v1/agent/sessions/{sid}/events",
        params: SESSION_ID,
        id: "streamDeskEvents",
        summary:
            "The desk session's events as Server-Sent Events (one reader at a time); a resume \
                  past what is kept begins with `event: gap` (data: a DeskGap).",
        tag: "agent desk",
        rpc: None,
        request: None,
        answer: Answer::Events("centralino.v1.AgentEvent"),
        status: 200,
        auth: Auth::DeskSession,
        resumable: true,
    },
    Route {
        method: "post",
        path: "/v1/agent/sessions/{sid}/commands",
        params: SESSION_ID,
        id: "sendDeskCommand",
        summary: "Sends a desk command (not `login`); its ack or error comes as an event.",
        tag: "agent desk",
        rpc: None,
        request: Some("centralino.v1.AgentCommand"),
        answer: Answer::Schema("CommandAccepted"),
        status: 202,
        auth: Auth::DeskSession,
        resumable: false,
    },
    Route {
        method: "delete",
        path: "/v1/agent/sessions/{sid}",
        params: SESSION_ID,
        id: "closeDeskSession",
        summary: "Logs out: ends the desk session as the end of the desk stream would.",
        tag: "agent desk",
        rpc: None,
        request: None,
        answer: Answer::Empty,
        status: 204,
        auth: Auth::DeskSession,
        resumable: false,
    },
    // Admin.
    admin(
        "/v1/admin/get-snapshot",
        "getSnapshot",
        "The queues, agents and counters now.",
        "centralino.v1.Admin/GetSnapshot",
        "centralino.v1.GetSnapshotRequest",
        "centralino.v1.Snapshot",
    ),
    admin(
        "/v1/admin/set-agent-status",
        "setAgentStatus",
        "Sets an agent's status.",
        "centralino.v1.Admin/SetAgentStatus",
        "centralino.v1.SetAgentStatusRequest",
        "centralino.v1.SetAgentStatusResponse",
    ),
    admin(
        "/v1/admin/list-conversations",
        "listConversations",
        "Lists conversations.",
        "centralino.v1.Admin/ListConversations",
        "centralino.v1.ListConversationsRequest",
        "centralino.v1.ListConversationsResponse",
    ),
    admin(
        "/v1/admin/get-transcript",
        "getTranscript",
        "A conversation's transcript.",
        "centralino.v1.Admin/GetTranscript",
        "centralino.v1.GetTranscriptRequest",
        "centralino.v1.Transcript",
    ),
    admin(
        "/v1/admin/force-transfer",
        "forceTransfer",
        "Moves a conversation to another agent or queue.",
        "centralino.v1.Admin/ForceTransfer",
        "centralino.v1.ForceTransferRequest",
        "centralino.v1.ForceTransferResponse",
    ),
    admin(
        "/v1/admin/set-customer-tier",
        "setCustomerTier",
        "Sets a customer's tier.",
        "centralino.v1.Admin/SetCustomerTier",
        "centralino.v1.SetCustomerTierRequest",
        "centralino.v1.SetCustomerTierResponse",
    ),
    admin(
        "/v1/admin/export-customer",
        "exportCustomer",
        "Everything kept about a customer.",
        "centralino.v1.Admin/ExportCustomer",
        "centralino.v1.ExportCustomerRequest",
        "centralino.v1.ExportCustomerResponse",
    ),
    admin(
        "/v1/admin/erase-customer",
        "eraseCustomer",
        "Erases what is kept about a customer.",
        "centralino.v1.Admin/EraseCustomer",
        "centralino.v1.EraseCustomerRequest",
        "centralino.v1.EraseCustomerResponse",
    ),
    admin(
        "/v1/admin/put-directory-entry",
        "putDirectoryEntry",
        "Creates or replaces a directory entry.",
        "centralino.v1.Admin/PutDirectoryEntry",
        "centralino.v1.PutDirectoryEntryRequest",
        "centralino.v1.DirectoryEntry",
    ),
    admin(
        "/v1/admin/get-directory-entry",
        "getDirectoryEntry",
        "One directory entry.",
        "centralino.v1.Admin/GetDirectoryEntry",
        "centralino.v1.GetDirectoryEntryRequest",
        "centralino.v1.DirectoryEntry",
    ),
    admin(
        "/v1/admin/list-directory-entries",
        "listDirectoryEntries",
        "The directory's entries of one kind.",
        "centralino.v1.Admin/ListDirectoryEntries",
        "centralino.v1.ListDirectoryEntriesRequest",
        "centralino.v1.ListDirectoryEntriesResponse",
    ),
    admin(
        "/v1/admin/set-directory-entry-disabled",
        "setDirectoryEntryDisabled",
        "Disables or enables a directory entry.",
        "centralino.v1.Admin/SetDirectoryEntryDisabled",
        "centralino.v1.SetDirectoryEntryDisabledRequest",
        "centralino.v1.DirectoryEntry",
    ),
    admin(
        "/v1/admin/list-directory-audit",
        "listDirectoryAudit",
        "The directory's audit trail.",
        "centralino.v1.Admin/ListDirectoryAudit",
        "centralino.v1.ListDirectoryAuditRequest",
        "centralino.v1.ListDirectoryAuditResponse",
    ),
    admin(
        "/v1/admin/create-operator-token",
        "createOperatorToken",
        "Creates an operator token (shown once).",
        "centralino.v1.Admin/CreateOperatorToken",
        "centralino.v1.CreateOperatorTokenRequest",
        "centralino.v1.CreateOperatorTokenResponse",
    ),
    admin(
        "/v1/admin/list-operator-tokens",
        "listOperatorTokens",
        "The operator tokens (never the secrets).",
        "centralino.v1.Admin/ListOperatorTokens",
        "centralino.v1.ListOperatorTokensRequest",
        "centralino.v1.ListOperatorTokensResponse",
    ),
    admin(
        "/v1/admin/revoke-operator-token",
        "revokeOperatorToken",
        "Revokes an operator token.",
        "centralino.v1.Admin/RevokeOperatorToken",
        "centralino.v1.RevokeOperatorTokenRequest",
        "centralino.v1.RevokeOperatorTokenResponse",
    ),
    Route {
        method: "get",
        path: "/v1/admin/conversations/{id}/watch",
        params: CONVERSATION_ID,
        id: "watchConversation",
        summary: "A conversation's events as Server-Sent Events, as an operator sees them.",
        tag: "admin",
        rpc: Some("centralino.v1.Admin/WatchConversation"),
        request: None,
        answer: Answer::Events("centralino.v1.ConversationEvent"),
        status: 200,
        auth: Auth::Operator,
        resumable: true,
    },
    Route {
        method: "get",
        path: "/v1/admin/integration-events/stream",
        params: &[],
        id: "streamIntegrationEvents",
        summary: "The integration events as Server-Sent Events.",
        tag: "admin",
        rpc: Some("centralino.v1.Admin/StreamIntegrationEvents"),
        request: None,
        answer: Answer::Events("centralino.v1.IntegrationEvent"),
        status: 200,
        auth: Auth::Operator,
        resumable: true,
    },
    Route {
        method: "get",
        path: "/v1/admin/snapshot/stream",
        params: &[],
        id: "streamSnapshots",
        summary: "The snapshot now, then each second it changed, as Server-Sent Events.",
        tag: "admin",
        rpc: Some("centralino.v1.Admin/GetSnapshot"),
        request: None,
        answer: Answer::Events("centralino.v1.Snapshot"),
        status: 200,
        auth: Auth::Operator,
        resumable: false,
    },
    // This document.
    Route {
        method: "get",
        path: PATH,
        params: &[],
        id: "getOpenApiDocument",
        summary: "This OpenAPI document.",
        tag: "meta",
        rpc: None,
        request: None,
        answer: Answer::Schema("OpenApiDocument"),
        status: 200,
        auth: Auth::None,
        resumable: false,
    },
];

/// Example request bodies by operation id (each one decodes into its message: see the
/// tests).
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "startConversation",
        r#"{"department":"sales","language":"it","displayName":"Anna","firstMessage":"Buongiorno"}"#,
    ),
    ("sendMessage", r#"{"messageId":"m1","text":"Ciao"}"#),
    ("sendTyping", r#"{"typing":true}"#),
    ("rateConversation", r#"{"good":true,"comment":"Grazie"}"#),
    ("closeConversation", "{}"),
    (
        "leaveOfflineMessage",
        r#"{"name":"Anna","email":"anna@example.com","text":"Richiamatemi"}"#,
    ),
    (
        "requestCallback",
        r#"{"phone":"+39 02 1234567","preferredTime":"domani mattina"}"#,
    ),
    (
        "openDeskSession",
        r#"{"agentId":"giulia","password":"secret"}"#,
    ),
    (
        "sendDeskCommand",
        r#"{"requestId":"r1","setStatus":{"status":"AGENT_STATUS_AVAILABLE"}}"#,
    ),
    ("getSnapshot", "{}"),
    (
        "setAgentStatus",
        r#"{"agentId":"giulia","status":"AGENT_STATUS_AVAILABLE"}"#,
    ),
];

/// The error answers every operation documents: (HTTP status, what it means).
const ERRORS: [(u16, &str, &str); 9] = [
    (400, "BadRequest", "INVALID_ARGUMENT, FAILED_PRECONDITION or OUT_OF_RANGE: the request is wrong or does not apply now."),
    (401, "Unauthenticated", "UNAUTHENTICATED: no token, or not a valid one."),
    (403, "PermissionDenied", "PERMISSION_DENIED: the token does not allow this call."),
    (404, "NotFound", "NOT_FOUND: no such conversation, session or entry."),
    (409, "Conflict", "ALREADY_EXISTS or ABORTED: the request conflicts with what is there."),
    (413, "PayloadTooLarge", "RESOURCE_EXHAUSTED: the body is larger than 64 KiB."),
    (429, "TooManyRequests", "RESOURCE_EXHAUSTED: a limit was reached; `Retry-After` says when to try again."),
    (503, "Unavailable", "UNAVAILABLE: the node cannot serve the call now (draining, a peer unreachable)."),
    (504, "DeadlineExceeded", "DEADLINE_EXCEEDED: the call took too long."),
];

/// The gRPC status code names an error body may carry.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Why the document could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    /// The embedded descriptor set does not decode.
    #[error("the public file descriptor set does not decode: {0}")]
    Descriptors(#[from] prost::DecodeError),
    /// The document does not encode (never expected).
    #[error("the OpenAPI document does not encode: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The document, encoded once.
static DOCUMENT: OnceLock<Result<Bytes, String>> = OnceLock::new();

/// Returns the encoded document (built on the first call, then cached).
pub fn document() -> Result<Bytes, String> {
    DOCUMENT
        .get_or_init(|| {
            let built = build(centralino_proto::PUBLIC_FILE_DESCRIPTOR_SET)
                .and_then(|doc| Ok(Bytes::from(serde_json::to_vec(&doc)?)));
            built.map_err(|e| {
                tracing::error!(error = %e, "cannot build the OpenAPI document");
                e.to_string()
            })
        })
        .clone()
}

/// The route serving the document.
pub fn routes() -> Router {
    Router::new().route(PATH, get(serve))
}

async fn serve() -> Response {
    match document() {
        Ok(body) => {
            let mut response = body.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => HttpError(Status::internal(e)).into_response(),
    }
}

/// A message (with its comment and its fields' comments) or an enum (with its comment) of
/// the descriptor set.
enum Described {
    Message(DescriptorProto, Option<String>, Vec<Option<String>>),
    Enum(EnumDescriptorProto, Option<String>),
}

/// The messages and enums of a descriptor set by full name (no leading dot), with their
/// leading comments.
struct Types {
    types: BTreeMap<String, Described>,
}

impl Types {
    fn new(set: &FileDescriptorSet) -> Self {
        let mut types = BTreeMap::new();
        for file in &set.file {
            let package = file.package();
            let comments = comments(file);
            for (i, message) in file.message_type.iter().enumerate() {
                collect_message(package, message, vec![4, i as i32], &comments, &mut types);
            }
            for (i, e) in file.enum_type.iter().enumerate() {
                let name = format!("{package}.{}", e.name());
                let doc = comments.get(&vec![5, i as i32]).cloned();
                types.insert(name, Described::Enum(e.clone(), doc));
            }
        }
        Self { types }
    }

    fn message(&self, full_name: &str) -> Option<&DescriptorProto> {
        match self.types.get(full_name) {
            Some(Described::Message(m, _, _)) => Some(m),
            _ => None,
        }
    }

    /// The (key, value) fields of a map entry message.
    fn map_entry(&self, full_name: &str) -> Option<&DescriptorProto> {
        self.message(full_name)
            .filter(|m| m.options.as_ref().and_then(|o| o.map_entry) == Some(true))
    }
}

/// Leading comments of a file's elements by their source path.
fn comments(file: &prost_types::FileDescriptorProto) -> HashMap<Vec<i32>, String> {
    let mut out = HashMap::new();
    if let Some(info) = &file.source_code_info {
        for location in &info.location {
            let text = location.leading_comments().trim();
            if !text.is_empty() {
                let text: Vec<&str> = text.lines().map(str::trim).collect();
                out.insert(location.path.clone(), text.join(" "));
            }
        }
    }
    out
}

fn collect_message(
    scope: &str,
    message: &DescriptorProto,
    path: Vec<i32>,
    comments: &HashMap<Vec<i32>, String>,
    out: &mut BTreeMap<String, Described>,
) {
    let name = format!("{scope}.{}", message.name());
    for (i, nested) in message.nested_type.iter().enumerate() {
        let mut p = path.clone();
        p.extend([3, i as i32]);
        collect_message(&name, nested, p, comments, out);
    }
    for (i, e) in message.enum_type.iter().enumerate() {
        let mut p = path.clone();
        p.extend([4, i as i32]);
        out.insert(
            format!("{name}.{}", e.name()),
            Described::Enum(e.clone(), comments.get(&p).cloned()),
        );
    }
    let docs = (0..message.field.len())
        .map(|i| {
            let mut p = path.clone();
            p.extend([2, i as i32]);
            comments.get(&p).cloned()
        })
        .collect();
    let doc = comments.get(&path).cloned();
    out.insert(name, Described::Message(message.clone(), doc, docs));
}

/// The component name of a type: its full name without the package (`Offer`,
/// `Outer.Inner`).
fn component(full_name: &str) -> String {
    full_name
        .strip_prefix(PACKAGE)
        .and_then(|n| n.strip_prefix('.'))
        .unwrap_or(full_name)
        .to_string()
}

fn schema_ref(full_name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", component(full_name)) })
}

/// The proto3 JSON name of a field: its `json_name`, else protoc's lowerCamelCase of its
/// name.
fn json_name(field: &prost_types::FieldDescriptorProto) -> String {
    if let Some(name) = field.json_name.as_deref().filter(|n| !n.is_empty()) {
        return name.to_string();
    }
    let mut out = String::new();
    let mut upper = false;
    for c in field.name().chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The schema of one value of a field's type (not repeated).
fn scalar_schema(field: &prost_types::FieldDescriptorProto) -> Value {
    match field.r#type() {
        Type::String => json!({ "type": "string" }),
        Type::Bool => json!({ "type": "boolean" }),
        Type::Int32 | Type::Sint32 | Type::Sfixed32 => json!({
            "type": "integer", "format": "int32",
            "minimum": i32::MIN, "maximum": i32::MAX,
        }),
        Type::Uint32 | Type::Fixed32 => json!({
            "type": "integer", "format": "uint32", "minimum": 0, "maximum": u32::MAX,
        }),
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => json!({
            "type": "string", "format": "int64", "pattern": "^-?[0-9]+$",
        }),
        Type::Uint64 | Type::Fixed64 => json!({
            "type": "string", "format": "uint64", "pattern": "^[0-9]+$",
        }),
        Type::Float => json!({ "type": "number", "format": "float" }),
        Type::Double => json!({ "type": "number", "format": "double" }),
        Type::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
        Type::Enum | Type::Message | Type::Group => {
            schema_ref(field.type_name().trim_start_matches('.'))
        }
    }
}

/// The schema of a field of `types`.
fn field_schema(types: &Types, field: &prost_types::FieldDescriptorProto) -> Value {
    let type_name = field.type_name().trim_start_matches('.');
    if field.label() == Label::Repeated {
        if field.r#type() == Type::Message {
            if let Some(entry) = types.map_entry(type_name) {
                let value = entry
                    .field
                    .iter()
                    .find(|f| f.number() == 2)
                    .map(scalar_schema)
                    .unwrap_or_else(|| json!({}));
                return json!({ "type": "object", "additionalProperties": value });
            }
        }
        return json!({ "type": "array", "items": scalar_schema(field) });
    }
    // pbjson reads `null` as "not set" for a message field and a proto3 `optional` one
    // (for the other fields it refuses it).
    if field.r#type() == Type::Message || field.proto3_optional() {
        return json!({ "anyOf": [scalar_schema(field), { "type": "null" }] });
    }
    scalar_schema(field)
}

/// The messages a client sends: the request bodies and every message they contain.
fn request_messages(types: &Types, routes: &[&Route]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = routes
        .iter()
        .filter_map(|r| r.request.map(str::to_string))
        .collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(message) = types.message(&name) {
            for field in &message.field {
                if field.r#type() == Type::Message {
                    todo.push(field.type_name().trim_start_matches('.').to_string());
                }
            }
        }
    }
    seen
}

/// The schemas of every message and enum of `types`.
fn schemas(types: &Types, closed: &BTreeSet<String>) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, t) in &types.types {
        let schema = match t {
            Described::Enum(e, doc) => {
                let values: Vec<&str> = e.value.iter().map(|v| v.name()).collect();
                let mut s = json!({ "type": "string", "enum": values });
                if let Some(doc) = doc {
                    s["description"] = json!(doc);
                }
                s
            }
            Described::Message(m, _, _)
                if types.map_entry(name).is_some() && m.field.len() == 2 =>
            {
                continue;
            }
            Described::Message(m, doc, docs) => {
                let mut properties = Map::new();
                for (i, field) in m.field.iter().enumerate() {
                    let mut schema = field_schema(types, field);
                    if let Some(Some(text)) = docs.get(i) {
                        // A $ref cannot take siblings in every tool: describe the others.
                        if schema.get("$ref").is_none() {
                            schema["description"] = json!(text);
                        }
                    }
                    properties.insert(json_name(field), schema);
                }
                let mut description = doc.clone().unwrap_or_default();
                let oneofs = oneof_groups(m);
                if !oneofs.is_empty() {
                    if !description.is_empty() {
                        description.push(' ');
                    }
                    description.push_str(&oneofs.join(" "));
                }
                let mut s = json!({ "type": "object", "properties": properties });
                if !description.is_empty() {
                    s["description"] = json!(description);
                }
                if closed.contains(name) {
                    s["additionalProperties"] = json!(false);
                }
                s
            }
        };
        out.insert(component(name), schema);
    }
    out
}

/// "At most one of a, b, c." for each real oneof of a message (not proto3 `optional`).
fn oneof_groups(message: &DescriptorProto) -> Vec<String> {
    let mut out = Vec::new();
    for (i, oneof) in message.oneof_decl.iter().enumerate() {
        let members: Vec<String> = message
            .field
            .iter()
            .filter(|f| f.oneof_index == Some(i as i32) && !f.proto3_optional())
            .map(json_name)
            .collect();
        if !members.is_empty() {
            out.push(format!(
                "`{}`: at most one of {}.",
                oneof.name(),
                members.join(", ")
            ));
        }
    }
    out
}

/// The document's own schemas: the error body and the desk's answers.
fn extra_schemas(out: &mut Map<String, Value>) {
    out.insert(
        "Error".into(),
        json!({
            "type": "object",
            "description": "The error body of every route: the gRPC status code's name and what is wrong.",
            "properties": {
                "code": { "type": "string", "enum": CODE_NAMES },
                "message": { "type": "string" },
            },
            "required": ["code", "message"],
        }),
    );
    out.insert(
        "DeskSession".into(),
        json!({
            "type": "object",
            "description": "A desk session: its id (in the paths) and its token (the bearer of its calls).",
            "properties": {
                "sessionId": { "type": "string" },
                "sessionToken": { "type": "string" },
                "loggedIn": schema_ref("centralino.v1.LoggedIn"),
            },
        }),
    );
    out.insert(
        "DeskGap".into(),
        json!({
            "type": "object",
            "description": "The `gap` event of a desk stream: the events after `after` and before `resumedAt` are no longer kept (reload the desk's state); the stream goes on from `resumedAt`.",
            "properties": {
                "gap": {
                    "type": "object",
                    "properties": {
                        "after": { "type": "integer", "minimum": 0 },
                        "resumedAt": { "type": "integer", "minimum": 0 },
                    },
                },
            },
        }),
    );
    out.insert(
        "CommandAccepted".into(),
        json!({
            "type": "object",
            "description": "The command was queued; its ack or error comes as an event.",
            "properties": { "accepted": { "type": "boolean" } },
        }),
    );
    out.insert(
        "OpenApiDocument".into(),
        json!({ "type": "object", "description": "An OpenAPI 3.1 document." }),
    );
}

/// Whether every message a route names is in `types` (else it is left out).
fn describable(types: &Types, route: &Route) -> bool {
    let answer = match route.answer {
        Answer::Message(m) | Answer::Events(m) => Some(m),
        Answer::Schema(_) | Answer::Empty => None,
    };
    let missing: Vec<&str> = route
        .request
        .into_iter()
        .chain(answer)
        .filter(|m| types.message(m).is_none())
        .collect();
    if !missing.is_empty() {
        tracing::warn!(
            path = route.path,
            ?missing,
            "route left out of the OpenAPI document: unknown messages"
        );
    }
    missing.is_empty()
}

fn security(auth: Auth) -> Value {
    match auth {
        Auth::None => json!([]),
        // The token may be in the body's `token` instead.
        Auth::Conversation => json!([{ "conversationToken": [] }, {}]),
        Auth::ConversationHeader => json!([{ "conversationToken": [] }]),
        Auth::Operator => json!([{ "operatorToken": [] }]),
        Auth::DeskSession => json!([{ "deskSessionToken": [] }]),
    }
}

fn operation(route: &Route) -> Value {
    let mut parameters: Vec<Value> = route
        .params
        .iter()
        .map(|(name, description)| {
            json!({
                "name": name, "in": "path", "required": true, "description": description,
                "schema": { "type": "string", "minLength": 1 },
            })
        })
        .collect();
    if route.resumable {
        parameters.push(json!({
            "name": "Last-Event-ID", "in": "header", "required": false,
            "description": "Resume after this event id (the last `id:` seen).",
            "schema": { "type": "string", "pattern": "^[0-9]+$" },
        }));
        parameters.push(json!({
            "name": "after", "in": "query", "required": false,
            "description": "Resume after this event id (when there is no Last-Event-ID).",
            "schema": { "type": "string", "pattern": "^[0-9]+$" },
        }));
    }
    let success = match route.answer {
        Answer::Message(m) => json!({
            "description": format!("The {} (JSON).", component(m)),
            "content": { "application/json": { "schema": schema_ref(m) } },
        }),
        Answer::Schema(s) => json!({
            "description": format!("The {s} (JSON)."),
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{s}") } } },
        }),
        Answer::Events(m) => json!({
            "description": format!(
                "Server-Sent Events: `event:` the oneof case in snake_case (or `error`, last, with an Error), \
                 `id:` the event id (none for ephemeral events), `data:` one {} (JSON). \
                 A `: keepalive` comment every 15 s.",
                component(m)
            ),
            "content": { "text/event-stream": {
                "schema": { "type": "string" },
                "x-event-data": schema_ref(m),
            } },
        }),
        Answer::Empty => json!({ "description": "Done (no body)." }),
    };
    let mut responses = Map::new();
    responses.insert(route.status.to_string(), success);
    for (status, name, _) in ERRORS {
        responses.insert(
            status.to_string(),
            json!({ "$ref": format!("#/components/responses/{name}") }),
        );
    }
    let mut op = json!({
        "operationId": route.id,
        "summary": route.summary,
        "tags": [route.tag],
        "security": security(route.auth),
        "responses": responses,
    });
    if !parameters.is_empty() {
        op["parameters"] = json!(parameters);
    }
    if let Some(request) = route.request {
        op["requestBody"] = json!({
            "required": false,
            "description": "An empty body is the default message. Field names are lowerCamelCase (the proto names are accepted too).",
            "content": { "application/json": { "schema": schema_ref(request) } },
        });
        if let Some(example) = EXAMPLES
            .iter()
            .find(|(id, _)| *id == route.id)
            .and_then(|(_, text)| serde_json::from_str::<Value>(text).ok())
        {
            op["requestBody"]["content"]["application/json"]["example"] = example;
        }
    }
    if let Some(rpc) = route.rpc {
        op["description"] = json!(format!("Calls the gRPC method `{rpc}`."));
    }
    op
}

/// Links from the started conversation (its id and token) to the calls about it, so a
/// client generator, or a stateful test, can follow them.
fn link_conversation_calls(paths: &mut Map<String, Value>, routes: &[&Route]) {
    let mut links = Map::new();
    for route in routes.iter().filter(|r| r.auth == Auth::Conversation) {
        links.insert(
            route.id.to_string(),
            json!({
                "operationId": route.id,
                "parameters": { "path.id": "$response.body#/conversationId" },
                "requestBody": { "token": "$response.body#/token" },
                "description": "The conversation just started, with its token.",
            }),
        );
    }
    let start = paths
        .get_mut("/v1/conversations")
        .and_then(|item| item.get_mut("post"))
        .and_then(|op| op.get_mut("responses"))
        .and_then(|r| r.get_mut("200"));
    if let (Some(start), false) = (start, links.is_empty()) {
        start["links"] = Value::Object(links);
    }
}

/// Builds the document from an encoded file descriptor set.
pub fn build(descriptors: &[u8]) -> Result<Value, OpenApiError> {
    let set = FileDescriptorSet::decode(descriptors)?;
    let types = Types::new(&set);
    let routes: Vec<&Route> = ROUTES.iter().filter(|r| describable(&types, r)).collect();
    let closed = request_messages(&types, &routes);
    let mut components = schemas(&types, &closed);
    extra_schemas(&mut components);

    let mut paths = Map::new();
    for route in &routes {
        let item = paths.entry(route.path).or_insert_with(|| json!({}));
        item[route.method] = operation(route);
    }
    link_conversation_calls(&mut paths, &routes);
    let mut responses = Map::new();
    for (_, name, description) in ERRORS {
        responses.insert(
            name.to_string(),
            json!({
                "description": description,
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
            }),
        );
    }
    let bearer = |what: &str| json!({ "type": "http", "scheme": "bearer", "description": what });
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "centralino browser API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "JSON over HTTP and Server-Sent Events, on the node's public listener. \
                Bodies are the proto3 JSON mapping of the centralino.v1 messages: lowerCamelCase \
                names (proto names accepted on input), enums by name (numbers accepted on input), \
                64-bit integers as decimal strings, default values left out, unknown fields refused. \
                Errors: the HTTP status of the gRPC code and an Error body.",
        },
        "tags": [
            { "name": "customer", "description": "The customer's conversation (ConversationService)." },
            { "name": "agent desk", "description": "The agent desk (AgentDesk/Session) as plain requests and one event stream." },
            { "name": "admin", "description": "The Admin service (operator tokens and their scopes)." },
            { "name": "meta", "description": "This document." },
        ],
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": responses,
            "securitySchemes": {
                "conversationToken": bearer("The conversation token of StartConversationResponse."),
                "operatorToken": bearer("An operator token (`centralino new-token`, or CreateOperatorToken)."),
                "deskSessionToken": bearer("The sessionToken of POST /v1/agent/sessions."),
            },
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        let bytes = document().expect("the document builds");
        serde_json::from_slice(&bytes).expect("the document is JSON")
    }

    fn types() -> Types {
        Types::new(
            &FileDescriptorSet::decode(centralino_proto::PUBLIC_FILE_DESCRIPTOR_SET)
                .expect("descriptors decode"),
        )
    }

    /// Every `$ref` in `value`, with where it is.
    fn refs<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "$ref" {
                        if let Some(r) = v.as_str() {
                            out.push((at.clone(), r));
                        }
                    } else {
                        refs(v, format!("{at}/{k}"), out);
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    refs(v, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_json() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["info"]["title"].is_string());
        assert!(doc["paths"].as_object().is_some_and(|p| p.len() > 20));
        for scheme in ["conversationToken", "operatorToken", "deskSessionToken"] {
            assert_eq!(
                doc["components"]["securitySchemes"][scheme]["scheme"],
                "bearer"
            );
        }
    }

    #[test]
    fn every_ref_resolves() {
        let doc = doc();
        let mut found = Vec::new();
        refs(&doc, String::new(), &mut found);
        assert!(found.len() > 100, "{} refs", found.len());
        for (at, r) in found {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{at}: {r} is not local"));
            assert!(doc.pointer(pointer).is_some(), "{at}: {r} does not resolve");
        }
    }

    #[test]
    fn every_route_whose_messages_exist_is_there_and_only_those() {
        let doc = doc();
        let types = types();
        let mut ids = BTreeSet::new();
        for route in ROUTES {
            assert!(ids.insert(route.id), "operation id {} twice", route.id);
            let op = &doc["paths"][route.path][route.method];
            if describable(&types, route) {
                assert_eq!(
                    op["operationId"], route.id,
                    "{} {}",
                    route.method, route.path
                );
                assert!(
                    op["responses"][route.status.to_string()].is_object(),
                    "{}: no {}",
                    route.id,
                    route.status
                );
                for status in ["400", "401", "403", "404", "409", "429", "503"] {
                    assert_eq!(
                        doc.pointer(&format!(
                            "/components/responses/{}/content/application~1json/schema/$ref",
                            op["responses"][status]["$ref"]
                                .as_str()
                                .and_then(|r| r.rsplit('/').next())
                                .unwrap_or("?")
                        ))
                        .and_then(Value::as_str),
                        Some("#/components/schemas/Error"),
                        "{}: {status}",
                        route.id
                    );
                }
                for (param, _) in route.params {
                    assert!(route.path.contains(&format!("{{{param}}}")), "{}", route.id);
                }
            } else {
                assert!(
                    op.is_null(),
                    "{} is documented without its messages",
                    route.id
                );
            }
        }
        // The routes the handlers serve (customer.rs, admin.rs) are all in the table.
        for path in [
            "/v1/conversations",
            "/v1/conversations/{id}/events",
            "/v1/conversations/{id}/messages",
            "/v1/conversations/{id}/rating",
            "/v1/conversations/{id}/close",
            "/v1/conversations/{id}/offline-message",
            "/v1/conversations/{id}/callback",
            "/v1/admin/get-snapshot",
            "/v1/admin/set-agent-status",
            "/v1/admin/list-conversations",
            "/v1/admin/get-transcript",
            "/v1/admin/force-transfer",
            "/v1/admin/set-customer-tier",
            "/v1/admin/export-customer",
            "/v1/admin/erase-customer",
            "/v1/admin/put-directory-entry",
            "/v1/admin/get-directory-entry",
            "/v1/admin/list-directory-entries",
            "/v1/admin/set-directory-entry-disabled",
            "/v1/admin/list-directory-audit",
            "/v1/admin/create-operator-token",
            "/v1/admin/list-operator-tokens",
            "/v1/admin/revoke-operator-token",
            "/v1/admin/conversations/{id}/watch",
            "/v1/admin/integration-events/stream",
            "/v1/admin/snapshot/stream",
            "/v1/agent/sessions",
            "/v1/agent/sessions/{sid}/events",
            "/v1/agent/sessions/{sid}/commands",
            "/v1/agent/sessions/{sid}",
            "/v1/openapi.json",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} is not documented");
        }
    }

    #[test]
    fn the_table_agrees_with_the_grpc_services() {
        let set = FileDescriptorSet::decode(centralino_proto::PUBLIC_FILE_DESCRIPTOR_SET)
            .expect("descriptors decode");
        let mut methods = HashMap::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.insert(
                        format!("{}.{}/{}", file.package(), service.name(), method.name()),
                        method.clone(),
                    );
                }
            }
        }
        let types = types();
        for route in ROUTES.iter().filter(|r| describable(&types, r)) {
            let Some(rpc) = route.rpc else { continue };
            let method = methods
                .get(rpc)
                .unwrap_or_else(|| panic!("{}: no gRPC method {rpc}", route.id));
            let output = method.output_type().trim_start_matches('.');
            match route.answer {
                Answer::Message(m) | Answer::Events(m) => assert_eq!(m, output, "{}", route.id),
                other => panic!("{}: {other:?} for a gRPC method", route.id),
            }
            if let Some(request) = route.request {
                assert_eq!(
                    request,
                    method.input_type().trim_start_matches('.'),
                    "{}",
                    route.id
                );
            }
            // A server stream is SSE (and the snapshot stream polls a unary call).
            if method.server_streaming() {
                assert!(matches!(route.answer, Answer::Events(_)), "{}", route.id);
            }
        }
        // Every Admin and ConversationService method the descriptors have is served.
        for name in methods.keys() {
            if name.contains(".Admin/") || name.contains(".ConversationService/") {
                assert!(
                    ROUTES.iter().any(|r| r.rpc == Some(name.as_str())),
                    "{name} has no route"
                );
            }
        }
    }

    #[test]
    fn send_message_request_is_the_proto3_json_mapping() {
        let doc = doc();
        let schema = &doc["components"]["schemas"]["SendMessageRequest"];
        assert_eq!(schema["type"], "object");
        assert_eq!(
            schema["additionalProperties"], false,
            "a request refuses unknown fields"
        );
        assert!(schema.get("required").is_none());
        let properties = schema["properties"].as_object().expect("properties");
        let names: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            BTreeSet::from(["conversationId", "token", "messageId", "text"])
        );
        for name in names {
            assert_eq!(properties[name]["type"], "string", "{name}");
        }
        // uint64 as a decimal string; bool; an answer keeps unknown fields open.
        let response = &doc["components"]["schemas"]["SendMessageResponse"];
        assert_eq!(response["properties"]["seq"]["type"], "string");
        assert_eq!(response["properties"]["seq"]["pattern"], "^[0-9]+$");
        assert_eq!(response["properties"]["duplicate"]["type"], "boolean");
        assert!(response.get("additionalProperties").is_none());
        let op = &doc["paths"]["/v1/conversations/{id}/messages"]["post"];
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/SendMessageRequest"
        );
    }

    #[test]
    fn enums_maps_repeated_and_nested_messages_follow_the_mapping() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let status = schemas["AgentStatus"]["enum"]
            .as_array()
            .expect("enum names");
        assert!(
            status.iter().any(|v| v == "AGENT_STATUS_AVAILABLE"),
            "{status:?}"
        );
        // map<string, string> details of IntegrationEvent.
        let details = &schemas["IntegrationEvent"]["properties"]["details"];
        assert_eq!(details["type"], "object");
        assert_eq!(details["additionalProperties"], json!({ "type": "string" }));
        // No schema for the map's entry message.
        assert!(schemas
            .as_object()
            .is_some_and(|s| !s.keys().any(|k| k.ends_with("Entry") && k.contains('.'))));
        let snapshot = &schemas["Snapshot"]["properties"];
        assert_eq!(snapshot["queues"]["type"], "array");
        assert_eq!(
            snapshot["queues"]["items"]["$ref"],
            "#/components/schemas/QueueSnapshot"
        );
        assert_eq!(snapshot["routersMissing"]["items"]["type"], "string");
        assert_eq!(snapshot["nowUnixMs"]["type"], "string");
        // int64 of a nested request message, proto3 optional.
        assert_eq!(
            schemas["PutDirectoryEntryRequest"]["properties"]["expectedVersion"]["anyOf"][0]
                ["pattern"],
            "^-?[0-9]+$"
        );
        // null is "not set" for a message field and an optional one, as pbjson reads it.
        assert_eq!(
            schemas["StartConversationRequest"]["properties"]["visitor"]["anyOf"],
            json!([{ "$ref": "#/components/schemas/VisitorContext" }, { "type": "null" }])
        );
        let null = |text: &'static str| Bytes::from_static(text.as_bytes());
        crate::call::decode::<centralino_proto::v1::StartConversationRequest>(
            &null(r#"{"visitor":null}"#),
            "x",
        )
        .expect("null message");
        crate::call::decode::<centralino_proto::v1::PutDirectoryEntryRequest>(
            &null(r#"{"expectedVersion":null}"#),
            "x",
        )
        .expect("null optional");
        assert!(
            crate::call::decode::<centralino_proto::v1::StartConversationRequest>(
                &null(r#"{"language":null}"#),
                "x"
            )
            .is_err(),
            "a null string is refused, and so not documented"
        );
        assert_eq!(
            schemas["StartConversationRequest"]["properties"]["language"]["type"],
            "string"
        );
        // A message inside a request body refuses unknown fields too.
        let start = &schemas["StartConversationRequest"];
        assert_eq!(start["additionalProperties"], false);
        assert_eq!(schemas["VisitorContext"]["additionalProperties"], false);
        // The desk's login is a request.
        assert_eq!(schemas["Login"]["additionalProperties"], false);
        assert_eq!(
            schemas["DeskSession"]["properties"]["loggedIn"]["$ref"],
            "#/components/schemas/LoggedIn"
        );
        assert_eq!(
            schemas["Error"]["properties"]["code"]["enum"]
                .as_array()
                .map(Vec::len),
            Some(17)
        );
    }

    #[test]
    fn the_examples_are_valid_messages() {
        use centralino_proto::v1::*;
        fn decodes<T: serde::de::DeserializeOwned + Default>(id: &str) {
            let text = EXAMPLES
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, t)| *t)
                .unwrap_or_else(|| panic!("no example for {id}"));
            crate::call::decode::<T>(&Bytes::from(text), id)
                .unwrap_or_else(|e| panic!("{id}: {}", e.message()));
        }
        decodes::<StartConversationRequest>("startConversation");
        decodes::<SendMessageRequest>("sendMessage");
        decodes::<SendTypingRequest>("sendTyping");
        decodes::<RateConversationRequest>("rateConversation");
        decodes::<CloseConversationRequest>("closeConversation");
        decodes::<LeaveOfflineMessageRequest>("leaveOfflineMessage");
        decodes::<RequestCallbackRequest>("requestCallback");
        decodes::<Login>("openDeskSession");
        decodes::<AgentCommand>("sendDeskCommand");
        decodes::<GetSnapshotRequest>("getSnapshot");
        decodes::<SetAgentStatusRequest>("setAgentStatus");
        let doc = doc();
        let types = types();
        for (id, _) in EXAMPLES {
            let route = ROUTES
                .iter()
                .find(|r| r.id == *id)
                .expect("an example of a route");
            if describable(&types, route) {
                assert!(
                    doc["paths"][route.path][route.method]["requestBody"]["content"]
                        ["application/json"]["example"]
                        .is_object(),
                    "{id}"
                );
            }
        }
        // The started conversation links to the calls about it.
        let links = &doc["paths"]["/v1/conversations"]["post"]["responses"]["200"]["links"];
        assert_eq!(
            links["sendMessage"]["parameters"]["path.id"],
            "$response.body#/conversationId"
        );
    }

    #[test]
    fn json_names_are_lower_camel_case() {
        let field = prost_types::FieldDescriptorProto {
            name: Some("reopens_at_unix_ms".into()),
            ..Default::default()
        };
        assert_eq!(json_name(&field), "reopensAtUnixMs");
    }

    #[test]
    fn a_route_without_its_message_is_left_out_not_a_panic() {
        let mut set = FileDescriptorSet::decode(centralino_proto::PUBLIC_FILE_DESCRIPTOR_SET)
            .expect("descriptors decode");
        for file in &mut set.file {
            file.message_type
                .retain(|m| m.name() != "SendMessageRequest");
        }
        let doc = build(&set.encode_to_vec()).expect("builds");
        assert!(doc["paths"]["/v1/conversations/{id}/messages"].is_null());
        assert!(doc["paths"]["/v1/conversations/{id}/close"]["post"].is_object());
        assert!(
            build(b"\xff\xff").is_err(),
            "garbage is an error, not a panic"
        );
    }

    #[tokio::test]
    async fn the_route_serves_the_document_as_json() {
        use tower::ServiceExt;
        let response = routes()
            .oneshot(
                axum::http::Request::get(PATH)
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answered");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
    }
}
