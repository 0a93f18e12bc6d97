//! The contract's topics: their default names, configured names, and the message type each carries.

use dropline_proto::v1;
use prost::Message;

/// One topic of the event contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicKind {
    /// `ChatOrder`s from ingest.
    ChatOrders,
    /// `DropTrigger`s from the console.
    DropTriggers,
    /// `HoldAction`s from checkout.
    HoldActions,
    /// `ReservationOutcome`s from the matcher.
    Reservations,
    /// `ClipRequest`s from the matcher and the console.
    ClipRequests,
    /// `ClipEvent`s (ready or failed) from the clipper.
    Clips,
    /// `DeadLetter`s from every service.
    DeadLetters,
    /// `ChatReply`s: the answers ingest sent to buyers in chat.
    ChatReplies,
    /// `ChatActivity`: chat lines ingest saw per drop and channel (the funnel's top).
    ChatActivity,
}

impl TopicKind {
    /// Every topic, in the order the contract lists them.
    pub const ALL: [TopicKind; 9] = [
        Self::ChatOrders,
        Self::DropTriggers,
        Self::HoldActions,
        Self::Reservations,
        Self::ClipRequests,
        Self::Clips,
        Self::DeadLetters,
        Self::ChatReplies,
        Self::ChatActivity,
    ];

    /// The contract's default topic name.
    pub fn default_name(self) -> &'static str {
        match self {
            Self::ChatOrders => "chat-orders",
            Self::DropTriggers => "drop-triggers",
            Self::HoldActions => "hold-actions",
            Self::Reservations => "reservations",
            Self::ClipRequests => "clip-requests",
            Self::Clips => "clips",
            Self::DeadLetters => "dead-letters",
            Self::ChatReplies => "chat-replies",
            Self::ChatActivity => "chat-activity",
        }
    }

    /// The protobuf message type the topic carries.
    pub fn message_name(self) -> &'static str {
        match self {
            Self::ChatOrders => "dropline.v1.ChatOrder",
            Self::DropTriggers => "dropline.v1.DropTrigger",
            Self::HoldActions => "dropline.v1.HoldAction",
            Self::Reservations => "dropline.v1.ReservationOutcome",
            Self::ClipRequests => "dropline.v1.ClipRequest",
            Self::Clips => "dropline.v1.ClipEvent",
            Self::DeadLetters => "dropline.v1.DeadLetter",
            Self::ChatReplies => "dropline.v1.ChatReply",
            Self::ChatActivity => "dropline.v1.ChatActivity",
        }
    }

    /// How long the broker keeps the topic's messages, ms (`retention.ms`; -1: forever). The
    /// topics services rebuild their state from — read from the beginning by the console's live
    /// view and reports, by ingest and by the clipper — are kept forever (compact or archive them
    /// deliberately, never by a default); the topics consumed once in a group keep a week, dead
    /// letters a month for someone to look at.
    pub fn retention_ms(self) -> i64 {
        const DAY: i64 = 86_400_000;
        const FOREVER: i64 = -1;
        match self {
            Self::ChatOrders | Self::DropTriggers | Self::Reservations | Self::Clips | Self::ChatActivity => {
                FOREVER
            }
            Self::HoldActions | Self::ClipRequests | Self::ChatReplies => 7 * DAY,
            Self::DeadLetters => 30 * DAY,
        }
    }

    /// The variable that overrides this topic's name, e.g. `DROPLINE_TOPIC_CHAT_ORDERS`.
    pub fn env_var(self) -> String {
        format!("DROPLINE_TOPIC_{}", self.default_name().replace('-', "_").to_ascii_uppercase())
    }

    /// Decodes a payload of this topic's type and renders it as proto3 JSON.
    pub fn decode_json(self, payload: &[u8]) -> Result<serde_json::Value, CodecError> {
        match self {
            Self::ChatOrders => to_json::<v1::ChatOrder>(payload),
            Self::DropTriggers => to_json::<v1::DropTrigger>(payload),
            Self::HoldActions => to_json::<v1::HoldAction>(payload),
            Self::Reservations => to_json::<v1::ReservationOutcome>(payload),
            Self::ClipRequests => to_json::<v1::ClipRequest>(payload),
            Self::Clips => to_json::<v1::ClipEvent>(payload),
            Self::DeadLetters => to_json::<v1::DeadLetter>(payload),
            Self::ChatReplies => to_json::<v1::ChatReply>(payload),
            Self::ChatActivity => to_json::<v1::ChatActivity>(payload),
        }
    }

    /// Parses proto3 JSON of this topic's type and encodes it as protobuf.
    /// Returns the bytes and the message's `drop_id` (the partitioning key), when it has one.
    pub fn encode_json(self, json: &str) -> Result<(Vec<u8>, Option<String>), CodecError> {
        match self {
            Self::ChatOrders => from_json(json, |m: &v1::ChatOrder| Some(m.drop_id.clone())),
            Self::DropTriggers => from_json(json, |m: &v1::DropTrigger| Some(m.drop_id.clone())),
            Self::HoldActions => from_json(json, |m: &v1::HoldAction| Some(m.drop_id.clone())),
            Self::Reservations => from_json(json, |m: &v1::ReservationOutcome| Some(m.drop_id.clone())),
            Self::ClipRequests => from_json(json, |m: &v1::ClipRequest| Some(m.drop_id.clone())),
            Self::Clips => from_json(json, |m: &v1::ClipEvent| match &m.event {
                Some(v1::clip_event::Event::Ready(r)) => Some(r.drop_id.clone()),
                Some(v1::clip_event::Event::Failed(f)) => Some(f.drop_id.clone()),
                None => None,
            }),
            Self::DeadLetters => {
                from_json(json, |m: &v1::DeadLetter| Some(String::from_utf8_lossy(&m.key).into_owned()))
            }
            Self::ChatReplies => from_json(json, |m: &v1::ChatReply| Some(m.channel.clone())),
            Self::ChatActivity => from_json(json, |m: &v1::ChatActivity| Some(m.drop_id.clone())),
        }
    }
}

