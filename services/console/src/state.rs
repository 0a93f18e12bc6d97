//! What every request handler shares.

use std::sync::Arc;

use dropline_core::admin::Health;
use dropline_core::Settings;
use rdkafka::producer::FutureProducer;

use crate::auth::Access;
use crate::claims::Claims;
use crate::clips::ClipIndex;
use crate::ledger::Ledger;
use crate::live::Live;
use crate::metrics::Metrics;

/// Shared by the handlers (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub access: Access,
    pub redis: dropline_core::redis::Conn,
    pub producer: FutureProducer,
    pub live: Arc<Live>,
    /// The event log folded for reports.
    pub ledger: Arc<Ledger>,
    pub clips: Arc<ClipIndex>,
    pub metrics: Metrics,
    pub health: Health,
    pub claims: Arc<Claims>,
    /// Open live streams and their drops' shared snapshots.
    pub streams: Arc<crate::streams::Streams>,
    /// `/readyz`'s last answer (reused for a moment).
    pub readiness: Arc<crate::service::Readiness>,
    /// `DROPLINE_STRIPE_WEBHOOK_SECRET`: Stripe payments are taken (and test mode is off).
    pub stripe_secret: Option<Arc<Vec<u8>>>,
    /// Claim pages may confirm SKUs without a checkout link directly (test mode).
    pub test_payments: bool,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("access", &self.access).finish_non_exhaustive()
    }
}
