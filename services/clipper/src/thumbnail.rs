//! JPEG thumbnails: the first picture at or after a given time of a recording, scaled down to a
//! maximum width (aspect kept, sample aspect ratio honoured) and encoded with libav's MJPEG encoder
//! in full-range YUV 4:2:0.
//!
//! Seeking is as for the stream-copy cut: seek to the keyframe before the wanted time (MP4/MKV land
//! on it thanks to their index; MPEG-TS/FLV may land anywhere, so seek further back, 2, 6, 20, 60 s,
//! until the first decoded picture is at or before the wanted time; finally decode from the
//! beginning), then decode forward. Also holds the file helpers `vertical` shares.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use ffmpeg::format::context::Input;
use ffmpeg::format::Pixel;
use ffmpeg::rescale::TIME_BASE;
use ffmpeg::software::scaling;
use ffmpeg::{codec, encoder, frame, media, Dictionary, Packet, Rational, Rescale};
use ffmpeg_next as ffmpeg;

use crate::error::ClipError;
use crate::media::{
    io_error, micros, open_checked, open_video_decoder, origin_us, past_end, read_packet, set_readable,
    temp_beside, NO_TS, SEEK_BACKOFFS,
};

/// MJPEG quantiser range (2 = best, 31 = worst): about `ffmpeg -q:v 4` (measured: the same size as
/// the CLI's default for a 320x180 testsrc2 picture).
const JPEG_QMIN: i32 = 2;
const JPEG_QMAX: i32 = 4;

/// What a thumbnail came out as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThumbReport {
    /// Size of the JPEG in pixels.
    pub width: u32,
    pub height: u32,
    /// Time of the picture taken, milliseconds from the start of the recording (at or after the
    /// requested time).
    pub at_ms: u64,
    /// Size of the written file.
    pub size_bytes: u64,
}

