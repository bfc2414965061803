//! One HTTP request as one gRPC call: the JSON body decoded into the request message (the
//! proto3 JSON mapping), the headers as the call's metadata and the connection's
//! extensions (client address, TLS peer) carried over, so the gRPC handler sees the same
//! request it would over gRPC; its answer encoded back as JSON.

use axum::body::Bytes;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::Status;

use crate::status::HttpError;

/// Largest request body accepted, in bytes (a message of 8 KiB in JSON, a directory
/// document, with room to spare).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Decodes a JSON body into the request message `T`; an empty body is the default message.
/// A body that is not `T` in the proto3 JSON mapping is INVALID_ARGUMENT, naming what is
/// wrong.
#[allow(clippy::result_large_err)]
pub fn decode<T: DeserializeOwned + Default>(body: &Bytes, message: &str) -> Result<T, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        Status::invalid_argument(format!("the body is not a valid {message} (JSON): {e}"))
    })
}

/// Builds the gRPC request of an HTTP request: headers become metadata (`authorization`
/// for the operator token), extensions carry the connection's address and TLS peer.
pub fn request<T>(parts: &Parts, message: T) -> tonic::Request<T> {
    let mut http = axum::http::Request::new(message);
    *http.headers_mut() = grpc_safe_headers(&parts.headers);
    *http.extensions_mut() = parts.extensions.clone();
    tonic::Request::from_http(http)
}

/// The headers of an HTTP request that may become gRPC metadata: all but the
/// connection-level and the gRPC-reserved ones (`grpc-*`, `te`, `content-type`), which a
/// browser must not be able to set on a call.
fn grpc_safe_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let name_str = name.as_str();
        let reserved = name_str.starts_with("grpc-")
            || matches!(
                name_str,
                "te" | "content-type" | "content-length" | "connection" | "host"
            );
        if !reserved {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The bearer token of a request (`Authorization: Bearer <token>`), if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Returns the JSON answer of a message.
pub fn json<T: Serialize>(message: &T) -> Response {
    match serde_json::to_vec(message) {
        Ok(body) => {
            let mut response = body.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => {
            HttpError(Status::internal(format!("cannot encode the answer: {e}"))).into_response()
        }
    }
}

/// Answers a gRPC handler's result: the message as JSON, or the status as an HTTP error.
pub fn answer<T: Serialize>(result: Result<tonic::Response<T>, Status>) -> Response {
    match result {
        Ok(response) => json(response.get_ref()),
        Err(status) => HttpError(status).into_response(),
    }
}

/// Puts the path's conversation id into a request message's field: the body may leave it
/// empty or repeat it; another id is INVALID_ARGUMENT.
#[allow(clippy::result_large_err)]
pub fn path_id(field: &mut String, path: &str, name: &str) -> Result<(), Status> {
    if field.is_empty() || field == path {
        *field = path.to_string();
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "{name} in the body ({field:?}) differs from the one in the path ({path:?})"
        )))
    }
}

/// Fills a request message's token from the `Authorization` header when the body has none.
pub fn token_from_header(field: &mut String, headers: &HeaderMap) {
    if field.is_empty() {
        if let Some(token) = bearer(headers) {
            *field = token.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use centralino_proto::v1::SendMessageRequest;

    #[test]
    fn a_body_decodes_in_the_proto3_json_mapping() {
        let body = Bytes::from_static(br#"{"messageId":"m1","text":"Ciao"}"#);
        let req: SendMessageRequest = decode(&body, "SendMessageRequest").expect("valid");
        assert_eq!(req.message_id, "m1");
        assert_eq!(req.text, "Ciao");
        let snake = Bytes::from_static(br#"{"message_id":"m2"}"#);
        let req: SendMessageRequest = decode(&snake, "SendMessageRequest").expect("valid");
        assert_eq!(req.message_id, "m2");
        let empty: SendMessageRequest = decode(&Bytes::new(), "x").expect("empty is default");
        assert_eq!(empty, SendMessageRequest::default());
    }

    #[test]
    fn bad_bodies_are_invalid_argument_naming_the_message() {
        for body in [
            &br#"{"text": 5}"#[..],
            br#"{"noSuchField": 1}"#,
            br#"not json"#,
            br#"[1,2]"#,
        ] {
            let err =
                decode::<SendMessageRequest>(&Bytes::from(body.to_vec()), "SendMessageRequest")
                    .expect_err("refused");
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(
                err.message().contains("SendMessageRequest"),
                "{}",
                err.message()
            );
        }
    }

    #[test]
    fn grpc_reserved_headers_do_not_become_metadata() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", HeaderValue::from_static("1n"));
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        headers.insert("x-centralino-forwarded", HeaderValue::from_static("1"));
        let out = grpc_safe_headers(&headers);
        assert!(out.get("grpc-timeout").is_none());
        assert!(out.get("authorization").is_some());
        assert_eq!(bearer(&headers), Some("t"));
    }

    #[test]
    fn the_path_id_wins_only_when_the_body_agrees() {
        let mut field = String::new();
        path_id(&mut field, "c1", "conversation_id").expect("empty takes the path");
        assert_eq!(field, "c1");
        let mut other = "c2".to_string();
        assert!(path_id(&mut other, "c1", "conversation_id").is_err());
    }
}
