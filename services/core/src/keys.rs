//! The Redis key layout, in one place for every service, tool and test that reads or writes it.
//!
//! * A drop's state: `dl:{drop:<id>}:<name>` for the fifteen names of [`DROP_KEY_NAMES`] — all with
//!   the hash tag `{drop:<id>}`, so one Redis Cluster slot holds a drop (a split drop's shard
//!   `<id>#<k>` is a drop of its own, `dropline_core::shards`). Only the matcher's function library
//!   (`services/matcher/src/dropline.lua`) writes them; it takes them as `KEYS` in this order.
//! * The matchers' sweep registry of a deployment: `dl:drops:<triggers topic>` (drop → partition).
//! * The console's drop records: `dl:console:<triggers topic>:drops`.
//! * Ingest's record of answers sent: `dl:ingest:<reply group>:replied:<drop>`.
//! * The deployment's shared claim secret: `dl:claim-secret` (`crate::claim`).

/// The names of a drop's keys, in the order the function library takes them as `KEYS`.
pub const DROP_KEY_NAMES: [&str; 15] = [
    "meta",
    "stock",
    "held",
    "sold",
    "total",
    "buyers",
    "decisions",
    "holds",
    "expiry",
    "offsets",
    "waitlist",
    "waiting",
    "wlinfo",
    "outbox",
    "stats",
];

/// The field of a drop's `meta` hash that counts its active holds (holds live in the order records
/// of `decisions`; `holds` and `expiry` index them by expiry time, one entry per call).
pub const ACTIVE_HOLDS: &str = "holds";

/// One key of a drop: `dl:{drop:<id>}:<name>` (`name` one of [`DROP_KEY_NAMES`]).
pub fn drop_key(drop_id: &str, name: &str) -> String {
    format!("dl:{{drop:{drop_id}}}:{name}")
}

/// All keys of one drop, in the library's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropKeys {
    keys: [String; 15],
}

impl DropKeys {
    /// Keys of drop `drop_id`.
    pub fn new(drop_id: &str) -> Self {
        Self { keys: DROP_KEY_NAMES.map(|name| drop_key(drop_id, name)) }
    }

    /// The drop's metadata hash (state, settings, catalog).
    pub fn meta(&self) -> &str {
        &self.keys[0]
    }

    /// The hash of per-SKU stock left for sale.
    pub fn stock(&self) -> &str {
        &self.keys[1]
    }

    /// The hash of decisions (first decisions, hold lifecycles, triggers, reply-to records).
    pub fn decisions(&self) -> &str {
        &self.keys[6]
    }

    /// The hash of waitlisted orders per SKU.
    pub fn waiting(&self) -> &str {
        &self.keys[11]
    }

    /// All keys, in the order the library expects them.
    pub fn all(&self) -> &[String; 15] {
        &self.keys
    }
}

/// The matchers' sweep registry (drop → triggers partition) of the deployment on `triggers_topic`.
pub fn sweep_registry(triggers_topic: &str) -> String {
    format!("dl:drops:{triggers_topic}")
}

/// The console's drop records of the deployment on `triggers_topic`.
pub fn console_drops(triggers_topic: &str) -> String {
    format!("dl:console:{triggers_topic}:drops")
}

/// Ingest's record of the answers sent for a drop (field: the answer's key).
pub fn replies_sent(group: &str, drop_id: &str) -> String {
    format!("dl:ingest:{group}:replied:{drop_id}")
}

/// Where a deployment without a configured claim secret keeps the one its matchers share.
pub const CLAIM_SECRET: &str = "dl:claim-secret";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_is_one_slot() {
        let keys = DropKeys::new("fall#2");
        assert!(keys.all().iter().all(|k| k.starts_with("dl:{drop:fall#2}:")));
        assert_eq!(keys.meta(), "dl:{drop:fall#2}:meta");
        assert_eq!(keys.decisions(), drop_key("fall#2", "decisions"));
        assert_eq!(sweep_registry("t"), "dl:drops:t");
    }
}
