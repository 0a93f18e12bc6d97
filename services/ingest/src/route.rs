//! From chat lines to `ChatOrder`s: which drop is live on which channel (learned from
//! `drop-triggers`), which lines are orders, and the ids that make a re-sent message deduplicate.

use std::collections::HashMap;

use dropline_proto::v1::{drop_trigger, ChatOrder, DropTrigger};

/// How a line reached ingest; its answers go back the same way (`ChatOrder.origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Read on the IRC connection: answered there, on the same channel.
    Irc,
    /// Pushed to the webhook: answered by a POST to the reply webhook.
    Webhook,
}

impl Origin {
    /// The contract's name (`irc`, `webhook`); also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Irc => "irc",
            Origin::Webhook => "webhook",
        }
    }

    /// The origin an outcome names, if it is one of ours.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "irc" => Some(Origin::Irc),
            "webhook" => Some(Origin::Webhook),
            _ => None,
        }
    }
}

/// One chat line as a platform delivered it, before routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// How it arrived.
    pub origin: Origin,
    /// The platform or IRC network, e.g. `twitch` (prefixes channel, order and buyer ids).
    pub network: String,
    /// The channel, e.g. `#creator`.
    pub channel: String,
    /// The platform's message id, if it gives one (IRCv3 `id` tag, EventSub `message_id`).
    pub message_id: Option<String>,
    /// The platform's user id, if it gives one; else the nick identifies the buyer.
    pub user_id: Option<String>,
    pub nick: String,
    pub display_name: Option<String>,
    pub text: String,
    /// Platform time of the message (Unix ms), if it gives one.
    pub sent_at_ms: Option<i64>,
}

impl ChatLine {
    /// `network:#channel`, lower-case: the form `OpenDrop.channels` and `ChatOrder.channel` use.
    pub fn channel_id(&self) -> String {
        format!("{}:{}", self.network, self.channel).to_lowercase()
    }
}

/// What became of a line.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// An order for a live drop: publish it (boxed: the other answers carry nothing).
    Order(Box<ChatOrder>),
    /// Ordinary chat (not `!buy …`).
    NotOrder,
    /// An order on a channel where no drop is live.
    NoDrop,
}

impl Routed {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Routed::Order(_) => "order",
            Routed::NotOrder => "not_order",
            Routed::NoDrop => "no_drop",
        }
    }
}

/// Which drop is live on which channel.
#[derive(Debug, Clone, Default)]
pub struct LiveDrops {
    /// Channel (`network:#name` or `#name` for any network, lower-case) → the drops open on it,
    /// in the order they opened: the last one takes the channel's orders, and when it closes the
    /// one before has the channel again.
    by_channel: HashMap<String, Vec<String>>,
    /// Lines on channels with no live drop go here if set (`DROPLINE_INGEST_FALLBACK_DROP`).
    fallback: Option<String>,
}

impl LiveDrops {
    pub fn with_fallback(fallback: Option<String>) -> Self {
        LiveDrops { by_channel: HashMap::new(), fallback }
    }

    /// Applies a trigger: an opened drop takes its channels (the drop open there before waits
    /// under it), a closed drop leaves its channels. Restocks change nothing here.
    pub fn apply(&mut self, trigger: &DropTrigger) {
        match &trigger.action {
            Some(drop_trigger::Action::Open(open)) => {
                for channel in &open.channels {
                    let channel = channel.trim().to_lowercase();
                    if !channel.is_empty() {
                        let drops = self.by_channel.entry(channel).or_default();
                        drops.retain(|d| *d != trigger.drop_id);
                        drops.push(trigger.drop_id.clone());
                    }
                }
            }
            Some(drop_trigger::Action::Close(_)) => {
                for drops in self.by_channel.values_mut() {
                    drops.retain(|d| *d != trigger.drop_id);
                }
                self.by_channel.retain(|_, drops| !drops.is_empty());
            }
            Some(drop_trigger::Action::Restock(_)) | None => {}
        }
    }

    /// The drop live on the line's channel: `network:#name` first, then `#name` on any network.
    pub fn drop_for(&self, line: &ChatLine) -> Option<&str> {
        self.by_channel
            .get(&line.channel_id())
            .and_then(|drops| drops.last())
            .or_else(|| self.by_channel.get(&line.channel.to_lowercase()).and_then(|drops| drops.last()))
            .or(self.fallback.as_ref())
            .map(String::as_str)
    }