/// A payload that is not a valid message of the expected type.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Bytes that are not the expected protobuf message.
    #[error("not a valid {message}: {source}")]
    Protobuf {
        /// The expected message type.
        message: &'static str,
        /// What prost reported.
        source: prost::DecodeError,
    },
    /// Text that is not proto3 JSON of the expected message.
    #[error("not valid JSON for {message}: {source}")]
    Json {
        /// The expected message type.
        message: &'static str,
        /// What serde reported.
        source: serde_json::Error,
    },
}

fn short_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}

fn to_json<M>(payload: &[u8]) -> Result<serde_json::Value, CodecError>
where
    M: Message + Default + serde::Serialize,
{
    let message =
        M::decode(payload).map_err(|source| CodecError::Protobuf { message: short_name::<M>(), source })?;
    serde_json::to_value(&message).map_err(|source| CodecError::Json { message: short_name::<M>(), source })
}

fn from_json<M>(
    json: &str,
    key: impl Fn(&M) -> Option<String>,
) -> Result<(Vec<u8>, Option<String>), CodecError>
where
    M: Message + serde::de::DeserializeOwned,
{
    let message: M = serde_json::from_str(json)
        .map_err(|source| CodecError::Json { message: short_name::<M>(), source })?;
    let key = key(&message).filter(|k| !k.is_empty());
    Ok((message.encode_to_vec(), key))
}

/// The names the deployment uses for the contract's topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    names: [String; 9],
}

impl Default for Topics {
    fn default() -> Self {
        Self::with_prefix("")
    }
}

impl Topics {
    /// Default names, each prefixed (e.g. `staging.` → `staging.chat-orders`).
    pub fn with_prefix(prefix: &str) -> Self {
        Self { names: TopicKind::ALL.map(|kind| format!("{prefix}{}", kind.default_name())) }
    }

    /// The name of a topic.
    pub fn name(&self, kind: TopicKind) -> &str {
        &self.names[kind as usize]
    }

    /// Renames a topic.
    pub fn set(&mut self, kind: TopicKind, name: String) {
        self.names[kind as usize] = name;
    }

    /// Which contract topic a name belongs to.
    pub fn kind_of(&self, name: &str) -> Option<TopicKind> {
        TopicKind::ALL.into_iter().find(|kind| self.name(*kind) == name)
    }

    /// All names, in contract order.
    pub fn all(&self) -> impl Iterator<Item = (TopicKind, &str)> {
        TopicKind::ALL.into_iter().map(|kind| (kind, self.name(kind)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_index_their_own_names() {
        let topics = Topics::with_prefix("t.");
        for kind in TopicKind::ALL {
            assert_eq!(topics.name(kind), format!("t.{}", kind.default_name()));
            assert_eq!(topics.kind_of(topics.name(kind)), Some(kind));
        }
        assert_eq!(topics.kind_of("chat-orders"), None);
        assert_eq!(TopicKind::HoldActions.env_var(), "DROPLINE_TOPIC_HOLD_ACTIONS");
    }

    #[test]
    fn json_round_trip_through_protobuf() {
        let json = r#"{"orderId":"o1","dropId":"d1","buyerId":"b","text":"!buy hoodie L","sentAtMs":"17"}"#;
        let (bytes, key) = TopicKind::ChatOrders.encode_json(json).expect("encodes");
        assert_eq!(key.as_deref(), Some("d1"));
        let value = TopicKind::ChatOrders.decode_json(&bytes).expect("decodes");
        assert_eq!(value["orderId"], "o1");
        assert_eq!(value["text"], "!buy hoodie L");
        assert_eq!(value["sentAtMs"], "17");
    }

    #[test]
    fn bad_payloads_are_errors_that_name_the_type() {
        let err = TopicKind::Reservations.decode_json(&[0xff, 0xff, 0xff]).expect_err("garbage");
        assert!(err.to_string().contains("ReservationOutcome"), "{err}");
        let err = TopicKind::DropTriggers.encode_json("{\"dropId\": 5").expect_err("bad json");
        assert!(err.to_string().contains("DropTrigger"), "{err}");
    }
}
