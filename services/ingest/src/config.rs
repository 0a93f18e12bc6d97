//! `DROPLINE_INGEST_*` settings of the ingest service.

use std::net::SocketAddr;

use dropline_core::settings::SettingsError;

use crate::client::IrcConfig;
use crate::reply::budget::Rate;
use crate::reply::ReplyConfig;

/// How the ingest service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// The IRC chat to read (`DROPLINE_INGEST_IRC` = `host:port`; none = no IRC).
    pub irc: Option<IrcConfig>,
    /// The webhook listener (`DROPLINE_INGEST_HTTP`, default `127.0.0.1:8091`), served only when
    /// `webhook_secret` is set.
    pub http: SocketAddr,
    /// HMAC secret of the webhook (`DROPLINE_INGEST_WEBHOOK_SECRET`, at least 10 bytes).
    pub webhook_secret: Option<dropline_core::secret::Secret>,
    /// Network name for webhook lines and IRC (`DROPLINE_INGEST_NETWORK`, default `twitch`).
    pub network: String,
    /// Drop for orders on channels with no live drop (`DROPLINE_INGEST_FALLBACK_DROP`; default:
    /// such orders are not published).
    pub fallback_drop: Option<String>,
    /// `/metrics` and `/healthz` (`DROPLINE_ADMIN`, default `127.0.0.1:9103`).
    pub admin: SocketAddr,
    /// Answers to buyers (`DROPLINE_INGEST_REPLIES=on|off`): `None` when off. On by default when
    /// IRC is read with a nick that may send (not the anonymous `justinfan…`) or a reply webhook
    /// is set.
    pub replies: Option<Replies>,
}

/// Where answers go and how fast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replies {
    pub config: ReplyConfig,
    /// Answer IRC orders on their channel.
    pub irc: bool,
}

