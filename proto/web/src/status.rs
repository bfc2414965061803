//! A gRPC status as an HTTP answer: the HTTP status that means the same, and the body
//! `{"code": "INVALID_ARGUMENT", "message": "..."}` with the gRPC code's name, so a browser
//! client sees the same codes as a gRPC client (and as a desk `CommandError`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tonic::{Code, Status};

/// Metadata key of the gRPC pushback a rate limit sets (milliseconds).
const PUSHBACK: &str = "grpc-retry-pushback-ms";

/// The error body of every JSON route.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// The gRPC status code name (`"NOT_FOUND"`).
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: &'a str,
}

/// Returns the gRPC specification's name of `code` (`"INVALID_ARGUMENT"`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Returns the HTTP status for a gRPC code (the mapping of Google's HTTP/JSON APIs).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A gRPC status answered over HTTP.
#[derive(Debug)]
pub struct HttpError(pub Status);

impl From<Status> for HttpError {
    fn from(status: Status) -> Self {
        Self(status)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.0;
        let body = ErrorBody {
            code: code_name(status.code()),
            message: status.message(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (http_status(status.code()), json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // A rate limit's pushback becomes the HTTP way of saying it.
        if let Some(ms) = status
            .metadata()
            .get(PUSHBACK)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if let Ok(value) = HeaderValue::from_str(&ms.div_ceil(1000).max(1).to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_http_statuses_clients_expect() {
        for (code, http, name) in [
            (Code::InvalidArgument, 400, "INVALID_ARGUMENT"),
            (Code::Unauthenticated, 401, "UNAUTHENTICATED"),
            (Code::PermissionDenied, 403, "PERMISSION_DENIED"),
            (Code::NotFound, 404, "NOT_FOUND"),
            (Code::AlreadyExists, 409, "ALREADY_EXISTS"),
            (Code::ResourceExhausted, 429, "RESOURCE_EXHAUSTED"),
            (Code::Unavailable, 503, "UNAVAILABLE"),
            (Code::Internal, 500, "INTERNAL"),
        ] {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
            assert_eq!(code_name(code), name);
        }
    }

    #[test]
    fn a_pushback_becomes_retry_after_in_whole_seconds() {
        let mut status = Status::resource_exhausted("slow down");
        status
            .metadata_mut()
            .insert(PUSHBACK, "1500".parse().expect("ascii"));
        let response = HttpError(status).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"2"[..])
        );
    }
}
