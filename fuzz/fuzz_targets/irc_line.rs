//! Lines from an IRC server (tags, prefix, command, params), read as ingest reads them, then
//! routed to a live drop as a chat order.
#![no_main]

use dropline_ingest::client::chat_line;
use dropline_ingest::irc::{self, Message};
use dropline_ingest::route::{LiveDrops, Routed};
use dropline_proto::v1::{drop_trigger, DropTrigger, OpenDrop};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some(message) = Message::parse(text) else { return };
    let _ = message.nick();
    let _ = message.tag("id");
    if let Some(line) = chat_line(&message, "twitch") {
        let mut live = LiveDrops::with_fallback(None);
        live.apply(&DropTrigger {
            drop_id: "fuzz".into(),
            trigger_id: "t".into(),
            sent_at_ms: 1,
            action: Some(drop_trigger::Action::Open(OpenDrop {
                channels: vec![line.channel_id()],
                ..Default::default()
            })),
        });
        if let Routed::Order(order) = live.route(&line, 1, || "fresh".into()) {
            assert_eq!(order.drop_id, "fuzz");
        }
        // What ingest sends back on that channel is one well-formed line.
        let reply = irc::privmsg(&line.channel, &line.text, message.tag("id"));
        assert!(!reply.trim_end_matches("\r\n").contains(['\r', '\n']), "{reply:?}");
    }
});
