//! `DROPLINE_INGEST_*` settings of the ingest service.

use std::net::SocketAddr;

use dropline_core::settings::SettingsError;

use crate::client::IrcConfig;

/// How the ingest service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// The IRC chat to read (`DROPLINE_INGEST_IRC` = `host:port`; none = no IRC).
    pub irc: Option<IrcConfig>,
    /// The webhook listener (`DROPLINE_INGEST_HTTP`, default `127.0.0.1:8091`), served only when
    /// `webhook_secret` is set.
    pub http: SocketAddr,
    /// HMAC secret of the webhook (`DROPLINE_INGEST_WEBHOOK_SECRET`, at least 10 bytes).
    pub webhook_secret: Option<Vec<u8>>,
    /// Network name for webhook lines and IRC (`DROPLINE_INGEST_NETWORK`, default `twitch`).
    pub network: String,
    /// Drop for orders on channels with no live drop (`DROPLINE_INGEST_FALLBACK_DROP`; default:
    /// such orders are not published).
    pub fallback_drop: Option<String>,
    /// `/metrics` and `/healthz` (`DROPLINE_ADMIN`, default `127.0.0.1:9103`).
    pub admin: SocketAddr,
}

impl IngestConfig {
    /// Reads the process environment.
    pub fn from_env(admin: Option<SocketAddr>) -> Result<Self, SettingsError> {
        Self::from_lookup(admin, |name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (tests pass a map).
    pub fn from_lookup(
        admin: Option<SocketAddr>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let bad = |var: &str, value: &str, expected: &str| SettingsError {
            var: var.into(),
            value: value.into(),
            expected: expected.into(),
        };
        let network = get("DROPLINE_INGEST_NETWORK").unwrap_or_else(|| "twitch".into());
        if !network.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(bad("DROPLINE_INGEST_NETWORK", &network, "letters, digits and -"));
        }
        let irc = match get("DROPLINE_INGEST_IRC") {
            None => None,
            Some(server) => {
                if !server.contains(':') {
                    return Err(bad(
                        "DROPLINE_INGEST_IRC",
                        &server,
                        "host:port, e.g. irc.chat.twitch.tv:6667",
                    ));
                }
                let channels: Vec<String> = get("DROPLINE_INGEST_CHANNELS")
                    .unwrap_or_default()
                    .split(',')
                    .map(|c| c.trim().to_lowercase())
                    .filter(|c| !c.is_empty())
                    .collect();
                if channels.is_empty() || channels.iter().any(|c| !c.starts_with('#') || c.contains(' ')) {
                    let value = get("DROPLINE_INGEST_CHANNELS").unwrap_or_default();
                    return Err(bad(
                        "DROPLINE_INGEST_CHANNELS",
                        &value,
                        "comma-separated channels like #creator",
                    ));
                }
                Some(IrcConfig {
                    server,
                    nick: get("DROPLINE_INGEST_IRC_NICK").unwrap_or_else(|| "justinfan4242".into()),
                    pass: get("DROPLINE_INGEST_IRC_PASS"),
                    channels,
                    network: network.clone(),
                })
            }
        };
        let http = match get("DROPLINE_INGEST_HTTP") {
            None => SocketAddr::from(([127, 0, 0, 1], 8091)),
            Some(v) => v.parse().map_err(|_| bad("DROPLINE_INGEST_HTTP", &v, "host:port"))?,
        };
        let webhook_secret = match get("DROPLINE_INGEST_WEBHOOK_SECRET") {
            Some(secret) if secret.len() < 10 => {
                return Err(bad("DROPLINE_INGEST_WEBHOOK_SECRET", "(hidden)", "at least 10 bytes"))
            }
            other => other.map(String::into_bytes),
        };
        Ok(IngestConfig {
            irc,
            http,
            webhook_secret,
            network,
            fallback_drop: get("DROPLINE_INGEST_FALLBACK_DROP"),
            admin: admin.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9103))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<IngestConfig, SettingsError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        IngestConfig::from_lookup(None, |name| map.get(name).cloned())
    }

    #[test]
    fn defaults_and_irc() {
        let c = config(&[]).unwrap();
        assert_eq!((c.irc, c.webhook_secret, c.network.as_str()), (None, None, "twitch"));
        let c = config(&[("DROPLINE_INGEST_IRC", "127.0.0.1:6667"), ("DROPLINE_INGEST_CHANNELS", "#A, #b")])
            .unwrap();
        let irc = c.irc.unwrap();
        assert_eq!(irc.channels, vec!["#a", "#b"]);
        assert_eq!(irc.nick, "justinfan4242");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (vars, var) in [
            (vec![("DROPLINE_INGEST_IRC", "nohost")], "DROPLINE_INGEST_IRC"),
            (vec![("DROPLINE_INGEST_IRC", "h:1")], "DROPLINE_INGEST_CHANNELS"),
            (
                vec![("DROPLINE_INGEST_IRC", "h:1"), ("DROPLINE_INGEST_CHANNELS", "creator")],
                "DROPLINE_INGEST_CHANNELS",
            ),
            (vec![("DROPLINE_INGEST_WEBHOOK_SECRET", "short")], "DROPLINE_INGEST_WEBHOOK_SECRET"),
            (vec![("DROPLINE_INGEST_HTTP", "x")], "DROPLINE_INGEST_HTTP"),
            (vec![("DROPLINE_INGEST_NETWORK", "a b")], "DROPLINE_INGEST_NETWORK"),
        ] {
            let err = config(&vars).unwrap_err();
            assert_eq!(err.var, var, "{vars:?}");
        }
    }
}
