//! `/healthz` (the process serves) and `/readyz` (its dependencies answer).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::db::{self, DbPool};

/// How long readiness waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: 200 while the process serves.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when the database answers, else 503 with the reason.
pub async fn readyz(pool: web::Data<DbPool>) -> HttpResponse {
    let pool = pool.get_ref().clone();
    let check = web::block(move || db::ping(&pool));
    let database = match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 2 s".to_owned()),
    };
    match database {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready", "database": "ok"})),
        Err(why) => {
            HttpResponse::ServiceUnavailable().json(json!({"status": "not ready", "database": why}))
        }
    }
}
