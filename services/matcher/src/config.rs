//! The matcher's own settings (`DROPLINE_MATCHER_*`), beside the shared ones in `dropline_core::Settings`.

use std::net::SocketAddr;
use std::time::Duration;

use dropline_core::claim::ClaimSecret;
use dropline_core::settings::{invalid, SettingsError, Vars};

/// How the matcher consumes, batches and sweeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatcherConfig {
    /// Consumer group (`DROPLINE_MATCHER_GROUP`, default `dropline-matcher`).
    pub group: String,
    /// Most messages decided together (`DROPLINE_MATCHER_MAX_BATCH`, default 256). Batches take
    /// only what has already arrived, so an idle matcher decides one order at a time.
    pub max_batch: usize,
    /// How often due holds are expired (`DROPLINE_MATCHER_SWEEP`, default `100ms`).
    pub sweep_interval: Duration,
    /// Payment window when a drop sets none (`DROPLINE_MATCHER_DEFAULT_HOLD`, default `5m`).
    pub default_hold: Duration,
    /// Most units in one chat line when a drop sets none (`DROPLINE_MATCHER_MAX_QUANTITY`, default 10).
    pub max_quantity: u32,
    /// `/metrics` and `/healthz` (`DROPLINE_ADMIN`, default `127.0.0.1:9101`).
    pub admin: SocketAddr,
    /// Replicas that must hold a decision before it is published (`DROPLINE_MATCHER_WAIT_REPLICAS`,
    /// default 0: none). With 1 or more, a Redis primary failover cannot lose a decision buyers
    /// were already told about: the matcher issues `WAIT` after each step and publishes nothing
    /// until enough replicas acknowledged it.
    pub wait_replicas: u32,
    /// How long one `WAIT` may block (`DROPLINE_MATCHER_WAIT_TIMEOUT`, default `50ms`); it is
    /// repeated, with the outcomes held back, until the replicas catch up.
    pub wait_timeout: Duration,
    /// Key of the orders' claim codes (`DROPLINE_CLAIM_SECRET`, at least 16 bytes). Unset: the
    /// deployment's matchers share one they keep in Redis (`dropline_core::claim`).
    pub claim_secret: Option<ClaimSecret>,
}

impl Default for MatcherConfig {
    fn default() -> Self {
        Self {
            group: "dropline-matcher".into(),
            max_batch: 256,
            sweep_interval: Duration::from_millis(100),
            default_hold: Duration::from_secs(300),
            max_quantity: 10,
            admin: SocketAddr::from(([127, 0, 0, 1], 9101)),
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(50),
            claim_secret: None,
        }
    }
}

impl MatcherConfig {
    /// Reads the process environment (and the admin address of the shared settings).
    pub fn from_env(admin: Option<SocketAddr>) -> Result<Self, SettingsError> {
        Self::from_lookup(admin, |var| std::env::var(var).ok())
    }

    /// Reads settings through `lookup`; empty values count as unset.
    pub fn from_lookup<F>(admin: Option<SocketAddr>, lookup: F) -> Result<Self, SettingsError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let vars = Vars::new(lookup);
        let mut c = Self::default();
        if let Some(admin) = admin {
            c.admin = admin;
        }
        if let Some(v) = vars.get("DROPLINE_MATCHER_GROUP") {
            c.group = v;
        }
        if let Some(n) = vars.number("DROPLINE_MATCHER_MAX_BATCH", 1..=4096)? {
            c.max_batch = n;
        }
        if let Some(d) = vars.duration("DROPLINE_MATCHER_SWEEP")? {
            c.sweep_interval = d;
        }
        if let Some(d) = vars.duration("DROPLINE_MATCHER_DEFAULT_HOLD")? {
            c.default_hold = d;
        }
        if let Some(n) = vars.number("DROPLINE_MATCHER_MAX_QUANTITY", 1..=1000)? {
            c.max_quantity = n;
        }
        if let Some(n) = vars.number("DROPLINE_MATCHER_WAIT_REPLICAS", 0..=16)? {
            c.wait_replicas = n;
        }
        if let Some(d) = vars.duration("DROPLINE_MATCHER_WAIT_TIMEOUT")? {
            c.wait_timeout = d;
        }
        if let Some(v) = vars.get("DROPLINE_CLAIM_SECRET") {
            if v.len() < 16 {
                return Err(invalid("DROPLINE_CLAIM_SECRET", "(hidden)", "at least 16 bytes"));
            }
            c.claim_secret = Some(ClaimSecret::new(v));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = MatcherConfig::from_lookup(None, |_| None).expect("defaults");
        assert_eq!(c, MatcherConfig::default());
        let c = MatcherConfig::from_lookup(Some("127.0.0.1:9999".parse().expect("addr")), |var| match var {
            "DROPLINE_MATCHER_GROUP" => Some("g2".into()),
            "DROPLINE_MATCHER_MAX_BATCH" => Some("64".into()),
            "DROPLINE_MATCHER_SWEEP" => Some("250ms".into()),
            "DROPLINE_MATCHER_DEFAULT_HOLD" => Some("90s".into()),
            "DROPLINE_MATCHER_MAX_QUANTITY" => Some("3".into()),
            "DROPLINE_MATCHER_WAIT_REPLICAS" => Some("1".into()),
            "DROPLINE_MATCHER_WAIT_TIMEOUT" => Some("20ms".into()),
            _ => None,
        })
        .expect("valid");
        assert_eq!(c.group, "g2");
        assert_eq!(c.max_batch, 64);
        assert_eq!(c.sweep_interval, Duration::from_millis(250));
        assert_eq!(c.default_hold, Duration::from_secs(90));
        assert_eq!(c.max_quantity, 3);
        assert_eq!(c.admin.port(), 9999);
        assert_eq!((c.wait_replicas, c.wait_timeout), (1, Duration::from_millis(20)));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("DROPLINE_MATCHER_MAX_BATCH", "0"),
            ("DROPLINE_MATCHER_MAX_BATCH", "lots"),
            ("DROPLINE_MATCHER_SWEEP", "0s"),
            ("DROPLINE_MATCHER_DEFAULT_HOLD", "soon"),
            ("DROPLINE_MATCHER_MAX_QUANTITY", "5000"),
            ("DROPLINE_MATCHER_WAIT_REPLICAS", "-1"),
            ("DROPLINE_MATCHER_WAIT_TIMEOUT", "never"),
            ("DROPLINE_CLAIM_SECRET", "short"),
        ] {
            let err = MatcherConfig::from_lookup(None, |v| (v == var).then(|| value.to_owned()))
                .expect_err("refused");
            assert_eq!(err.var, var);
        }
    }
}
