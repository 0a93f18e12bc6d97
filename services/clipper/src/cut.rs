//! The stream-copy cut: packets from the video keyframe at or before the requested start up to the
//! requested end, copied without re-encoding into an MP4 (`+faststart`) whose timeline starts at 0.
//!
//! Seeking works for every input the same way: seek to a point before the start (MP4/MKV land on
//! the keyframe thanks to their index; MPEG-TS/FLV have none and may land anywhere), then read
//! forward and keep the last video keyframe at or before the start. If no keyframe at or before
//! the start was seen, or the audio read after the seek begins later than that keyframe, seek
//! further back (2, 6, 20, 60 s) and finally read from the very beginning.

use std::cmp::Ordering;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ffmpeg::format::context::{Input, Output};
use ffmpeg::rescale::TIME_BASE;
use ffmpeg::{codec, encoder, format, media, Dictionary, Packet, Rational, Rescale};
use ffmpeg_next as ffmpeg;

use crate::error::ClipError;
use crate::media::{
    io_error, micros, open_checked, past_end, read_packet, set_readable, temp_beside, NO_TS, SEEK_BACKOFFS,
};

/// Codecs copied into the MP4 (what the MP4 muxer takes and players play).
const VIDEO_CODECS: &[codec::Id] = &[codec::Id::H264, codec::Id::HEVC, codec::Id::AV1, codec::Id::VP9];
const AUDIO_CODECS: &[codec::Id] = &[codec::Id::AAC, codec::Id::OPUS, codec::Id::MP3];

/// The part of a recording to cut, relative to the start of the recording (its first timestamp,
/// whatever the container's clock says there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Duration,
    pub duration: Duration,
}

impl Window {
    /// A window from seconds, as typed on a command line: `start ≥ 0`, `duration > 0`, both finite.
    pub fn from_secs(start: f64, duration: f64) -> Result<Self, ClipError> {
        let start = Duration::try_from_secs_f64(start)
            .map_err(|_| ClipError::InvalidWindow(format!("start {start} s is not a time ≥ 0")))?;
        let duration = Duration::try_from_secs_f64(duration)
            .map_err(|_| ClipError::InvalidWindow(format!("duration {duration} s is not a time > 0")))?;
        let window = Window { start, duration };
        window.validate()?;
        Ok(window)
    }

    fn validate(&self) -> Result<(), ClipError> {
        if self.duration.is_zero() {
            return Err(ClipError::InvalidWindow("duration must be positive".into()));
        }
        if micros(self.start).checked_add(micros(self.duration)).is_none() {
            return Err(ClipError::InvalidWindow("window is too far out".into()));
        }
        Ok(())
    }
}

/// What a cut produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutReport {
    /// Where the clip actually starts in the recording (the video keyframe at or before the
    /// requested start), in milliseconds from the start of the recording.
    pub start_ms: u64,
    /// Length of the clip (latest end of any stream), in milliseconds.
    pub duration_ms: u64,
    /// Size of the written file.
    pub size_bytes: u64,
}

