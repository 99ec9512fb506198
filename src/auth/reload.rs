//! SIGHUP: re-read the PEM public key file or the generated secret file, so a key can
//! be rotated without a restart. A file that cannot be used is logged and the keys in
//! force stay.

use std::sync::Arc;

use super::TokenVerifier;

/// Re-reads the verifier's key file on every SIGHUP until the runtime stops. Returns
/// at once where SIGHUP does not exist.
pub async fn reload_on_sighup(verifier: Arc<TokenVerifier>) {
    #[cfg(unix)]
    {
        use actix_web::rt::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            log::warn!("cannot listen for SIGHUP: key files will not be reloaded");
            return;
        };
        while hangup.recv().await.is_some() {
            let verifier = verifier.clone();
            match actix_web::web::block(move || verifier.reload_files()).await {
                Ok(Ok(true)) => log::info!("SIGHUP: token keys reloaded"),
                Ok(Ok(false)) => log::info!("SIGHUP: no key file to reload"),
                Ok(Err(e)) => log::error!("SIGHUP: {e}; the keys in force stay"),
                Err(e) => log::error!("SIGHUP: cannot reload the keys: {e}"),
            }
        }
    }
    #[cfg(not(unix))]
    drop(verifier);
}
