//! The REST extractor: every `/api` handler that takes a [`Caller`] is authenticated.

use actix_web::http::header::{self, HeaderMap};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use std::sync::Arc;

use super::{AuthError, Claims, Revocations, TokenVerifier};
use crate::error::ApiError;

/// The verified claims of the request's bearer token.
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

/// The token of an `Authorization: Bearer <jwt>` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = req
            .app_data::<web::Data<TokenVerifier>>()
            .expect("TokenVerifier is registered in startup")
            .clone();
        let revocations = req.app_data::<web::Data<Arc<Revocations>>>().cloned();
        let token = bearer_token(req.headers()).map(str::to_owned);
        Box::pin(async move {
            let claims = match token {
                None => Err(AuthError::Missing),
                Some(token) => verifier.verify_fresh(&token).await,
            }
            .map_err(ApiError::from)?;
            match revocations {
                Some(r) if r.is_revoked(&claims) => Err(revoked()),
                _ => Ok(Caller(claims)),
            }
        })
    }
}

/// The answer to a revoked token, wherever it is shown.
pub fn revoked() -> ApiError {
    ApiError::Unauthorized("this token was revoked: get a new one".into())
}