/// Cuts `window` out of the recording `input` by stream copy into the MP4 file `out`.
///
/// The clip starts at the video keyframe at or before `window.start` (audio from the same point)
/// and ends at `window.start + window.duration`, or at the end of the recording if that comes
/// first; its timestamps start at 0. The file is written under a temporary name in the directory of
/// `out` and renamed at the end: on error nothing is left behind. Blocking.
pub fn cut_copy(input: &Path, window: Window, out: &Path) -> Result<CutReport, ClipError> {
    window.validate()?;
    ffmpeg::init().map_err(ClipError::Init)?;
    let mut source = Source::open(input)?;
    let start = source.find_start(window)?;
    let tmp = temp_beside(out, ".part")?;
    // The output contexts are closed when `write_clip` returns, before the rename.
    let written = if source.has_foreign_tags() {
        // MPEG-TS streams carry the TS stream type as codec tag (27 for H.264, 15 for AAC), which
        // the MP4 muxer refuses and which cannot be cleared without `unsafe`. The Matroska muxer
        // takes them (at "unofficial" strictness) and its demuxer reports none: stage the clip
        // through a Matroska file, then remux that whole into the MP4. Costs a second copy of the
        // clip (milliseconds); timestamps become milliseconds, as from any MKV or FLV input.
        let stage = temp_beside(out, ".mkv.part")?;
        let first = write_clip(&mut source, start, stage.path(), Container::Staging, out)?;
        let mut staged = Source::open(stage.path())?;
        let whole = Window { start: Duration::ZERO, duration: Duration::from_secs(u32::MAX.into()) };
        let staged_start = staged.find_start(whole)?;
        let second = write_clip(&mut staged, staged_start, tmp.path(), Container::Mp4, out)?;
        Written { start_ms: first.start_ms, duration_ms: second.duration_ms }
    } else {
        write_clip(&mut source, start, tmp.path(), Container::Mp4, out)?
    };

    set_readable(tmp.path())?;
    tmp.persist(out).map_err(|e| io_error("cannot rename the clip to", out, e.error))?;
    let size_bytes = fs::metadata(out).map_err(|e| io_error("cannot stat", out, e))?.len();
    Ok(CutReport { start_ms: written.start_ms, duration_ms: written.duration_ms, size_bytes })
}

/// What `write_clip` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    /// The clip itself.
    Mp4,
    /// Matroska, as a stage for inputs whose codec tags the MP4 muxer refuses.
    Staging,
}

/// The opened recording and what we know of its streams.
struct Source {
    path: PathBuf,
    input: Input,
    video: StreamInfo,
    audio: Option<StreamInfo>,
    /// First timestamp of the recording (earliest start of the streams we copy), in µs.
    origin_us: i64,
    /// Length of the recording in µs, if the container knows it.
    length_us: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct StreamInfo {
    index: usize,
    time_base: Rational,
}

/// Where the clip starts: the keyframe, and the packets already read from it on.
struct Start {
    /// pts of the starting keyframe, video time base.
    key_pts: i64,
    /// Packets read during the search that belong to the clip, in read order.
    buffered: Vec<Packet>,
    /// The search hit the end of the recording.
    eof: bool,
    /// Requested end (µs, recording clock).
    end_us: i64,
}

/// Outcome of one seek-and-scan attempt.
enum Scan {
    Found(Start),
    Retry,
}

/// What was written.
struct Written {
    start_ms: u64,
    duration_ms: u64,
}

impl Source {
    fn open(path: &Path) -> Result<Self, ClipError> {
        let input = open_checked(path)?;
        let video = input
            .streams()
            .best(media::Type::Video)
            .map(|s| StreamInfo { index: s.index(), time_base: s.time_base() })
            .ok_or_else(|| ClipError::NoVideo { path: path.to_path_buf() })?;
        let audio = input
            .streams()
            .best(media::Type::Audio)
            .map(|s| StreamInfo { index: s.index(), time_base: s.time_base() });

        for (info, kind, supported) in [(Some(video), "video", VIDEO_CODECS), (audio, "audio", AUDIO_CODECS)]
        {
            let Some(stream) = info.and_then(|i| input.stream(i.index)) else { continue };
            let id = stream.parameters().id();
            if !supported.contains(&id) {
                return Err(ClipError::Unsupported { path: path.to_path_buf(), kind, codec: id.name() });
            }
        }

        let starts = [Some(video), audio].into_iter().flatten().filter_map(|info| {
            let stream = input.stream(info.index)?;
            let start = stream.start_time();
            (start != NO_TS).then(|| start.rescale(info.time_base, TIME_BASE))
        });
        let origin_us = starts.min().unwrap_or(0);
        let length_us = (input.duration() != NO_TS && input.duration() > 0).then(|| input.duration());
        Ok(Source { path: path.to_path_buf(), input, video, audio, origin_us, length_us })
    }

