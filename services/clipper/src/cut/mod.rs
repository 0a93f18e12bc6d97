//! Cutting a window out of a recording into an MP4 (`+faststart`) whose timeline starts at 0: the
//! stream-copy cut here (packets from the video keyframe at or before the requested start up to
//! the requested end, copied without re-encoding) and the frame-accurate smart cut in `exact`.
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

mod exact;

use crate::error::ClipError;
use crate::ffi;
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
    cut(input, window, out, Mode::Copy)
}

/// Cuts `window` out of the recording `input` starting exactly at the first frame shown at or after
/// `window.start`: a smart cut that re-encodes (x264, the source's profile and level) only the
/// frames from there to the next keyframe and copies the rest. H.264 recordings only. Otherwise as
/// [`cut_copy`]. Blocking.
pub fn cut_exact(input: &Path, window: Window, out: &Path) -> Result<CutReport, ClipError> {
    cut(input, window, out, Mode::Exact)
}

/// How the first frames of a clip are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Stream copy from the keyframe at or before the start.
    Copy,
    /// Smart cut from the exact start.
    Exact,
}

fn cut(input: &Path, window: Window, out: &Path, mode: Mode) -> Result<CutReport, ClipError> {
    window.validate()?;
    ffmpeg::init().map_err(ClipError::Init)?;
    let mut source = Source::open(input)?;
    let start = source.find_start(window)?;
    let tmp = temp_beside(out, ".part")?;
    // The output context is closed when the writer returns, before the rename.
    let written = match mode {
        Mode::Copy => write_clip(&mut source, start, tmp.path(), out)?,
        Mode::Exact => exact::write_exact(&mut source, start, tmp.path(), out)?,
    };

    set_readable(tmp.path())?;
    tmp.persist(out).map_err(|e| io_error("cannot rename the clip to", out, e.error))?;
    let size_bytes = fs::metadata(out).map_err(|e| io_error("cannot stat", out, e))?.len();
    Ok(CutReport { start_ms: written.start_ms, duration_ms: written.duration_ms, size_bytes })
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
    /// Requested start (video time base).
    target: i64,
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
        // Measured from the end of the file: a live FLV says "0" (or a guess) until it is finished.
        let length_us = crate::growing::length_ms(&input, path).ok().filter(|ms| *ms > 0).map(|ms| ms * 1000);
        Ok(Source { path: path.to_path_buf(), input, video, audio, origin_us, length_us })
    }

    /// A copy of the video stream's codec parameters.
    fn video_parameters(&self, out: &Path) -> Result<ffmpeg::codec::Parameters, ClipError> {
        let stream = self.input.stream(self.video.index).ok_or_else(|| ClipError::Mux {
            path: out.to_path_buf(),
            reason: "video stream vanished".into(),
        })?;
        Ok(stream.parameters().clone())
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
        Ok(Scan::Found(Start { key_pts, buffered, eof, target, end_us }))
    }
}

/// Writes the clip into `tmp`: the buffered packets, then everything read up to the end of the
/// window, all by stream copy.
fn write_clip(source: &mut Source, start: Start, tmp: &Path, out: &Path) -> Result<Written, ClipError> {
    let parameters = source.video_parameters(out)?;
    let mut mux = Mux::open(source, parameters, start.key_pts, start.end_us, tmp, out)?;
    for packet in start.buffered {
        mux.write(packet)?;
    }
    mux.copy_rest(source, start.eof, Ok)
}

/// An output being written: the muxer and the per-packet decisions.
struct Mux<'o> {
    output: Output,
    cutter: Cutter,
    out: &'o Path,
}

impl<'o> Mux<'o> {
    /// Opens `tmp` as an MP4 (`+faststart`) with the recording's video (described by `video_parameters`) and
    /// audio streams, for a clip starting at `key_pts` (video time base) and ending at `end_us`.
    fn open(
        source: &Source,
        video_parameters: ffmpeg::codec::Parameters,
        key_pts: i64,
        end_us: i64,
        tmp: &Path,
        out: &'o Path,
    ) -> Result<Self, ClipError> {
        let mux_err = |reason: String| ClipError::Mux { path: out.to_path_buf(), reason };
        let video = source.video;
        let audio = source.audio;
        let mut output: Output = format::output_as(tmp, "mp4").map_err(|e| mux_err(e.to_string()))?;

        // Codec tags of other container families (MPEG-TS stream types: 27 for H.264, 15 for AAC)
        // are cleared: the MP4 muxer picks its own. It also turns ADTS AAC (MPEG-TS) into MP4's
        // framing by itself (`aac_adtstoasc`).
        let mut video_parameters = video_parameters;
        ffi::clear_codec_tag(&mut video_parameters);
        let mut codecs = vec![video_parameters.id().name()];
        let mut out_stream =
            output.add_stream(encoder::find(codec::Id::None)).map_err(|e| mux_err(e.to_string()))?;
        out_stream.set_parameters(video_parameters);
        out_stream.set_time_base(video.time_base);
        if let Some(info) = audio {
            let stream = source.input.stream(info.index).ok_or_else(|| mux_err("stream vanished".into()))?;
            let mut parameters = stream.parameters().clone();
            ffi::clear_codec_tag(&mut parameters);
            codecs.push(parameters.id().name());
            let mut out_stream =
                output.add_stream(encoder::find(codec::Id::None)).map_err(|e| mux_err(e.to_string()))?;
            out_stream.set_parameters(parameters);
            out_stream.set_time_base(info.time_base);
        }
        let mut options = Dictionary::new();
        options.set("movflags", "+faststart");
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
        let cutter = Cutter {
            video,
            audio,
            out_video,
            out_audio,
            key_pts,
            key_audio: audio.map(|a| key_pts.rescale(video.time_base, a.time_base)),
            video_end: end_us.rescale(TIME_BASE, video.time_base),
            audio_end: audio.map(|a| end_us.rescale(TIME_BASE, a.time_base)),
            video_done: false,
            audio_done: audio.is_none(),
            tail: Vec::new(),
            clip_end_us: 0,
            wrote_video: false,
        };
        Ok(Mux { output, cutter, out })
    }

