//! REST errors: one enum, mapped to an HTTP status and the contract's
//! `{"error": {"code", "message"}}` body in exactly one place.
//!
//! Each layer has its own error type (`AuthError`, `StoreError`, …); they convert into
//! [`ApiError`] here so handlers can use `?` and no handler picks a status by hand.

use actix_web::{
    error::{JsonPayloadError, PathError, QueryPayloadError},
    http::StatusCode,
    HttpRequest, HttpResponse, ResponseError,
};
use serde_json::json;

use crate::auth::AuthError;
use crate::availability::StoreError;

/// An error answered to a REST caller.
#[derive(Debug)]
pub enum ApiError {
    /// 400: not JSON, or bad path/query parameters.
    BadRequest(String),
    /// 401: missing or invalid token.
    Unauthorized(String),
    /// 403: the token may not do this.
    Forbidden(String),
    /// 404: unknown id or route.
    NotFound(String),
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: a slot overlapping another of the same provider.
    Conflict(String),
    /// 413: a body over the limit.
    PayloadTooLarge(String),
    /// 422: JSON that does not fit.
    Unprocessable(String),
    /// 429: a per-caller limit was reached.
    TooManyRequests(String),
    /// 503: a dependency (database, Redis) does not answer.
    Unavailable(String),
    /// 500: a bug or an unexpected failure; the detail is logged, not sent.
    Internal(String),
}

impl ApiError {
    /// The machine-readable code of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unprocessable(_) => "unprocessable_entity",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::Unprocessable(m)
            | ApiError::TooManyRequests(m)
            | ApiError::Unavailable(m) => m,
            ApiError::MethodNotAllowed => "method not allowed on this route",
            ApiError::Internal(_) => "internal error",
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            log::error!("internal error: {detail}");
        }
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized(_)) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(json!({"error": {"code": self.code(), "message": self.message()}}))
    }
}

/// The body of every REST error, as the OpenAPI document describes it. The hub builds
/// it with `json!` in [`ApiError::error_response`]; this type exists for the schema,
/// and the OpenAPI test checks real error bodies against it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"error": {"code": "not_found", "message": "no slot with id 7"}}))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` member of [`ErrorBody`].
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Machine-readable: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `payload_too_large`, `unprocessable_entity`,
    /// `too_many_requests`, `unavailable` or `internal`.
    pub code: ErrorCode,
    /// For humans; names the field or limit at fault.
    pub message: String,
}

/// The `code` of an error body.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400.
    BadRequest,
    /// 401.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 409.
    Conflict,
    /// 413.
    PayloadTooLarge,
    /// 422.
    UnprocessableEntity,
    /// 429.
    TooManyRequests,
    /// 503.
    Unavailable,
    /// 500.
    Internal,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ApiError::NotFound(format!("no slot with id {id}")),
            StoreError::Forbidden => {
                ApiError::Forbidden("this token may not change this provider's slots".into())
            }
            StoreError::Overlap { existing } => ApiError::Conflict(format!(
                "the slot overlaps slot {existing} of the same provider"
            )),
            StoreError::Invalid(why) => ApiError::Unprocessable(why),
            StoreError::Unavailable(why) => ApiError::Unavailable(why),
            StoreError::Database(e) => ApiError::Internal(format!("database error: {e}")),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Unauthorized(e.to_string())
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::Internal(format!("blocking task failed: {e}"))
    }
}

/// Maps a JSON body that failed to extract: too large → 413, not JSON → 400, JSON of
/// the wrong shape → 422.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            ApiError::PayloadTooLarge(format!("request body is larger than {limit} bytes"))
        }
        JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("body is not JSON: {e}")),
        JsonPayloadError::ContentType => {
            ApiError::BadRequest("body must be JSON (Content-Type: application/json)".into())
        }
        other => ApiError::BadRequest(format!("cannot read body: {other}")),
    };
    api.into()
}

/// Maps a path parameter that does not parse to 400.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("bad path parameter: {err}")).into()
}

/// Maps a query string that does not parse to 400.
pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("bad query parameter: {err}")).into()
}

/// A JSON body in two steps, so the status tells the caller what to fix: a body that
/// is not JSON is a 400, JSON of the wrong shape a 422, too large a 413.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let value = actix_web::web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let value = value.await?.into_inner();
            serde_json::from_value(value)
                .map(JsonBody)
                .map_err(|e| ApiError::Unprocessable(format!("body does not fit: {e}")).into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented codes are exactly the codes the hub sends.
    #[test]
    fn documented_codes_match() {
        let pairs = [
            (ApiError::BadRequest(String::new()), ErrorCode::BadRequest),
            (
                ApiError::Unauthorized(String::new()),
                ErrorCode::Unauthorized,
            ),
            (ApiError::Forbidden(String::new()), ErrorCode::Forbidden),
            (ApiError::NotFound(String::new()), ErrorCode::NotFound),
            (ApiError::MethodNotAllowed, ErrorCode::MethodNotAllowed),
            (ApiError::Conflict(String::new()), ErrorCode::Conflict),
            (
                ApiError::PayloadTooLarge(String::new()),
                ErrorCode::PayloadTooLarge,
            ),
            (
                ApiError::Unprocessable(String::new()),
                ErrorCode::UnprocessableEntity,
            ),
            (
                ApiError::TooManyRequests(String::new()),
                ErrorCode::TooManyRequests,
            ),
            (ApiError::Unavailable(String::new()), ErrorCode::Unavailable),
            (ApiError::Internal(String::new()), ErrorCode::Internal),
        ];
        for (error, code) in pairs {
            assert_eq!(serde_json::to_value(code).unwrap(), error.code());
        }
    }
}