    /// Turns `line` into an order for the live drop, or says why not. `now_ms` stands in for a
    /// missing platform time; `fresh_id` for a missing platform message id.
    pub fn route(&self, line: &ChatLine, now_ms: i64, fresh_id: impl FnOnce() -> String) -> Routed {
        if !dropline_core::domain::is_command(&line.text) {
            return Routed::NotOrder;
        }
        let Some(drop_id) = self.drop_for(line) else { return Routed::NoDrop };
        let network = line.network.to_lowercase();
        let message_id = line.message_id.clone().unwrap_or_else(fresh_id);
        let buyer = line.user_id.clone().unwrap_or_else(|| line.nick.to_lowercase());
        Routed::Order(Box::new(ChatOrder {
            order_id: format!("{network}:{message_id}"),
            drop_id: drop_id.to_owned(),
            buyer_id: format!("{network}:{buyer}"),
            channel: line.channel_id(),
            text: line.text.clone(),
            sent_at_ms: line.sent_at_ms.unwrap_or(now_ms),
            sku: None,
            quantity: None,
            buyer_name: line.display_name.clone().unwrap_or_else(|| line.nick.clone()),
            origin: line.origin.as_str().to_owned(),
            platform_message_id: line.message_id.clone().unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dropline_proto::v1::{CloseDrop, OpenDrop};

    fn open(drop_id: &str, channels: &[&str]) -> DropTrigger {
        DropTrigger {
            drop_id: drop_id.into(),
            action: Some(drop_trigger::Action::Open(OpenDrop {
                channels: channels.iter().map(|c| (*c).to_owned()).collect(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn close(drop_id: &str) -> DropTrigger {
        DropTrigger {
            drop_id: drop_id.into(),
            action: Some(drop_trigger::Action::Close(CloseDrop::default())),
            ..Default::default()
        }
    }

    fn line(channel: &str, text: &str, id: Option<&str>) -> ChatLine {
        ChatLine {
            origin: Origin::Irc,
            network: "twitch".into(),
            channel: channel.into(),
            message_id: id.map(str::to_owned),
            user_id: Some("1337".into()),
            nick: "ada".into(),
            display_name: Some("Ada".into()),
            text: text.into(),
            sent_at_ms: Some(5),
        }
    }

    #[test]
    fn orders_go_to_the_drop_live_on_their_channel() {
        let mut live = LiveDrops::default();
        live.apply(&open("fall", &["twitch:#Creator"]));
        let Routed::Order(order) =
            live.route(&line("#creator", "!buy hoodie L", Some("m-1")), 9, || "x".into())
        else {
            panic!("not routed")
        };
        assert_eq!(order.order_id, "twitch:m-1");
        assert_eq!((order.drop_id.as_str(), order.buyer_id.as_str()), ("fall", "twitch:1337"));
        assert_eq!(
            (order.channel.as_str(), order.sent_at_ms, order.buyer_name.as_str()),
            ("twitch:#creator", 5, "Ada")
        );
        assert_eq!((order.origin.as_str(), order.platform_message_id.as_str()), ("irc", "m-1"));
        assert_eq!(live.route(&line("#creator", "hello chat", None), 9, || "x".into()), Routed::NotOrder);
        assert_eq!(live.route(&line("#other", "!buy tee", None), 9, || "x".into()), Routed::NoDrop);
    }

    #[test]
    fn closing_frees_the_channel_and_a_bare_channel_matches_any_network() {
        let mut live = LiveDrops::default();
        live.apply(&open("a", &["#creator"]));
        assert_eq!(live.drop_for(&line("#creator", "", None)), Some("a"));
        live.apply(&open("b", &["twitch:#creator"]));
        assert_eq!(live.drop_for(&line("#creator", "", None)), Some("b"));
        live.apply(&close("b"));
        assert_eq!(live.drop_for(&line("#creator", "", None)), Some("a"));
        live.apply(&close("a"));
        assert_eq!(live.drop_for(&line("#creator", "", None)), None);
        // Two drops on the very same channel: the second takes it, and closing it gives the
        // channel back to the first (which is still open), not to nobody.
        live.apply(&open("c", &["twitch:#creator"]));
        live.apply(&open("d", &["twitch:#creator"]));
        assert_eq!(live.drop_for(&line("#creator", "", None)), Some("d"));
        live.apply(&close("d"));
        assert_eq!(live.drop_for(&line("#creator", "", None)), Some("c"), "the first drop is not left deaf");
        live.apply(&open("c", &["twitch:#creator"])); // the same open replayed: still one entry
        live.apply(&close("c"));
        assert_eq!(live.drop_for(&line("#creator", "", None)), None);
        let fallback = LiveDrops::with_fallback(Some("always".into()));
        assert_eq!(fallback.drop_for(&line("#x", "", None)), Some("always"));
    }

    #[test]
    fn without_platform_ids_the_nick_and_a_fresh_id_stand_in() {
        let mut live = LiveDrops::default();
        live.apply(&open("fall", &["#c"]));
        let mut anonymous = line("#c", "!buy 2", None);
        anonymous.user_id = None;
        anonymous.sent_at_ms = None;
        let Routed::Order(order) = live.route(&anonymous, 42, || "fresh".into()) else {
            panic!("not routed")
        };
        assert_eq!(
            (order.order_id.as_str(), order.buyer_id.as_str(), order.sent_at_ms),
            ("twitch:fresh", "twitch:ada", 42)
        );
    }
}