    /// Writes `packet` (a packet of the recording, or one made for its video stream) if it
    /// belongs to the clip.
    fn write(&mut self, packet: Packet) -> Result<(), ClipError> {
        self.cutter
            .handle(packet, &mut self.output)
            .map_err(|e| ClipError::Mux { path: self.out.to_path_buf(), reason: e.to_string() })
    }

    /// Reads the rest of the window from `source` (unless it is at its end), passing video
    /// packets through `video_map` on the way, and finishes the file.
    fn copy_rest(
        mut self,
        source: &mut Source,
        eof: bool,
        mut video_map: impl FnMut(Packet) -> Result<Packet, ClipError>,
    ) -> Result<Written, ClipError> {
        if !eof {
            while !(self.cutter.video_done && self.cutter.audio_done) {
                let mut packet = Packet::empty();
                if !read_packet(&mut source.input, &mut packet, &source.path)? {
                    break;
                }
                if packet.stream() == source.video.index && !self.cutter.video_done {
                    packet = video_map(packet)?;
                }
                self.write(packet)?;
            }
        }
        self.cutter
            .finish_video(&mut self.output)
            .map_err(|e| ClipError::Mux { path: self.out.to_path_buf(), reason: e.to_string() })?;
        if !self.cutter.wrote_video {
            return Err(ClipError::NoKeyframe { path: source.path.clone() });
        }
        self.output
            .write_trailer()
            .map_err(|e| ClipError::Mux { path: self.out.to_path_buf(), reason: e.to_string() })?;
        let start_us = self.cutter.key_pts.rescale(source.video.time_base, TIME_BASE) - source.origin_us;
        Ok(Written {
            start_ms: u64::try_from(start_us.max(0) / 1000).unwrap_or(0),
            duration_ms: u64::try_from(self.cutter.clip_end_us.max(0) / 1000).unwrap_or(0),
        })
    }
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
    /// Video packets from the first one shown at or after the end, held until no later packet can
    /// be shown before the end (see `handle`).
    tail: Vec<Packet>,
    /// Latest end of a written packet, µs on the clip's clock.
    clip_end_us: i64,
    wrote_video: bool,
}

impl Cutter {
    /// Writes `packet` if it belongs to the clip. Audio is cut by time. Video is a prefix in decode
    /// order, so everything written decodes: every packet before the first one shown at or after
    /// the end is written; from there on packets are held until one is decoded at or after the end
    /// (no later packet can be shown before it), then `finish_video` writes the prefix of the held
    /// packets that misses the fewest pictures before the end while showing the fewest after it
    /// (a reference picture shown just after the end may be needed by B-frames shown before it).
    fn handle(&mut self, packet: Packet, output: &mut Output) -> Result<(), ffmpeg::Error> {
        let index = packet.stream();
        if index == self.video.index {
            let (Some(pts), Some(dts)) = (packet.pts().or(packet.dts()), packet.dts().or(packet.pts()))
            else {
                return Ok(());
            };
            if self.video_done {
                return Ok(());
            }
            if pts < self.key_pts {
                return Ok(()); // leading pictures of an open GOP: they need the previous GOP
            }
            if dts >= self.video_end {
                return self.finish_video(output);
            }
            if pts >= self.video_end || !self.tail.is_empty() {
                self.tail.push(packet);
                return Ok(());
            }
            return self.write_video(packet, output);
        }
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
        self.write(packet, key, audio.time_base, out_tb, 1, output)
    }

    /// Ends the video: writes the best prefix of the held packets (see `handle`).
    fn finish_video(&mut self, output: &mut Output) -> Result<(), ffmpeg::Error> {
        if self.video_done {
            return Ok(());
        }
        self.video_done = true;
        let tail = std::mem::take(&mut self.tail);
        let shown_before_end: Vec<bool> =
            tail.iter().map(|p| p.pts().or(p.dts()).is_some_and(|pts| pts < self.video_end)).collect();
        // error(n) = pictures after the end among the first n + pictures before the end left out.
        let mut best = (shown_before_end.iter().filter(|b| **b).count(), 0);
        let mut error = best.0;
        for (n, before) in shown_before_end.iter().enumerate() {
            error = if *before { error - 1 } else { error + 1 };
            if error < best.0 {
                best = (error, n + 1);
            }
        }
        for packet in tail.into_iter().take(best.1) {
            self.write_video(packet, output)?;
        }
        Ok(())
    }

    fn write_video(&mut self, packet: Packet, output: &mut Output) -> Result<(), ffmpeg::Error> {
        self.wrote_video = true;
        self.write(packet, self.key_pts, self.video.time_base, self.out_video, 0, output)
    }

    /// Shifts `packet` by `offset` (its own time base `in_tb`) onto the clip's clock and writes it.
    fn write(
        &mut self,
        mut packet: Packet,
        offset: i64,
        in_tb: Rational,
        out_tb: Rational,
        out_index: usize,
        output: &mut Output,
    ) -> Result<(), ffmpeg::Error> {
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
