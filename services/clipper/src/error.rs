//! `ClipError`: everything that can go wrong while cutting a clip, each with a one-line message that
//! names the file and the problem.

use std::io;
use std::path::PathBuf;

use ffmpeg_next as ffmpeg;

/// Why a clip could not be cut. The `Display` text is one line and includes the cause.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// The requested window is malformed (zero duration, not a finite number, …).
    #[error("invalid window: {0}")]
    InvalidWindow(String),
    /// The recording does not exist.
    #[error("recording not found: {}", path.display())]
    NotFound { path: PathBuf },
    /// libav could not open the file as a media container (text file, truncated MP4, …).
    #[error("not a readable media file: {}: {source}", path.display())]
    NotMedia { path: PathBuf, source: ffmpeg::Error },
    /// The recording's codecs cannot be copied into an MP4 (H.264/H.265/AV1/VP9 video, AAC/Opus/MP3
    /// audio can).
    #[error("unsupported {kind} codec {codec} in {}", path.display())]
    Unsupported { path: PathBuf, kind: &'static str, codec: &'static str },
    /// The recording has no video stream (e.g. audio only).
    #[error("no video stream in {}", path.display())]
    NoVideo { path: PathBuf },
    /// The recording has a video stream but not a single keyframe to start a clip at.
    #[error("no video keyframe in {}", path.display())]
    NoKeyframe { path: PathBuf },
    /// The window starts at or after the end of the recording.
    #[error("window starts at {start_s:.3} s, past the end of the recording ({length_s:.3} s long)")]
    PastEnd { start_s: f64, length_s: f64 },
    /// Reading the recording failed midway (I/O error, damaged data).
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: ffmpeg::Error },
    /// The MP4 muxer refused the streams or a write failed.
    #[error("cannot write MP4 {}: {reason}", path.display())]
    Mux { path: PathBuf, reason: String },
    /// A filesystem operation failed (temporary file, rename, metadata).
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    /// A frame-accurate cut was asked of a recording whose video is not H.264.
    #[error("frame-accurate cut needs H.264 video; {} is {codec} (a copy cut works)", path.display())]
    ExactUnsupported { path: PathBuf, codec: &'static str },
    /// The H.264 bitstream could not be spliced (malformed parameter sets or NAL framing).
    #[error("cannot splice the H.264 of {}: {source}", path.display())]
    Bitstream { path: PathBuf, source: crate::h264::H264Error },
    /// The window is not recorded yet and the recording did not get there in time.
    #[error(
        "window ends at {until_s:.1} s but the recording reaches only {recorded_s:.1} s after waiting {waited_s:.0} s"
    )]
    NotRecordedYet { until_s: f64, recorded_s: f64, waited_s: f64 },
    /// libav could not be initialised.
    #[error("cannot initialise libav: {0}")]
    Init(ffmpeg::Error),
}
