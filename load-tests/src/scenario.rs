//! Scenarios: TOML files under `load-tests/scenarios/` — arrivals, drops and SKUs, buyers, and the
//! mix of chat noise, duplicates, garbage and payments — parsed and checked before anything runs.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What went wrong with a scenario file.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: {1}")]
    Parse(String, toml::de::Error),
    #[error("{file}: {field} {why}")]
    Invalid { file: String, field: &'static str, why: String },
}

/// A load scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// How long lines are sent, seconds (then up to 30 s to drain).
    pub duration_s: u64,
    /// Seed of the generator: the same scenario sends the same lines.
    #[serde(default)]
    pub seed: u64,
    pub arrival: Arrival,
    pub drops: Drops,
    pub buyers: Buyers,
    #[serde(default)]
    pub mix: Mix,
}

/// When lines are sent: open loop, on schedule, whatever the answers do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum Arrival {
    /// `rate` lines per second throughout.
    Open { rate: f64 },
    /// From `from` to `to` lines per second, linearly over the run.
    Ramp { from: f64, to: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drops {
    pub count: u32,
    /// SKUs per drop.
    pub skus: u32,
    /// Zipf exponent of SKU popularity (0 = uniform).
    #[serde(default = "default_zipf")]
    pub zipf_s: f64,
    /// Units per SKU at the open.
    pub stock: u32,
    #[serde(default)]
    pub limit_per_buyer: u32,
    #[serde(default = "default_hold")]
    pub hold_s: u32,
    #[serde(default)]
    pub waitlist: bool,
    #[serde(default)]
    pub waitlist_cap: u32,
    /// Split each drop's stock over this many shards (0 or 1: not split).
    #[serde(default)]
    pub shards: u32,
}

fn default_zipf() -> f64 {
    1.0
}

fn default_hold() -> u32 {
    60
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Buyers {
    pub count: u32,
}

/// Shares of the lines (0–1).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Ordinary chat, not an order.
    #[serde(default)]
    pub noise: f64,
    /// A message sent again (same platform message id).
    #[serde(default)]
    pub duplicate: f64,
    /// Bytes that are not a `ChatOrder` at all.
    #[serde(default)]
    pub garbage: f64,
    /// Share of reservations whose buyer pays (the others are cancelled or expire).
    #[serde(default)]
    pub confirm: f64,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Read(file.clone(), e))?;
        let scenario: Scenario = toml::from_str(&text).map_err(|e| ScenarioError::Parse(file.clone(), e))?;
        scenario.validate(&file)?;
        Ok(scenario)
    }

    fn validate(&self, file: &str) -> Result<(), ScenarioError> {
        let bad = |field: &'static str, why: &str| {
            Err(ScenarioError::Invalid { file: file.into(), field, why: why.into() })
        };
        if !(1..=3600).contains(&self.duration_s) {
            return bad("duration_s", "must be 1–3600 (load tests stop by themselves)");
        }
        let (low, high) = match self.arrival {
            Arrival::Open { rate } => (rate, rate),
            Arrival::Ramp { from, to } => (from.min(to), from.max(to)),
        };
        if !(low > 0.0 && high <= 200_000.0) {
            return bad("arrival", "rates must be > 0 and ≤ 200000 lines/s");
        }
        if self.drops.count == 0 || self.drops.count > 1000 {
            return bad("drops.count", "must be 1–1000");
        }
        if self.drops.skus == 0 || self.drops.skus > 200 {
            return bad("drops.skus", "must be 1–200");
        }
        if !(0.0..=10.0).contains(&self.drops.zipf_s) {
            return bad("drops.zipf_s", "must be 0–10");
        }
        if self.drops.shards > 64 {
            return bad("drops.shards", "must be 0–64");
        }
        if !(1..=86_400).contains(&self.drops.hold_s) {
            return bad("drops.hold_s", "must be 1–86400 seconds");
        }
        if self.buyers.count == 0 {
            return bad("buyers.count", "must be at least 1");
        }
        for (field, share) in [
            ("mix.noise", self.mix.noise),
            ("mix.duplicate", self.mix.duplicate),
            ("mix.garbage", self.mix.garbage),
            ("mix.confirm", self.mix.confirm),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return bad(field, "must be a share from 0 to 1");
            }
        }
        if self.mix.noise + self.mix.duplicate + self.mix.garbage >= 1.0 {
            return bad("mix", "noise + duplicate + garbage must leave room for orders");
        }
        Ok(())
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_s)
    }

    /// Lines due by `t` seconds into the run (the integral of the arrival rate).
    pub fn due(&self, t: f64) -> u64 {
        let t = t.clamp(0.0, self.duration_s as f64);
        let lines = match self.arrival {
            Arrival::Open { rate } => rate * t,
            Arrival::Ramp { from, to } => from * t + (to - from) * t * t / (2.0 * self.duration_s as f64),
        };
        lines.floor() as u64
    }

    /// When line `n` (0-based) is due, seconds into the run: the inverse of `due`.
    pub fn due_at(&self, n: u64) -> f64 {
        let n = n as f64;
        match self.arrival {
            Arrival::Open { rate } => n / rate,
            Arrival::Ramp { from, to } => {
                let a = (to - from) / (2.0 * self.duration_s as f64);
                if a.abs() < 1e-12 {
                    n / from
                } else {
                    (-from + (from * from + 4.0 * a * n).max(0.0).sqrt()) / (2.0 * a)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scenario(arrival: Arrival) -> Scenario {
        Scenario {
            name: "t".into(),
            duration_s: 60,
            seed: 0,
            arrival,
            drops: Drops {
                count: 1,
                skus: 2,
                zipf_s: 1.0,
                stock: 10,
                limit_per_buyer: 2,
                hold_s: 60,
                waitlist: false,
                waitlist_cap: 0,
                shards: 0,
            },
            buyers: Buyers { count: 10 },
            mix: Mix::default(),
        }
    }

    #[test]
    fn shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        for name in
            ["quick.toml", "ramp.toml", "smoke.toml", "steady5k.toml", "faults.toml", "faults-split.toml"]
        {
            let s = Scenario::load(&dir.join(name)).unwrap();
            assert!(s.duration_s > 0, "{name}");
        }
        let quick = Scenario::load(&dir.join("quick.toml")).unwrap();
        assert!(quick.duration_s <= 90, "quick must leave room to finish under 2 minutes");
    }

    #[test]
    fn bad_fields_are_named() {
        let mut s = scenario(Arrival::Open { rate: 10.0 });
        s.mix.noise = 1.5;
        assert!(s.validate("f").unwrap_err().to_string().contains("mix.noise"));
        let mut s = scenario(Arrival::Open { rate: 0.0 });
        assert!(s.validate("f").unwrap_err().to_string().contains("arrival"));
        s.arrival = Arrival::Open { rate: 5.0 };
        s.duration_s = 0;
        assert!(s.validate("f").unwrap_err().to_string().contains("duration_s"));
    }

    proptest! {
        #[test]
        fn due_at_inverts_due(from in 1.0f64..5000.0, to in 1.0f64..5000.0, n in 0u64..100_000) {
            let s = scenario(Arrival::Ramp { from, to });
            let t = s.due_at(n);
            prop_assume!(t <= 60.0);
            // At its due time, line n is due (allowing for rounding) and not much earlier.
            prop_assert!(s.due(t + 1e-6) >= n);
            prop_assert!(s.due((t - 0.01).max(0.0)) <= n);
        }
    }
}