    /// Whether the streams carry codec tags of another container family (MPEG-TS stream types),
    /// which the MP4 muxer refuses.
    fn has_foreign_tags(&self) -> bool {
        self.input.format().name().split(',').any(|n| n == "mpegts" || n == "mpegtsraw")
    }

    /// Finds the keyframe the clip starts at and positions the input just after it.
    fn find_start(&mut self, window: Window) -> Result<Start, ClipError> {
        let start_us = micros(window.start);
        if let Some(length_us) = self.length_us {
            if start_us >= length_us {
                return Err(past_end(start_us, length_us));
            }
        }
        let target_us = self.origin_us.saturating_add(start_us);
        let end_us = target_us.saturating_add(micros(window.duration));

        for backoff in SEEK_BACKOFFS {
            let seek_us = target_us.saturating_sub(micros(backoff));
            if seek_us <= self.origin_us.max(0) {
                break; // as good as reading from the beginning
            }
            // FLV refuses negative targets; a failed seek is just a failed attempt.
            if self.input.seek(seek_us, ..seek_us).is_err() {
                continue;
            }
            if let Scan::Found(start) = self.scan(target_us, end_us, false)? {
                return Ok(start);
            }
        }
        // Last resort: read from the beginning (a fresh context needs no seek).
        self.input = open_checked(&self.path)?;
        match self.scan(target_us, end_us, true)? {
            Scan::Found(start) => Ok(start),
            Scan::Retry => Err(ClipError::NoKeyframe { path: self.path.clone() }),
        }
    }