/// Writes a JPEG of the first picture of `input` at or after `at` (from the start of the
/// recording) to `out`, at most `max_width` pixels wide (never enlarged), aspect kept.
///
/// Written under a temporary name in the directory of `out` and renamed: on error nothing is left
/// behind. `at` at or past the end of the video is [`ClipError::PastEnd`]. Blocking.
pub fn thumbnail(input: &Path, at: Duration, out: &Path, max_width: u32) -> Result<ThumbReport, ClipError> {
    if max_width < 2 {
        return Err(ClipError::InvalidWindow(format!("thumbnail width {max_width} is too small")));
    }
    ffmpeg::init().map_err(ClipError::Init)?;
    let mut source = open_checked(input)?;
    let (video_index, time_base) = source
        .streams()
        .best(media::Type::Video)
        .map(|s| (s.index(), s.time_base()))
        .ok_or_else(|| ClipError::NoVideo { path: input.to_path_buf() })?;
    let origin_us = origin_us(&source);
    let at_us = micros(at);
    let length_us = source.duration();
    if length_us != NO_TS && length_us > 0 && at_us >= length_us {
        return Err(past_end(at_us, length_us));
    }
    let target_us = origin_us.saturating_add(at_us);
    let target = target_us.rescale(TIME_BASE, time_base);

    let mut picture = None;
    for backoff in SEEK_BACKOFFS {
        let seek_us = target_us.saturating_sub(micros(backoff));
        if seek_us <= origin_us.max(0) {
            break; // as good as decoding from the beginning
        }
        if source.seek(seek_us, ..seek_us).is_err() {
            continue;
        }
        match decode_until(&mut source, video_index, target, input, false)? {
            Found::Picture(frame) => {
                picture = Some(frame);
                break;
            }
            // Nothing decodable after the seek point (MPEG-TS may land anywhere): seek further back.
            Found::TooLate | Found::End(None) => continue,
            Found::End(last) => return Err(end_error(last, time_base, origin_us, at_us)),
        }
    }
    let picture = match picture {
        Some(frame) => frame,
        None => {
            let mut fresh = open_checked(input)?;
            match decode_until(&mut fresh, video_index, target, input, true)? {
                Found::Picture(frame) => frame,
                Found::TooLate => return Err(ClipError::NoKeyframe { path: input.to_path_buf() }),
                Found::End(last) => return Err(end_error(last, time_base, origin_us, at_us)),
            }
        }
    };

    let taken_us = picture.timestamp().map_or(target_us, |t| t.rescale(time_base, TIME_BASE));
    let (width, height) = fit(&picture, max_width);
    let jpeg = encode_jpeg(&picture, width, height).map_err(|e| encode_error(out, e))?;

    let mut tmp = temp_beside(out, ".part")?;
    tmp.write_all(&jpeg).map_err(|e| io_error("cannot write", tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| io_error("cannot write", tmp.path(), e))?;
    set_readable(tmp.path())?;
    tmp.persist(out).map_err(|e| io_error("cannot rename the thumbnail to", out, e.error))?;
    Ok(ThumbReport {
        width,
        height,
        at_ms: u64::try_from((taken_us - origin_us).max(0) / 1000).unwrap_or(0),
        size_bytes: u64::try_from(jpeg.len()).unwrap_or(u64::MAX),
    })
}

/// Outcome of decoding forward from a seek.
enum Found {
    /// The first picture at or after the target.
    Picture(frame::Video),
    /// The first picture decoded is already past the target: the seek landed too late.
    TooLate,
    /// The video ended before the target; the timestamp of its last picture, if any.
    End(Option<i64>),
}

/// Decodes the video stream from the current position (starting at its first keyframe) until a
/// picture at or after `target` (video time base). Unless `from_beginning`, a first picture later
/// than `target` means the seek overshot.
fn decode_until(
    source: &mut Input,
    index: usize,
    target: i64,
    path: &Path,
    from_beginning: bool,
) -> Result<Found, ClipError> {
    let read_err = |source: ffmpeg::Error| ClipError::Read { path: path.to_path_buf(), source };
    let stream = source.stream(index).ok_or_else(|| ClipError::NoVideo { path: path.to_path_buf() })?;
    let mut decoder = open_video_decoder(&stream, path)?;
    let mut frame = frame::Video::empty();
    let mut started = false;
    let mut first = true;
    let mut last: Option<i64> = None;
    let mut eof = false;
    while !eof {
        let mut packet = Packet::empty();
        if read_packet(source, &mut packet, path)? {
            if packet.stream() != index {
                continue;
            }
            // Start at a keyframe: pictures before it cannot be decoded properly.
            started |= packet.is_key() && !packet.is_corrupt();
            if !started {
                continue;
            }
            decoder.send_packet(&packet).map_err(read_err)?;
        } else {
            eof = true;
            decoder.send_eof().map_err(read_err)?;
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            let Some(ts) = frame.timestamp().or(frame.pts()) else { continue };
            if first && ts > target && !from_beginning {
                return Ok(Found::TooLate);
            }
            first = false;
            last = Some(ts);
            if ts >= target {
                return Ok(Found::Picture(frame));
            }
        }
    }
    Ok(Found::End(last))
}

/// The thumbnail size: at most `max_width` wide and never wider than the picture as displayed
/// (sample aspect ratio applied), height from the display aspect; both at least 2.
fn fit(picture: &frame::Video, max_width: u32) -> (u32, u32) {
    let (w, h) = (f64::from(picture.width().max(1)), f64::from(picture.height().max(1)));
    let sar = picture.aspect_ratio();
    let sar = if sar.numerator() > 0 && sar.denominator() > 0 { f64::from(sar) } else { 1.0 };
    let display_w = w * sar;
    let width = display_w.round().min(f64::from(max_width)).max(2.0);
    let height = (width * h / display_w).round().max(2.0);
    // Both come from u32 values and are at least 2.
    (width as u32, height as u32)
}

/// Scales `picture` to `width`×`height` full-range YUV 4:2:0 and encodes it as one JPEG.
fn encode_jpeg(picture: &frame::Video, width: u32, height: u32) -> Result<Vec<u8>, ffmpeg::Error> {
    let mut scaler = scaling::Context::get(
        picture.format(),
        picture.width(),
        picture.height(),
        Pixel::YUVJ420P,
        width,
        height,
        scaling::Flags::BICUBIC,
    )?;
    let mut scaled = frame::Video::empty();
    scaler.run(picture, &mut scaled)?;
    scaled.set_pts(Some(0));

    let codec = encoder::find(codec::Id::MJPEG).ok_or(ffmpeg::Error::EncoderNotFound)?;
    let mut enc = codec::context::Context::new_with_codec(codec).encoder().video()?;
    enc.set_width(width);
    enc.set_height(height);
    enc.set_format(Pixel::YUVJ420P);
    enc.set_time_base(Rational::new(1, 25));
    enc.set_aspect_ratio(Rational::new(1, 1));
    enc.set_qmin(JPEG_QMIN);
    enc.set_qmax(JPEG_QMAX);
    let mut enc = enc.open_as_with(codec, Dictionary::new())?;
    enc.send_frame(&scaled)?;
    enc.send_eof()?;
    let mut packet = Packet::empty();
    let mut jpeg = Vec::new();
    while enc.receive_packet(&mut packet).is_ok() {
        jpeg.extend_from_slice(packet.data().unwrap_or_default());
    }
    if jpeg.is_empty() {
        return Err(ffmpeg::Error::Bug);
    }
    Ok(jpeg)
}

fn end_error(last: Option<i64>, time_base: Rational, origin_us: i64, at_us: i64) -> ClipError {
    let length_us = last.map_or(0, |t| t.rescale(time_base, TIME_BASE) - origin_us);
    past_end(at_us, length_us.max(0))
}

fn encode_error(out: &Path, e: ffmpeg::Error) -> ClipError {
    io_error("cannot encode the JPEG", out, io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_aspect_and_never_enlarges() {
        let picture = frame::Video::new(Pixel::YUV420P, 640, 360);
        assert_eq!(fit(&picture, 320), (320, 180));
        assert_eq!(fit(&picture, 1280), (640, 360));
        assert_eq!(fit(&picture, 2), (2, 2));
    }
}
