//! Live streams share their work: one snapshot of a drop per tick, built once and broadcast to
//! every stream of that drop (the live page, the studio, the overlays), however many are open; and
//! a cap on open streams, beyond which a new one is refused with 503 instead of slowing the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::live::{snapshot, Snapshot, PUSH_EVERY};
use crate::state::AppState;

/// A drop's latest snapshot (or why there is none), shared.
pub type Latest = Option<Arc<Result<Snapshot, String>>>;

/// The open streams and their drops' broadcasts.
#[derive(Debug)]
pub struct Streams {
    drops: Mutex<HashMap<String, Arc<watch::Sender<Latest>>>>,
    slots: Arc<Semaphore>,
    cap: usize,
}

impl Streams {
    /// At most `cap` streams open at once.
    pub fn new(cap: usize) -> Self {
        Streams { drops: Mutex::new(HashMap::new()), slots: Arc::new(Semaphore::new(cap)), cap }
    }

    /// A place for one more stream, or 503 when `cap` are open.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::unavailable(format!("too many live streams open ({}); try again in a moment", self.cap))
        })
    }

    /// The drop's broadcast, started when it is the drop's first stream.
    pub fn subscribe(&self, state: &AppState, drop_id: &str) -> watch::Receiver<Latest> {
        let mut drops = self.drops.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = drops.get(drop_id) {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(None);
        let sender = Arc::new(sender);
        drops.insert(drop_id.to_owned(), sender.clone());
        tokio::spawn(broadcast(state.clone(), drop_id.to_owned(), sender));
        receiver
    }

    /// Ends the drop's broadcast if nobody watches it any more (checked under the lock, so a
    /// stream that subscribes meanwhile keeps it).
    fn retire(&self, drop_id: &str, sender: &watch::Sender<Latest>) -> bool {
        let mut drops = self.drops.lock().unwrap_or_else(PoisonError::into_inner);
        if sender.receiver_count() > 0 {
            return false;
        }
        drops.remove(drop_id);
        true
    }
}

/// Builds the drop's snapshot at once, then again at most every [`PUSH_EVERY`] while outcomes
/// arrive (at least every second, so Redis-side changes such as restocks show), until no stream
/// watches the drop.
async fn broadcast(state: AppState, drop_id: String, sender: Arc<watch::Sender<Latest>>) {
    let mut changes = state.live.changes();
    loop {
        let built = snapshot(&state, &drop_id).await.map_err(|e| e.message);
        sender.send_replace(Some(Arc::new(built)));
        let _ = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
        tokio::time::sleep(PUSH_EVERY).await;
        changes.borrow_and_update();
        if state.streams.retire(&drop_id, &sender) {
            return;
        }
    }
}