    /// Reads forward from the current position, keeping the last video keyframe at or before
    /// `target_us` and the packets after it. `from_beginning`: no earlier position exists, so take
    /// what is found (a first keyframe after the target, audio that starts late).
    fn scan(&mut self, target_us: i64, end_us: i64, from_beginning: bool) -> Result<Scan, ClipError> {
        let video = self.video;
        let target = target_us.rescale(TIME_BASE, video.time_base);
        let mut key: Option<i64> = None;
        let mut buffered: Vec<Packet> = Vec::new();
        let mut first_audio: Option<i64> = None;
        let mut video_end: Option<i64> = None;
        let mut eof = false;

        loop {
            let mut packet = Packet::empty();
            if !read_packet(&mut self.input, &mut packet, &self.path)? {
                eof = true;
                break;
            }
            let index = packet.stream();
            if index == video.index {
                let (Some(pts), Some(dts)) = (packet.pts().or(packet.dts()), packet.dts().or(packet.pts()))
                else {
                    continue;
                };
                let end = pts.saturating_add(packet.duration().max(0));
                video_end = Some(video_end.map_or(end, |e| e.max(end)));
                let usable_key = packet.is_key() && !packet.is_corrupt();
                if usable_key && (pts <= target || (from_beginning && key.is_none())) {
                    key = Some(pts);
                    let audio = self.audio;
                    buffered.retain(|p| {
                        audio.is_some_and(|a| {
                            p.stream() == a.index
                                && p.pts()
                                    .is_some_and(|t| cmp_ts(t, a.time_base, pts, video.time_base).is_ge())
                        })
                    });
                    buffered.push(packet);
                } else if key.is_some_and(|k| pts >= k) {
                    buffered.push(packet);
                }
                // Once a decode timestamp passes the target no later keyframe can be at or before it.
                if dts > target {
                    if key.is_some() {
                        break;
                    }
                    if !from_beginning {
                        return Ok(Scan::Retry);
                    }
                }
            } else if let Some(audio) = self.audio.filter(|a| a.index == index) {
                let Some(pts) = packet.pts().or(packet.dts()) else { continue };
                first_audio.get_or_insert(pts);
                if key.is_none_or(|k| cmp_ts(pts, audio.time_base, k, video.time_base).is_ge()) {
                    buffered.push(packet);
                }
            }
        }

        if eof && video_end.is_none_or(|e| e <= target) {
            // The video ends before the window starts (the container's duration was optimistic).
            let length_us = video_end.map_or(0, |e| e.rescale(video.time_base, TIME_BASE) - self.origin_us);
            return Err(past_end(target_us - self.origin_us, length_us.max(0)));
        }
        let Some(key_pts) = key else { return Ok(Scan::Retry) };
        if !from_beginning {
            if let Some(audio) = self.audio {
                // Audio must be covered from the keyframe on: its first packet after the seek must
                // not be later than the keyframe (TS interleaves audio far from its video).
                let covered =
                    first_audio.is_some_and(|a| cmp_ts(a, audio.time_base, key_pts, video.time_base).is_le());
                if !covered && !eof {
                    return Ok(Scan::Retry);
                }
            }
        }
        Ok(Scan::Found(Start { key_pts, buffered, eof, end_us }))
    }
}

/// Writes the clip into `tmp` (MP4, `+faststart`): the buffered packets, then everything read up to
/// the end of the window.
fn write_clip(
    source: &mut Source,
    start: Start,
    tmp: &Path,
    container: Container,
    out: &Path,
) -> Result<Written, ClipError> {
    let mux_err = |reason: String| ClipError::Mux { path: out.to_path_buf(), reason };
    let video = source.video;
    let audio = source.audio;
    let end_us = start.end_us;
    let format_name = match container {
        Container::Mp4 => "mp4",
        Container::Staging => "matroska",
    };
    let mut output: Output = format::output_as(tmp, format_name).map_err(|e| mux_err(e.to_string()))?;

    let mut codecs = Vec::new();
    for info in [Some(video), audio].into_iter().flatten() {
        let stream = source.input.stream(info.index).ok_or_else(|| mux_err("stream vanished".into()))?;
        let parameters = stream.parameters();
        codecs.push(parameters.id().name());
        let mut out_stream =
            output.add_stream(encoder::find(codec::Id::None)).map_err(|e| mux_err(e.to_string()))?;
        out_stream.set_parameters(parameters);
        out_stream.set_time_base(info.time_base);
    }
    let mut options = Dictionary::new();
    match container {
        Container::Mp4 => options.set("movflags", "+faststart"),
        // Lets the foreign codec tags through the generic tag check; Matroska ignores them.
        Container::Staging => options.set("strict", "unofficial"),
    }
    let unused: Vec<String> = output
        .write_header_with(options)
        .map_err(|e| mux_err(format!("{} streams refused: {e}", codecs.join("+"))))?
        .iter()
        .map(|(k, _)| k.to_owned())
        .collect();
    if !unused.is_empty() {
        return Err(mux_err(format!("muxer ignored options {}", unused.join(","))));
    }

    let out_video = output.stream(0).map(|s| s.time_base()).ok_or_else(|| mux_err("no stream".into()))?;
    let out_audio = output.stream(1).map(|s| s.time_base());

    let key_pts = start.key_pts;
    let video_end = end_us.rescale(TIME_BASE, video.time_base);
    let mut cutter = Cutter {
        video,
        audio,
        out_video,
        out_audio,
        key_pts,
        key_audio: audio.map(|a| key_pts.rescale(video.time_base, a.time_base)),
        video_end,
        audio_end: audio.map(|a| end_us.rescale(TIME_BASE, a.time_base)),
        video_done: false,
        audio_done: audio.is_none(),
        clip_end_us: 0,
        wrote_video: false,
    };

    for packet in start.buffered {
        cutter.handle(packet, &mut output).map_err(|e| mux_err(e.to_string()))?;
    }
    if !start.eof {
        while !(cutter.video_done && cutter.audio_done) {
            let mut packet = Packet::empty();
            if !read_packet(&mut source.input, &mut packet, &source.path)? {
                break;
            }
            cutter.handle(packet, &mut output).map_err(|e| mux_err(e.to_string()))?;
        }
    }
    if !cutter.wrote_video {
        return Err(ClipError::NoKeyframe { path: source.path.clone() });
    }
    output.write_trailer().map_err(|e| mux_err(e.to_string()))?;

    let start_us = key_pts.rescale(video.time_base, TIME_BASE) - source.origin_us;
    Ok(Written {
        start_ms: u64::try_from(start_us.max(0) / 1000).unwrap_or(0),
        duration_ms: u64::try_from(cutter.clip_end_us.max(0) / 1000).unwrap_or(0),
    })
}

/// Per-packet decisions of the write phase.
struct Cutter {
    video: StreamInfo,
    audio: Option<StreamInfo>,
    out_video: Rational,
    out_audio: Option<Rational>,
    key_pts: i64,
    key_audio: Option<i64>,
    video_end: i64,
    audio_end: Option<i64>,
    video_done: bool,
    audio_done: bool,
    /// Latest end of a written packet, µs on the clip's clock.
    clip_end_us: i64,
    wrote_video: bool,
}

impl Cutter {
    /// Writes `packet` if it belongs to the clip. Video is a prefix in decode order (so everything
    /// written decodes) that stops at the first picture shown at or after the end: nothing shows
    /// past the end, at worst the B-frames just before it are missing. Audio is cut by time.
    fn handle(&mut self, mut packet: Packet, output: &mut Output) -> Result<(), ffmpeg::Error> {
        let index = packet.stream();
        let (offset, in_tb, out_tb, out_index) = if index == self.video.index {
            let Some(pts) = packet.pts().or(packet.dts()) else { return Ok(()) };
            if self.video_done || pts >= self.video_end {
                self.video_done = true;
                return Ok(());
            }
            if pts < self.key_pts {
                return Ok(()); // leading pictures of an open GOP: they need the previous GOP
            }
            self.wrote_video = true;
            (self.key_pts, self.video.time_base, self.out_video, 0)
        } else {
            let (Some(audio), Some(out_tb), Some(key), Some(end)) =
                (self.audio.filter(|a| a.index == index), self.out_audio, self.key_audio, self.audio_end)
            else {
                return Ok(());
            };
            let Some(pts) = packet.pts().or(packet.dts()) else { return Ok(()) };
            if self.audio_done || pts >= end {
                self.audio_done = true;
                return Ok(());
            }
            if pts < key {
                return Ok(());
            }
            (key, audio.time_base, out_tb, 1)
        };
        packet.set_pts(packet.pts().map(|t| t - offset));
        packet.set_dts(packet.dts().map(|t| t - offset));
        if let Some(pts) = packet.pts() {
            let end = pts.saturating_add(packet.duration().max(0));
            self.clip_end_us = self.clip_end_us.max(end.rescale(in_tb, TIME_BASE));
        }
        packet.rescale_ts(in_tb, out_tb);
        packet.set_stream(out_index);
        packet.set_position(-1);
        packet.write_interleaved(output)
    }
}

/// Compares `a` (time base `ta`) with `b` (time base `tb`) exactly.
fn cmp_ts(a: i64, ta: Rational, b: i64, tb: Rational) -> Ordering {
    let left = i128::from(a) * i128::from(ta.numerator()) * i128::from(tb.denominator());
    let right = i128::from(b) * i128::from(tb.numerator()) * i128::from(ta.denominator());
    left.cmp(&right)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rejects_bad_numbers() {
        assert!(Window::from_secs(1.0, 0.0).is_err());
        assert!(Window::from_secs(-1.0, 10.0).is_err());
        assert!(Window::from_secs(f64::NAN, 10.0).is_err());
        assert!(Window::from_secs(0.0, f64::INFINITY).is_err());
        let w = Window::from_secs(1.5, 45.0).unwrap();
        assert_eq!(w.start, Duration::from_millis(1500));
        assert_eq!(w.duration, Duration::from_secs(45));
    }

    #[test]
    fn timestamps_compare_across_time_bases() {
        let ms = Rational::new(1, 1000);
        let ts90k = Rational::new(1, 90_000);
        assert_eq!(cmp_ts(1000, ms, 90_000, ts90k), Ordering::Equal);
        assert_eq!(cmp_ts(999, ms, 90_000, ts90k), Ordering::Less);
        assert_eq!(cmp_ts(1, ms, 89, ts90k), Ordering::Greater);
    }
}
