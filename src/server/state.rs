//! The application state: everything the handlers share, built once by
//! [`crate::startup`] and registered in each worker's `App`, together with the
//! extractor settings that route body, path and query errors to [`crate::error`].

use std::sync::Arc;

use actix_web::web;

use crate::auth::{Revocations, TokenVerifier};
use crate::availability::AvailabilityStore;
use crate::db::DbPool;
use crate::error;
use crate::health::ReadinessCheck;
use crate::metrics::Metrics;
use crate::rooms::Hub;
use crate::ws::WsContext;

/// Everything the handlers share, cloned into each worker. Each field is the
/// `web::Data` its handlers extract.
#[derive(Clone)]
pub struct AppState {
    /// The room registry, for the emit routes, readiness and metrics.
    pub hub: web::Data<Hub>,
    /// Slots and their change log.
    pub store: web::Data<AvailabilityStore>,
    /// Verifies the bearer token of every `/api` route.
    pub verifier: web::Data<TokenVerifier>,
    /// The database pool, for its metrics.
    pub pool: web::Data<DbPool>,
    /// Readiness check of the database.
    pub probe: web::Data<ReadinessCheck>,
    /// What the WebSocket sessions share.
    pub ws: web::Data<Arc<WsContext>>,
    /// This hub's metrics.
    pub metrics: web::Data<Arc<Metrics>>,
    /// Revoked subjects, refused by the REST extractor.
    pub revocations: web::Data<Arc<Revocations>>,
    /// Largest REST body (`EVENTIDE_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
}

impl AppState {
    /// Registers the state and the extractor error handlers in an `App`.
    pub fn register(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.hub.clone())
            .app_data(self.store.clone())
            .app_data(self.verifier.clone())
            .app_data(self.pool.clone())
            .app_data(self.probe.clone())
            .app_data(self.ws.clone())
            .app_data(self.metrics.clone())
            .app_data(self.revocations.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(self.max_body_bytes)
                    .content_type_required(false)
                    .error_handler(error::json_error),
            )
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .app_data(web::QueryConfig::default().error_handler(error::query_error));
    }
}
