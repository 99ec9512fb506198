//! `/healthz` (the process serves) and `/readyz` (its dependencies answer).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::db::{self, DbPool};
use crate::rooms::Hub;

/// How long readiness waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: 200 while the process serves.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when the database (and Redis, in a cluster) answer, else 503
/// with the reason.
pub async fn readyz(pool: web::Data<DbPool>, hub: web::Data<Hub>) -> HttpResponse {
    let pool = pool.get_ref().clone();
    let check = web::block(move || db::ping(&pool));
    let database = match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 2 s".to_owned()),
    };
    let redis = match hub.backplane().cloned() {
        None => None,
        Some(backplane) if !backplane.is_subscribed() => {
            Some(Err("not subscribed to the cluster channel".to_owned()))
        }
        Some(backplane) => {
            let check = web::block(move || backplane.ping_blocking());
            Some(match tokio::time::timeout(READY_TIMEOUT, check).await {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer within 2 s".to_owned()),
            })
        }
    };
    let ready = database.is_ok() && redis.as_ref().is_none_or(Result::is_ok);
    let mut body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "database": database.err().unwrap_or_else(|| "ok".into()),
    });
    if let Some(redis) = redis {
        body["redis"] = json!(redis.err().unwrap_or_else(|| "ok".into()));
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
