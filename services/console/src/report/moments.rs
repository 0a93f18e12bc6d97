//! The moments of a drop for its time line (pure): open, restocks, sell-outs and close from its
//! log, rushes and markers from its clips — each linked to the clip cut around it, if any.

use serde::Serialize;
use utoipa::ToSchema;

use crate::clips::ClipView;
use crate::ledger::DropLog;

/// How close a clip's moment must be to a logged moment of its kind to be that moment's clip.
const SAME_MOMENT_MS: i64 = 10_000;

/// One moment on the time line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Moment {
    /// `open`, `restock`, `sold_out`, `rush`, `marker`, `close`.
    pub kind: String,
    pub at_ms: i64,
    /// What happened, in words (`HOODIE-L sold out`, `+20 TEE-M`, the marker's note).
    pub label: String,
    /// The clip of the moment, when one is ready.
    pub clip_id: Option<String>,
    pub clip_url: Option<String>,
    pub thumbnail_url: Option<String>,
}

fn moment(kind: &str, at_ms: i64, label: String) -> Moment {
    Moment { kind: kind.into(), at_ms, label, clip_id: None, clip_url: None, thumbnail_url: None }
}

/// The kind of logged moment a clip reason is about (`None`: the clip is a moment of its own).
fn logged_kind(reason: &str) -> Option<&'static str> {
    match reason {
        "DROP_OPENED" => Some("open"),
        "SOLD_OUT" => Some("sold_out"),
        _ => None,
    }
}

/// The drop's moments in time order (ties: log order).
pub fn moments(log: &DropLog, clips: &[ClipView]) -> Vec<Moment> {
    let mut out = Vec::new();
    if let Some(at) = log.opened_at_ms {
        out.push(moment("open", at, "drop opened".into()));
    }
    for (at, sku, units) in log.restocks.values() {
        out.push(moment("restock", *at, format!("+{units} {sku}")));
    }
    for (sku, at) in &log.sold_out_at_ms {
        out.push(moment("sold_out", *at, format!("{sku} sold out")));
    }
    if let Some(at) = log.closed_at_ms {
        out.push(moment("close", at, "drop closed".into()));
    }
    let mut ready: Vec<&ClipView> =
        clips.iter().filter(|c| c.status == "ready" && c.at_ms.is_some()).collect();
    ready.sort_by(|a, b| (a.at_ms, &a.clip_id).cmp(&(b.at_ms, &b.clip_id)));
    for clip in ready {
        let at = clip.at_ms.unwrap_or_default();
        let link = |m: &mut Moment| {
            m.clip_id = Some(clip.clip_id.clone());
            m.clip_url.clone_from(&clip.video_url);
            m.thumbnail_url.clone_from(&clip.thumbnail_url);
        };
        let same = logged_kind(&clip.reason).and_then(|kind| {
            out.iter_mut()
                .filter(|m| m.kind == kind && m.clip_id.is_none() && (m.at_ms - at).abs() <= SAME_MOMENT_MS)
                .min_by_key(|m| (m.at_ms - at).abs())
        });
        match same {
            Some(m) => link(m),
            None => {
                let kind = clip.reason.to_lowercase();
                let label = if clip.note.is_empty() { kind.replace('_', " ") } else { clip.note.clone() };
                let mut m = moment(&kind, at, label);
                link(&mut m);
                out.push(m);
            }
        }
    }
    out.sort_by_key(|m| m.at_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::fold::tests::{open, outcome};
    use dropline_proto::v1::ReservationStatus as S;

    fn clip(id: &str, reason: &str, at: i64, note: &str) -> ClipView {
        ClipView {
            clip_id: id.into(),
            drop_id: "d".into(),
            moment_id: id.into(),
            angle: String::new(),
            status: "ready".into(),
            reason: reason.into(),
            note: note.into(),
            start_ms: 0,
            duration_ms: 45_000,
            size_bytes: 1,
            at_ms: Some(at),
            ready_at_ms: at + 30_000,
            failure: String::new(),
            video_url: Some(format!("/clips/{id}/video")),
            thumbnail_url: None,
            vertical_url: None,
        }
    }

    #[test]
    fn clips_join_the_moment_they_were_cut_around() {
        let mut log = DropLog::default();
        log.trigger(&open(1_000, &[("TEE", 1, 100)]));
        log.outcome(&outcome("a", S::Reserved, "TEE", 1, 0, 5_000));
        let clips = [
            clip("c-open", "DROP_OPENED", 1_000, ""),
            clip("c-sold", "SOLD_OUT", 5_020, ""),
            clip("c-mark", "MARKER", 3_000, "unboxing"),
        ];
        let m = moments(&log, &clips);
        let kinds: Vec<&str> = m.iter().map(|m| m.kind.as_str()).collect();
        assert_eq!(kinds, ["open", "marker", "sold_out"]);
        assert_eq!(m[0].clip_id.as_deref(), Some("c-open"));
        assert_eq!(
            (m[1].label.as_str(), m[1].clip_url.as_deref()),
            ("unboxing", Some("/clips/c-mark/video"))
        );
        assert_eq!((m[2].label.as_str(), m[2].clip_id.as_deref()), ("TEE sold out", Some("c-sold")));
    }
}
