//! `GET /metrics`: who may scrape, and the scrape itself.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};

use super::{Metrics, CONTENT_TYPE};
use crate::auth::{bearer_token, revoked, AuthError, Revocations, Role, TokenVerifier};
use crate::db::DbPool;
use crate::error::ApiError;
use crate::rooms::Hub;

/// Whether the peer is this machine: IPv4 and IPv6 loopback, and IPv4-mapped loopback.
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Who may scrape: any loopback peer while `loopback_open`; anyone else needs an
/// `admin` token that is not revoked.
///
/// Behind a reverse proxy on the same machine every caller is a loopback peer: there,
/// `EVENTIDE_METRICS_LOOPBACK_OPEN=false` makes every scrape show an admin token.
pub fn authorize(
    req: &HttpRequest,
    verifier: &TokenVerifier,
    revocations: &Revocations,
    loopback_open: bool,
) -> Result<(), ApiError> {
    if loopback_open && req.peer_addr().is_some_and(|a| is_loopback(a.ip())) {
        return Ok(());
    }
    let claims = match bearer_token(req.headers()) {
        None => Err(AuthError::Missing),
        Some(token) => verifier.verify(token),
    }?;
    if revocations.is_revoked(&claims) {
        return Err(revoked());
    }
    if claims.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "metrics need an admin token (or, when EVENTIDE_METRICS_LOOPBACK_OPEN is true, \
             a loopback caller)"
                .into(),
        ))
    }
}

/// `GET /metrics`: the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    description = "Prometheus metrics in the text exposition format. Loopback callers need no \
                   token unless `EVENTIDE_METRICS_LOOPBACK_OPEN` is `false`; others need an \
                   `admin` token that is not revoked.",
    responses(
        (status = 200, description = "The metrics", content_type = "text/plain", body = String),
        (status = 401, description = "No valid token, or a revoked one, from a caller that needs one", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin token, from a caller that needs one", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn scrape(
    req: HttpRequest,
    metrics: web::Data<Arc<Metrics>>,
    verifier: web::Data<TokenVerifier>,
    revocations: web::Data<Arc<Revocations>>,
    pool: web::Data<DbPool>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &verifier, &revocations, metrics.loopback_open)?;
    let body = metrics.render(&pool, hub.backplane().map(|b| &**b));
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_peers() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("127.9.9.9".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
    }
}
