//! Arbitrary messages on the topics the clipper consumes, through the code it runs on them:
//! `clip-requests` (decode, the id and recording checks, the window planned from the request
//! against a recording of any length and start) and `drop-triggers` + `reservations` (the
//! automatic clipper's moments and the requests it would publish for them).
#![no_main]

use std::path::Path;
use std::sync::Arc;

use arbitrary::Arbitrary;
use dropline_clipper::autoclip::Watcher;
use dropline_clipper::rules::ClipRules;
use dropline_clipper::worker::{admit, wanted};
use dropline_proto::v1::{ClipRequest, DropTrigger, ReservationOutcome};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    request: &'a [u8],
    length_ms: i64,
    started_at_ms: Option<i64>,
    /// (is it a trigger, payload): what the automatic clipper reads, in order.
    watched: Vec<(bool, &'a [u8])>,
}

fuzz_target!(|input: Input<'_>| {
    let root = Path::new("/recordings");
    if let Ok(request) = ClipRequest::decode(input.request) {
        if let Ok(path) = admit(root, &request) {
            assert!(path.starts_with(root), "{path:?} outside the recordings");
            if let Ok(wanted) = wanted(&request, input.started_at_ms, &path) {
                if let Ok(planned) = ClipRules::default().plan(wanted, input.length_ms) {
                    assert!(planned.start_ms >= 0 && planned.duration_ms > 0, "{planned:?}");
                    let end = planned.start_ms.checked_add(planned.duration_ms).expect("the window wraps");
                    assert!(end <= input.length_ms, "{planned:?} past {}", input.length_ms);
                }
            }
        }
    }

    let mut watcher = Watcher::new(ClipRules::default(), Arc::default());
    for (is_trigger, payload) in input.watched.iter().take(256) {
        let moment = if *is_trigger {
            DropTrigger::decode(*payload).ok().and_then(|t| watcher.trigger(t))
        } else {
            ReservationOutcome::decode(*payload).ok().and_then(|o| watcher.outcome(&o))
        };
        if let Some(moment) = moment {
            for request in watcher.requests(&moment) {
                assert_eq!(request.drop_id, moment.drop_id);
                assert_eq!(request.at_ms, Some(moment.at_ms));
            }
        }
    }
});
