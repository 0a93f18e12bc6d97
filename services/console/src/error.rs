//! `ApiError`: every refusal of the HTTP API, as a status and a JSON `{"error": "…"}` whose message
//! names what was wrong.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An HTTP error with a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        ApiError::unavailable(format!("redis: {e}"))
    }
}

impl From<rdkafka::error::KafkaError> for ApiError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        ApiError::unavailable(format!("kafka: {e}"))
    }
}

/// A JSON body whose rejection is an `ApiError` naming the problem (the field path for bad types
/// or missing fields, 415 for a missing `Content-Type: application/json`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(ApiError::new(rejection.status(), rejection.body_text())),
        }
    }
}

/// An optional JSON body: none (or only whitespace) is `None`; anything else must parse, with the
/// same messages as [`Body`].
#[derive(Debug, Clone, Default)]
pub struct MaybeBody<T>(pub Option<T>);

impl<S, T> FromRequest<S> for MaybeBody<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(MaybeBody(None));
        }
        Json::<T>::from_bytes(&bytes)
            .map(|Json(value)| MaybeBody(Some(value)))
            .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))
    }
}
