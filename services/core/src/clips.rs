//! The clip-request contract shared by whoever asks for clips (the clipper's moment watcher, the
//! console's markers): a drop's camera angles, and the requests of one moment — one per angle,
//! all with the same moment id and the same wall-clock moment, so the clipper cuts the same
//! window from each.

use dropline_proto::v1::{Angle, ClipReason, ClipRequest, OpenDrop};

/// The name a drop's only recording goes by when it names no angles.
pub const SINGLE_ANGLE: &str = "main";

/// The angles a drop is recorded from: its `angles`, or its one `recording` (angle
/// [`SINGLE_ANGLE`]); none when it names no recording.
pub fn angles_of(open: &OpenDrop) -> Vec<Angle> {
    if !open.angles.is_empty() {
        return open.angles.clone();
    }
    if open.recording.is_empty() {
        return Vec::new();
    }
    vec![Angle { name: SINGLE_ANGLE.into(), recording: open.recording.clone() }]
}

/// A moment to clip, from any angle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moment<'a> {
    /// Unique per moment, stable across replays (it names the clip files).
    pub moment_id: String,
    pub drop_id: &'a str,
    /// Wall clock, Unix epoch ms.
    pub at_ms: i64,
    pub reason: ClipReason,
    pub note: String,
    /// A frame-accurate cut asked for. Clips of several angles are always cut exactly: a copy
    /// cut starts at each recording's own keyframe, and the angles' keyframes do not line up.
    pub exact: bool,
    pub requested_at_ms: i64,
}

/// The requests of `moment`, one per angle. A drop of one recording gets one request whose clip id
/// is the moment id (its files keep the names they always had); several angles get
/// `<moment id>-<angle>`.
pub fn requests(moment: &Moment<'_>, angles: &[Angle]) -> Vec<ClipRequest> {
    let several = angles.len() > 1;
    angles
        .iter()
        .map(|angle| ClipRequest {
            clip_id: if several {
                format!("{}-{}", moment.moment_id, angle.name)
            } else {
                moment.moment_id.clone()
            },
            drop_id: moment.drop_id.to_owned(),
            recording: angle.recording.clone(),
            at_ms: Some(moment.at_ms),
            start_ms: None,
            duration_ms: None,
            reason: moment.reason as i32,
            note: moment.note.clone(),
            exact: moment.exact || several,
            requested_at_ms: moment.requested_at_ms,
            angle: if several || angle.name != SINGLE_ANGLE { angle.name.clone() } else { String::new() },
            moment_id: moment.moment_id.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moment() -> Moment<'static> {
        Moment {
            moment_id: "d-open-1000".into(),
            drop_id: "d",
            at_ms: 1_000,
            reason: ClipReason::DropOpened,
            note: String::new(),
            exact: false,
            requested_at_ms: 2_000,
        }
    }

    fn angle(name: &str) -> Angle {
        Angle { name: name.into(), recording: format!("{name}.mp4") }
    }

    #[test]
    fn one_recording_is_one_request_named_by_its_moment() {
        let open = OpenDrop { recording: "stream.mp4".into(), ..Default::default() };
        let requests = requests(&moment(), &angles_of(&open));
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(
            (r.clip_id.as_str(), r.recording.as_str(), r.angle.as_str()),
            ("d-open-1000", "stream.mp4", "")
        );
        assert!(!r.exact, "one recording keeps the fast copy cut");
        assert!(angles_of(&OpenDrop::default()).is_empty());
    }

    #[test]
    fn every_angle_gets_the_same_moment_cut_exactly() {
        let open = OpenDrop {
            recording: "ignored.mp4".into(),
            angles: vec![angle("creator"), angle("product"), angle("screen")],
            ..Default::default()
        };
        let requests = requests(&moment(), &angles_of(&open));
        let ids: Vec<&str> = requests.iter().map(|r| r.clip_id.as_str()).collect();
        assert_eq!(ids, ["d-open-1000-creator", "d-open-1000-product", "d-open-1000-screen"]);
        assert!(requests.iter().all(|r| r.moment_id == "d-open-1000" && r.at_ms == Some(1_000) && r.exact));
        assert_eq!(requests[1].recording, "product.mp4");
        assert_eq!(requests[2].angle, "screen");
    }
}
