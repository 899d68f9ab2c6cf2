//! The one error type of the HTTP API: a status, a stable code and a JSON body. Server-side
//! failures are logged with their cause and answered with a generic message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::index::IndexError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// The connection must not be reused after this answer: the request body was not read.
    fn closes_connection(&self) -> bool {
        self.status == StatusCode::PAYLOAD_TOO_LARGE
    }
}

impl ApiError {
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not-found",
            message: message.into(),
        }
    }

    /// What the server cannot do with this content (a transfer syntax it cannot decode).
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported",
            message: message.into(),
        }
    }

    /// No representation the client accepts (`Accept`) can be given.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_ACCEPTABLE,
            code: "not-acceptable",
            message: message.into(),
        }
    }

    /// Content that is broken (pixel data that does not decode).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "corrupt",
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad-request",
            message: message.into(),
        }
    }

    /// A request body that could not be read to its end: 408 when the client stopped sending
    /// (`http_body_timeout_secs`), 400 otherwise. Logged: the client sees only the answer.
    pub fn body_read(error: &std::io::Error) -> Self {
        tracing::warn!(error = %error, "reading a request body failed");
        if error.kind() == std::io::ErrorKind::TimedOut {
            ApiError {
                status: StatusCode::REQUEST_TIMEOUT,
                code: "timeout",
                message: "the request body stopped arriving".into(),
            }
        } else {
            ApiError::bad_request(format!("reading the upload failed: {error}"))
        }
    }

    pub fn payload_too_large(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too-large",
            message: message.into(),
        }
    }

    /// No credentials, or wrong ones (the caller adds `WWW-Authenticate` where it fits).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: message.into(),
        }
    }

    /// Signed in, but the role (or a missing CSRF token) does not allow this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
        }
    }

    /// Too many failed sign-ins from this client (the caller adds `Retry-After`).
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "too-many-requests",
            message: message.into(),
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
        }
    }

    /// A DICOM peer we called failed or did not answer.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_GATEWAY,
            code: "peer-failed",
            message: message.into(),
        }
    }

    /// An index failure: 503 when the database cannot be reached, 500 otherwise.
    pub fn index(error: IndexError) -> Self {
        match &error {
            IndexError::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_),
            )
            | IndexError::CommitUnknown(_)
            | IndexError::WriterStopped => ApiError::unavailable("index", error),
            _ => ApiError::internal(error),
        }
    }

    /// A failure of ours: the cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error; see the server log".into(),
        }
    }

    pub fn unavailable(what: &str, cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "{what} unavailable");
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: format!("{what} unavailable"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "HttpStatus": self.status.as_u16(),
            "Code": self.code,
            "Message": self.message,
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.closes_connection() {
            // Said aloud so that keep-alive clients do not send their next request on a
            // connection we are about to close (RFC 9112 9.6).
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route {}", uri.path()))
}

pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method-not-allowed",
        message: format!("{method} is not allowed on {}", uri.path()),
    }
}
