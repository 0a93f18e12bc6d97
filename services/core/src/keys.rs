//! The Redis key layout, in one place for every service, tool and test that reads or writes it.
//!
//! Every key starts with `dl:<namespace>:`, the deployment's [`Keyspace`] (`DROPLINE_NAMESPACE`,
//! by default the topic prefix without its separator), so deployments sharing one Redis — `staging`
//! and `prod` with the same drop ids — never see each other's stock, decisions or offsets.
//!
//! * A drop's state: `dl:<ns>:{drop:<id>}:<name>` for the fifteen names of [`DROP_KEY_NAMES`] — all
//!   with the hash tag `{drop:<id>}`, so one Redis Cluster slot holds a drop (a split drop's shard
//!   `<id>#<k>` is a drop of its own, `dropline_core::shards`). Only the matcher's function library
//!   (`services/matcher/src/dropline.lua`) writes them; it takes them as `KEYS` in this order. The
//!   namespace never holds `{` or `}`, so the drop's tag is the key's first braces.
//! * The matchers' sweep registry: `dl:<ns>:drops` (drop → triggers partition).
//! * The console's drop records: `dl:<ns>:console:drops`.
//! * Ingest's record of answers sent: `dl:<ns>:ingest:<reply group>:replied:<drop>`.
//! * The deployment's shared claim secret: `dl:<ns>:claim-secret` (`crate::claim`).

use std::fmt;

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

/// The longest namespace: keys stay short, and a namespace is a name, not data.
pub const MAX_NAMESPACE_LEN: usize = 128;

/// A deployment's share of Redis: the prefix of every key it reads or writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Keyspace {
    namespace: String,
}

/// A namespace that cannot prefix keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a namespace is 1 to {MAX_NAMESPACE_LEN} letters, digits, `.`, `_` or `-` (got {0:?})")]
pub struct BadNamespace(pub String);

impl Default for Keyspace {
    /// The namespace of a deployment on unprefixed topics.
    fn default() -> Self {
        Self { namespace: "default".into() }
    }
}

impl Keyspace {
    /// The keyspace named `namespace`.
    pub fn new(namespace: &str) -> Result<Self, BadNamespace> {
        let ok = !namespace.is_empty()
            && namespace.len() <= MAX_NAMESPACE_LEN
            && namespace.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self { namespace: namespace.to_owned() })
        } else {
            Err(BadNamespace(namespace.to_owned()))
        }
    }

    /// The namespace a deployment on topics prefixed `prefix` has unless one is configured:
    /// `staging.` → `staging`; no prefix → `default`. A prefix is a valid topic name, so only
    /// its length can make it a bad namespace.
    pub fn for_topic_prefix(prefix: &str) -> Result<Self, BadNamespace> {
        let name = prefix.trim_end_matches(['.', '_', '-']);
        if name.is_empty() {
            Ok(Self::default())
        } else {
            Self::new(name)
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// One key of a drop: `dl:<ns>:{drop:<id>}:<name>` (`name` one of [`DROP_KEY_NAMES`]).
    pub fn drop_key(&self, drop_id: &str, name: &str) -> String {
        format!("dl:{}:{{drop:{drop_id}}}:{name}", self.namespace)
    }

    /// All keys of drop `drop_id`, in the library's order.
    pub fn drop_keys(&self, drop_id: &str) -> DropKeys {
        DropKeys { keys: DROP_KEY_NAMES.map(|name| self.drop_key(drop_id, name)) }
    }

    /// The matchers' sweep registry (drop → triggers partition).
    pub fn sweep_registry(&self) -> String {
        format!("dl:{}:drops", self.namespace)
    }

    /// The console's drop records.
    pub fn console_drops(&self) -> String {
        format!("dl:{}:console:drops", self.namespace)
    }

    /// Ingest's record of the answers sent for a drop by reply group `group` (field: the answer's key).
    pub fn replies_sent(&self, group: &str, drop_id: &str) -> String {
        format!("dl:{}:ingest:{group}:replied:{drop_id}", self.namespace)
    }

    /// Where a deployment without a configured claim secret keeps the one its matchers share.
    pub fn claim_secret(&self) -> String {
        format!("dl:{}:claim-secret", self.namespace)
    }
}

impl fmt::Display for Keyspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.namespace)
    }
}

/// All keys of one drop, in the library's order ([`Keyspace::drop_keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropKeys {
    keys: [String; 15],
}

impl DropKeys {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_is_one_slot_of_its_namespace() {
        let space = Keyspace::new("prod").unwrap();
        let keys = space.drop_keys("fall#2");
        assert!(keys.all().iter().all(|k| k.starts_with("dl:prod:{drop:fall#2}:")));
        assert_eq!(keys.meta(), "dl:prod:{drop:fall#2}:meta");
        assert_eq!(keys.decisions(), space.drop_key("fall#2", "decisions"));
        assert_eq!(space.sweep_registry(), "dl:prod:drops");
    }

    #[test]
    fn namespaces_keep_deployments_apart() {
        let staging = Keyspace::for_topic_prefix("staging.").unwrap();
        let prod = Keyspace::for_topic_prefix("prod.").unwrap();
        assert_eq!(staging.namespace(), "staging");
        assert_eq!(Keyspace::for_topic_prefix("").unwrap(), Keyspace::default());
        let (a, b) = (staging.drop_keys("x"), prod.drop_keys("x"));
        assert!(a.all().iter().zip(b.all()).all(|(a, b)| a != b));
        for key in [staging.sweep_registry(), staging.console_drops(), staging.claim_secret()] {
            assert!(key.starts_with("dl:staging:"), "{key}");
        }
    }

    #[test]
    fn a_namespace_cannot_move_the_hash_tag() {
        for bad in ["", "a{b", "a}b", "a:b", "a b", &"n".repeat(MAX_NAMESPACE_LEN + 1)] {
            assert!(Keyspace::new(bad).is_err(), "{bad:?}");
        }
        assert!(Keyspace::new("team-1_eu.prod").is_ok());
    }
}
