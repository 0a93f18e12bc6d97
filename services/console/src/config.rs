//! `DROPLINE_CONSOLE_*` settings of the console.

use dropline_core::settings::SettingsError;

use crate::auth::Access;

/// How the console runs (it listens on `DROPLINE_HTTP`).
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Tokens and roles: `DROPLINE_CONSOLE_TOKENS` (`role:token,…`) or the file named by
    /// `DROPLINE_CONSOLE_TOKENS_FILE` (one `role:token` per line); with neither, the tokens this
    /// console made on its first start (`first_start`, kept in its state directory); writes per
    /// token per second `DROPLINE_CONSOLE_WRITE_RATE` (default 20).
    pub access: Access,
    /// Tokens made by this start (role, token): the console prints their login URLs once.
    pub made_tokens: Vec<(String, String)>,
    /// Secret of the Stripe webhook endpoint (`DROPLINE_STRIPE_WEBHOOK_SECRET`, `whsec_…`). Unset:
    /// no Stripe; SKUs without a checkout link are paid in test mode on the claim page.
    pub stripe_secret: Option<Vec<u8>>,
    /// Test-mode payments on claim pages for SKUs without a checkout link
    /// (`DROPLINE_CONSOLE_TEST_PAYMENTS=on|off`; default on without Stripe, off with it, so a
    /// real shop never hands out items for a test click).
    pub test_payments: bool,
    /// Most live streams (SSE) open at once (`DROPLINE_CONSOLE_MAX_STREAMS`, default 2000); more
    /// are refused with 503.
    pub max_streams: usize,
}

impl ConsoleConfig {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let bad =
            |var: &str, value: String, expected: String| SettingsError { var: var.into(), value, expected };
        let rate = match lookup("DROPLINE_CONSOLE_WRITE_RATE") {
            None => 20,
            Some(v) => v.trim().parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                bad(
                    "DROPLINE_CONSOLE_WRITE_RATE",
                    v.clone(),
                    "a whole number ≥ 1 (writes per second per token)".into(),
                )
            })?,
        };
        let mut made_tokens = Vec::new();
        let (var, spec) = match (lookup("DROPLINE_CONSOLE_TOKENS"), lookup("DROPLINE_CONSOLE_TOKENS_FILE")) {
            (Some(spec), _) => ("DROPLINE_CONSOLE_TOKENS", spec),
            (None, Some(file)) => {
                let spec = std::fs::read_to_string(file.trim()).map_err(|e| {
                    bad("DROPLINE_CONSOLE_TOKENS_FILE", file.clone(), format!("a readable file ({e})"))
                })?;
                ("DROPLINE_CONSOLE_TOKENS_FILE", spec)
            }
            (None, None) => {
                let expected = |why: String| {
                    format!(
                        "role:token entries (creator, producer, editor), DROPLINE_CONSOLE_TOKENS_FILE, \
                         or a state directory for tokens made on the first start ({why})"
                    )
                };
                let dir = crate::first_start::state_dir(&lookup).ok_or_else(|| {
                    bad(
                        "DROPLINE_CONSOLE_TOKENS",
                        String::new(),
                        expected("no DROPLINE_CONSOLE_STATE nor HOME".into()),
                    )
                })?;
                let (spec, made) = crate::first_start::tokens(&dir)
                    .map_err(|why| bad("DROPLINE_CONSOLE_STATE", dir.display().to_string(), expected(why)))?;
                if made {
                    made_tokens = crate::first_start::logins(&spec);
                }
                ("DROPLINE_CONSOLE_STATE", spec)
            }
        };
        let access = Access::parse(&spec, rate).map_err(|why| bad(var, "(hidden)".into(), why))?;
        let stripe_secret = match lookup("DROPLINE_STRIPE_WEBHOOK_SECRET").map(|v| v.trim().to_owned()) {
            None => None,
            Some(v) if v.is_empty() => None,
            Some(v) if v.len() < 16 => {
                return Err(bad(
                    "DROPLINE_STRIPE_WEBHOOK_SECRET",
                    "(hidden)".into(),
                    "the endpoint's signing secret (whsec_…)".into(),
                ))
            }
            Some(v) => Some(v.into_bytes()),
        };
        let test_payments =
            match lookup("DROPLINE_CONSOLE_TEST_PAYMENTS").map(|v| v.trim().to_ascii_lowercase()) {
                None => stripe_secret.is_none(),
                Some(v) if v.is_empty() => stripe_secret.is_none(),
                Some(v) if v == "on" => true,
                Some(v) if v == "off" => false,
                Some(v) => return Err(bad("DROPLINE_CONSOLE_TEST_PAYMENTS", v, "on or off".into())),
            };
        let max_streams = match lookup("DROPLINE_CONSOLE_MAX_STREAMS") {
            None => 2_000,
            Some(v) => v.trim().parse().ok().filter(|n: &usize| *n >= 1).ok_or_else(|| {
                bad(
                    "DROPLINE_CONSOLE_MAX_STREAMS",
                    v.clone(),
                    "a whole number ≥ 1 (open live streams)".into(),
                )
            })?,
        };
        Ok(ConsoleConfig { access, made_tokens, stripe_secret, test_payments, max_streams })
    }
}
