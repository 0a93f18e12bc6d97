//! Where a planned message goes: the IRC connection (a `PRIVMSG` on the channel the orders came
//! from, written by the connected session), or the reply webhook (the `ChatReply` as proto3 JSON,
//! POSTed and signed the way the inbound webhook is: HMAC-SHA256 over id ‖ timestamp ‖ body).

use std::time::Duration;

use dropline_proto::v1::ChatReply;
use tokio::sync::{mpsc, oneshot, watch};

use super::text::MAX_MESSAGE;
use crate::client::{Link, Outgoing};

/// How long a handed-over line may wait for a connected session before it is planned again.
const HAND_OVER: Duration = Duration::from_secs(5);
/// Headers of a reply POST (the same scheme as the inbound webhook's, under our own names).
pub const ID_HEADER: &str = "dropline-message-id";
pub const TIMESTAMP_HEADER: &str = "dropline-message-timestamp";
pub const SIGNATURE_HEADER: &str = "dropline-message-signature";

/// A message that did not go out (its answers are planned again).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("not connected to IRC")]
    NotConnected,
    #[error("reply webhook: {0}")]
    Webhook(String),
}

/// The IRC side: hands lines to the session.
#[derive(Debug, Clone)]
pub struct IrcOutlet {
    pub outgoing: mpsc::Sender<Outgoing>,
    pub link: watch::Receiver<Link>,
    /// The network prefix of channel ids (`twitch` in `twitch:#creator`).
    pub network: String,
    /// Channels joined (`#creator`), the only ones answered here.
    pub channels: Vec<String>,
    /// Our nick (to bound the relayed line before the server tells us our prefix).
    pub nick: String,
}

impl IrcOutlet {
    /// The IRC channel of a channel id, when it is one of ours.
    pub fn channel_of(&self, channel_id: &str) -> Option<String> {
        let (network, channel) = channel_id.split_once(':')?;
        let channel = channel.to_lowercase();
        (network.eq_ignore_ascii_case(&self.network) && self.channels.contains(&channel)).then_some(channel)
    }

    /// Longest text that fits the IRC line limit (512 bytes with CR LF) once the server adds our
    /// prefix to relay it, and Twitch's 500.
    pub fn max_text(&self) -> usize {
        let channel = self.channels.iter().map(String::len).max().unwrap_or(0);
        // Until our JOIN comes back: nick!user@host with a user and host as long as IRC allows.
        let relay = self.link.borrow().relay_prefix.unwrap_or(1 + self.nick.len() * 2 + 2 + 63 + 12);
        510usize.saturating_sub(relay + channel).min(MAX_MESSAGE)
    }

    /// Writes `text` on `channel` (`#creator`); `Ok` once the session wrote it.
    pub async fn send(&self, channel: &str, text: &str, reply_to: Option<&str>) -> Result<(), SendError> {
        if !self.link.borrow().connected {
            return Err(SendError::NotConnected);
        }
        let (written, done) = oneshot::channel();
        let out = Outgoing {
            channel: channel.to_owned(),
            text: text.to_owned(),
            reply_to: reply_to.map(str::to_owned),
            expires: tokio::time::Instant::now() + HAND_OVER,
            written,
        };
        self.outgoing.send(out).await.map_err(|_| SendError::NotConnected)?;
        // A little longer than the line may wait: once the session gives up on it, so do we.
        match tokio::time::timeout(HAND_OVER + Duration::from_secs(1), done).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(SendError::NotConnected),
        }
    }
}

/// The webhook side.
#[derive(Debug, Clone)]
pub struct WebhookOutlet {
    pub url: String,
    pub secret: dropline_core::secret::Secret,
    pub client: reqwest::Client,
}

impl WebhookOutlet {
    /// POSTs the reply; `Ok` on a 2xx answer.
    pub async fn send(&self, reply: &ChatReply) -> Result<(), SendError> {
        let body = serde_json::to_vec(reply).map_err(|e| SendError::Webhook(e.to_string()))?;
        let id = uuid::Uuid::new_v4().to_string();
        let timestamp = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let signature = crate::webhook::sign(self.secret.expose(), &id, &timestamp, &body);
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header(ID_HEADER, &id)
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, signature)
            .timeout(Duration::from_secs(10))
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Webhook(e.to_string()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(SendError::Webhook(format!("answered {}", response.status())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlet(link: Link) -> IrcOutlet {
        let (outgoing, _) = mpsc::channel(1);
        let (_, link) = watch::channel(link);
        IrcOutlet {
            outgoing,
            link,
            network: "twitch".into(),
            channels: vec!["#creator".into()],
            nick: "dropbot".into(),
        }
    }

    #[test]
    fn only_our_channels_and_lines_that_fit() {
        let o = outlet(Link::default());
        assert_eq!(o.channel_of("twitch:#Creator").as_deref(), Some("#creator"));
        assert_eq!(o.channel_of("youtube:#creator"), None);
        assert_eq!(o.channel_of("twitch:#other"), None);
        assert!(o.max_text() < 420, "unknown prefix: room for the longest host");
        let known = outlet(Link { connected: true, relay_prefix: Some(45) });
        assert_eq!(known.max_text(), 510 - 45 - "#creator".len());
        let twitch = outlet(Link { connected: true, relay_prefix: Some(1) });
        assert_eq!(twitch.max_text(), MAX_MESSAGE);
    }
}