/// The anonymous Twitch reader: may read chat, may not send.
pub fn is_anonymous(nick: &str) -> bool {
    nick.to_ascii_lowercase().starts_with("justinfan")
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
            Some(value) => {
                let (tls, server) = match value.split_once("://") {
                    Some(("ircs", rest)) => (true, rest.to_owned()),
                    Some(("irc", rest)) => (false, rest.to_owned()),
                    Some(_) => (false, String::new()),
                    None => (false, value.clone()),
                };
                let port_ok = server
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !port_ok {
                    return Err(bad(
                        "DROPLINE_INGEST_IRC",
                        &value,
                        "ircs://host:port for TLS (irc.chat.twitch.tv:6697) or host:port in clear",
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
                    tls,
                    nick: get("DROPLINE_INGEST_IRC_NICK").unwrap_or_else(|| "justinfan4242".into()),
                    pass: get("DROPLINE_INGEST_IRC_PASS").map(dropline_core::secret::Secret::new),
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
            other => other.map(dropline_core::secret::Secret::new),
        };
        let rate = match get("DROPLINE_INGEST_REPLY_RATE") {
            None => Rate::TWITCH,
            Some(v) => Rate::parse(&v).ok_or_else(|| {
                bad("DROPLINE_INGEST_REPLY_RATE", &v, "messages/window, e.g. 20/30s (100/30s as a moderator)")
            })?,
        };
        let reply_webhook = match get("DROPLINE_INGEST_REPLY_WEBHOOK") {
            None => None,
            Some(url) if url.starts_with("http://") && url.len() > "http://".len() => Some(url),
            Some(url) => {
                return Err(bad(
                    "DROPLINE_INGEST_REPLY_WEBHOOK",
                    &url,
                    "an http:// URL (an adapter next to ingest; put TLS in front of it)",
                ))
            }
        };
        if reply_webhook.is_some() && webhook_secret.is_none() {
            return Err(bad(
                "DROPLINE_INGEST_WEBHOOK_SECRET",
                "",
                "a secret to sign the answers POSTed to DROPLINE_INGEST_REPLY_WEBHOOK",
            ));
        }
        let sending_irc = irc.as_ref().is_some_and(|i| !is_anonymous(&i.nick));
        let replies_on = match get("DROPLINE_INGEST_REPLIES").map(|v| v.to_ascii_lowercase()) {
            None => sending_irc || reply_webhook.is_some(),
            Some(v) if v == "off" => false,
            Some(v) if v == "on" => {
                if !sending_irc && reply_webhook.is_none() {
                    return Err(bad(
                        "DROPLINE_INGEST_REPLIES",
                        "on",
                        "IRC with a nick that may send (DROPLINE_INGEST_IRC_NICK other than justinfan…) \
                         or DROPLINE_INGEST_REPLY_WEBHOOK",
                    ));
                }
                true
            }
            Some(v) => return Err(bad("DROPLINE_INGEST_REPLIES", &v, "on or off")),
        };
        let replies = replies_on.then(|| Replies {
            config: ReplyConfig {
                rate,
                group: get("DROPLINE_INGEST_REPLY_GROUP").unwrap_or_else(|| "dropline-ingest-replies".into()),
                webhook: reply_webhook,
            },
            irc: sending_irc,
        });
        Ok(IngestConfig {
            irc,
            http,
            webhook_secret,
            network,
            fallback_drop: get("DROPLINE_INGEST_FALLBACK_DROP"),
            admin: admin.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9103))),
            replies,
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
    fn secrets_stay_out_of_debug_output() {
        let c = config(&[
            ("DROPLINE_INGEST_IRC", "127.0.0.1:6667"),
            ("DROPLINE_INGEST_CHANNELS", "#a"),
            ("DROPLINE_INGEST_IRC_PASS", "oauth:abcdefsecret"),
            ("DROPLINE_INGEST_WEBHOOK_SECRET", "whsec_0123456789"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("abcdefsecret") && !shown.contains("0123456789"), "{shown}");
        assert_eq!(c.webhook_secret.expect("set").expose(), b"whsec_0123456789");
    }

    #[test]
    fn defaults_and_irc() {
        let c = config(&[]).unwrap();
        assert_eq!((c.irc, c.webhook_secret, c.network.as_str()), (None, None, "twitch"));
        let c = config(&[("DROPLINE_INGEST_IRC", "127.0.0.1:6667"), ("DROPLINE_INGEST_CHANNELS", "#A, #b")])
            .unwrap();
        assert_eq!(c.replies, None, "the anonymous reader cannot answer");
        let irc = c.irc.unwrap();
        assert_eq!(irc.channels, vec!["#a", "#b"]);
        assert_eq!(irc.nick, "justinfan4242");
        assert!(!irc.tls);
        let tls =
            [("DROPLINE_INGEST_IRC", "ircs://irc.chat.twitch.tv:6697"), ("DROPLINE_INGEST_CHANNELS", "#a")];
        let irc = config(&tls).unwrap().irc.unwrap();
        assert_eq!((irc.server.as_str(), irc.tls), ("irc.chat.twitch.tv:6697", true));
        let irc = [("DROPLINE_INGEST_IRC", "h:1"), ("DROPLINE_INGEST_CHANNELS", "#a")];
        let bot = config(&[irc[0], irc[1], ("DROPLINE_INGEST_IRC_NICK", "dropbot")]).unwrap();
        let replies = bot.replies.expect("a bot that may send answers by default");
        assert!(replies.irc);
        assert_eq!((replies.config.rate, replies.config.webhook), (Rate::TWITCH, None));
        let off = config(&[
            irc[0],
            irc[1],
            ("DROPLINE_INGEST_IRC_NICK", "dropbot"),
            ("DROPLINE_INGEST_REPLIES", "off"),
        ]);
        assert_eq!(off.unwrap().replies, None);
        let hook = config(&[
            ("DROPLINE_INGEST_REPLY_WEBHOOK", "http://127.0.0.1:9/replies"),
            ("DROPLINE_INGEST_WEBHOOK_SECRET", "0123456789ab"),
            ("DROPLINE_INGEST_REPLY_RATE", "100/30s"),
        ])
        .unwrap();
        let replies = hook.replies.expect("webhook answers");
        assert!(!replies.irc);
        assert_eq!(replies.config.rate.messages, 100);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (vars, var) in [
            (vec![("DROPLINE_INGEST_IRC", "nohost")], "DROPLINE_INGEST_IRC"),
            (vec![("DROPLINE_INGEST_IRC", "https://h:1")], "DROPLINE_INGEST_IRC"),
            (vec![("DROPLINE_INGEST_IRC", "ircs://h:port")], "DROPLINE_INGEST_IRC"),
            (vec![("DROPLINE_INGEST_IRC", "h:1")], "DROPLINE_INGEST_CHANNELS"),
            (
                vec![("DROPLINE_INGEST_IRC", "h:1"), ("DROPLINE_INGEST_CHANNELS", "creator")],
                "DROPLINE_INGEST_CHANNELS",
            ),
            (vec![("DROPLINE_INGEST_WEBHOOK_SECRET", "short")], "DROPLINE_INGEST_WEBHOOK_SECRET"),
            (vec![("DROPLINE_INGEST_HTTP", "x")], "DROPLINE_INGEST_HTTP"),
            (vec![("DROPLINE_INGEST_NETWORK", "a b")], "DROPLINE_INGEST_NETWORK"),
            (vec![("DROPLINE_INGEST_REPLY_RATE", "fast")], "DROPLINE_INGEST_REPLY_RATE"),
            (vec![("DROPLINE_INGEST_REPLIES", "on")], "DROPLINE_INGEST_REPLIES"),
            (vec![("DROPLINE_INGEST_REPLIES", "maybe")], "DROPLINE_INGEST_REPLIES"),
            (vec![("DROPLINE_INGEST_REPLY_WEBHOOK", "ftp://x")], "DROPLINE_INGEST_REPLY_WEBHOOK"),
            (vec![("DROPLINE_INGEST_REPLY_WEBHOOK", "http://x")], "DROPLINE_INGEST_WEBHOOK_SECRET"),
        ] {
            let err = config(&vars).unwrap_err();
            assert_eq!(err.var, var, "{vars:?}");
        }
    }
}
