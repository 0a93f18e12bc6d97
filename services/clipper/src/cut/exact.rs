//! The frame-accurate ("smart") cut: the frames from the requested start to the next keyframe are
//! decoded and re-encoded with x264 (the source's profile, level, size and colours; no B-frames;
//! one IDR picture), everything from that keyframe on is copied.
//!
//! The two parts share one H.264 track: x264 numbers its SPS/PPS with an id the recording does not
//! use, and the track's `avcC` carries both the recording's parameter sets and x264's, so every
//! picture finds its own. The splice point is an IDR picture of the recording, which refers to
//! nothing before it. Decode timestamps of the re-encoded part are shifted down by the source's
//! reorder delay at the splice point, so decode order stays strictly increasing across it.

use std::path::Path;

use ffmpeg::rescale::TIME_BASE;
use ffmpeg::util::frame;
use ffmpeg::{codec, encoder, picture, Dictionary, Packet, Rational, Rescale};
use ffmpeg_next as ffmpeg;

use super::{write_clip, Mux, Source, Start, Written};
use crate::error::ClipError;
use crate::ffi;
use crate::h264::{self, AvcConfig, ParameterSets};
use crate::media::{open_video_decoder, read_packet};

/// x264 settings of the re-encoded head: fast, and visually transparent next to typical stream
/// encodes (CRF 18).
const PRESET: &str = "veryfast";
const CRF: &str = "18";

/// How the recording's H.264 packets are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Length-prefixed NAL units (MP4, MKV, FLV) with this many length bytes.
    LengthPrefixed(usize),
    /// Start codes (MPEG-TS): converted to 4-byte lengths on the way out.
    AnnexB,
}

impl Framing {
    fn length_size(self) -> usize {
        match self {
            Framing::LengthPrefixed(size) => size,
            Framing::AnnexB => 4,
        }
    }

    /// The NAL units of a packet of the recording.
    fn split(self, data: &[u8]) -> Result<Vec<&[u8]>, h264::H264Error> {
        match self {
            Framing::LengthPrefixed(size) => h264::split_length_prefixed(data, size),
            Framing::AnnexB => Ok(h264::split_annexb(data)),
        }
    }
}

/// Writes the clip from the first frame shown at or after the requested start (see the module
/// documentation). Falls back to the copy cut when the keyframe is that frame.
pub(super) fn write_exact(
    source: &mut Source,
    start: Start,
    tmp: &Path,
    out: &Path,
) -> Result<Written, ClipError> {
    let path = source.path.clone();
    let bitstream = |source: h264::H264Error| ClipError::Bitstream { path: path.clone(), source };
    let video = source.video;
    let parameters = source.video_parameters(out)?;
    if parameters.id() != codec::Id::H264 {
        return Err(ClipError::ExactUnsupported { path: path.clone(), codec: parameters.id().name() });
    }
    if start.key_pts >= start.target {
        return write_clip(source, start, tmp, out);
    }

    let stream = source.input.stream(video.index).ok_or(ClipError::NoVideo { path: path.clone() })?;
    let rate = [stream.avg_frame_rate(), stream.rate()]
        .into_iter()
        .find(|r| r.numerator() > 0 && r.denominator() > 0)
        .unwrap_or(Rational::new(30, 1));
    let frame_duration = 1_i64.rescale(rate.invert(), video.time_base).max(1);
    let mut decoder = open_video_decoder(&stream, &path)?;
    let extradata = ffi::extradata(&parameters);
    let (framing, mut sets, trailer) = match AvcConfig::parse(&extradata).map_err(bitstream)? {
        Some(config) => (Framing::LengthPrefixed(config.length_size), config.sets, config.trailer),
        None => (Framing::AnnexB, h264::parse_annexb_sets(&extradata), Vec::new()),
    };

    // 1. The packets of the GOP being cut into, up to the next keyframe (the splice point).
    let gop = read_gop(source, start, framing, &mut sets).map_err(|e| match e {
        GopError::Clip(e) => e,
        GopError::Bitstream(e) => bitstream(e),
    })?;

    // 2. Decode it; re-encode the pictures from the requested start to the splice point.
    let first_sps = sets.sps.first().ok_or(bitstream(h264::H264Error::NoSps))?.clone();
    let sps_id = sets.free_id().map_err(bitstream)?;
    let limit = gop.splice.map_or(gop.video_end, |(pts, _)| pts.min(gop.video_end));
    let mut head = Head {
        target: gop.target,
        limit,
        time_base: video.time_base,
        rate,
        profile_idc: first_sps.get(1).copied().unwrap_or(0),
        level_idc: first_sps.get(3).copied().unwrap_or(0),
        sps_id,
        encoder: None,
        packets: Vec::new(),
        first_pts: None,
        out: out.to_path_buf(),
    };
    let read_err = |source| ClipError::Read { path: path.clone(), source };
    for packet in &gop.packets {
        decoder.send_packet(packet).map_err(read_err)?;
        head.drain_decoder(&mut decoder)?;
    }
    decoder.send_eof().map_err(read_err)?;
    head.drain_decoder(&mut decoder)?;
    head.finish()?;
    let first_pts = match (head.first_pts, gop.splice) {
        (Some(pts), _) => pts,
        // The first picture at or after the start is the next keyframe: a plain copy from there.
        (None, Some((pts, _))) => pts,
        // No picture at or after the start before the window's end: nothing to show.
        (None, None) => return Err(ClipError::NoKeyframe { path }),
    };

    // 3. One avcC for both parts: the recording's parameter sets and x264's.
    let length_size = framing.length_size();
    let reorder = gop.splice.map_or(0, |(pts, dts)| (pts - dts).max(0));
    let mut encoded = Vec::with_capacity(head.packets.len());
    for (index, packet) in head.packets.iter().enumerate() {
        let data = packet.data().unwrap_or_default();
        let mut nals = Vec::new();
        for nal in h264::split_annexb(data) {
            // x264's SPS/PPS go into the avcC, not the samples.
            if !sets.add(nal) {
                nals.push(nal);
            }
        }
        let mut made = Packet::copy(&h264::join_length_prefixed(nals, length_size).map_err(bitstream)?);
        made.set_stream(video.index);
        made.set_pts(packet.pts());
        made.set_dts(packet.pts().map(|pts| pts - reorder));
        made.set_duration(frame_duration);
        if index == 0 {
            made.set_flags(codec::packet::Flags::KEY);
        }
        encoded.push(made);
    }
    let config = AvcConfig { length_size, sets, trailer };
    let mut parameters = parameters;
    ffi::set_extradata(&mut parameters, &config.to_bytes().map_err(bitstream)?)
        .map_err(|e| ClipError::Mux { path: out.to_path_buf(), reason: format!("avcC: {e}") })?;

    // 4. Write: the re-encoded head, the held packets (audio, the splice keyframe, …), the rest.
    let mut mux = Mux::open(source, parameters, first_pts, gop.end_us, tmp, out)?;
    for packet in encoded {
        mux.write(packet)?;
    }
    if gop.splice.is_none() {
        // The window ends before the next keyframe: the recording's packets are not needed.
        mux.cutter
            .finish_video(&mut mux.output)
            .map_err(|e| ClipError::Mux { path: out.to_path_buf(), reason: e.to_string() })?;
    }
    let to_length = move |packet: Packet| -> Result<Packet, ClipError> {
        match framing {
            Framing::LengthPrefixed(_) => Ok(packet),
            Framing::AnnexB => annexb_to_length(packet, &path),
        }
    };
    for packet in gop.held {
        let packet = if packet.stream() == video.index { to_length(packet)? } else { packet };
        mux.write(packet)?;
    }
    mux.copy_rest(source, gop.eof, to_length)
}

/// Rewrites an Annex B packet of the recording with 4-byte length prefixes.
fn annexb_to_length(packet: Packet, path: &Path) -> Result<Packet, ClipError> {
    let data = packet.data().unwrap_or_default();
    let joined = h264::join_length_prefixed(h264::split_annexb(data), 4)
        .map_err(|source| ClipError::Bitstream { path: path.to_path_buf(), source })?;
    let mut made = Packet::copy(&joined);
    made.set_stream(packet.stream());
    made.set_pts(packet.pts());
    made.set_dts(packet.dts());
    made.set_duration(packet.duration());
    made.set_flags(packet.flags());
    Ok(made)
}

/// What `read_gop` gathered.
struct Gop {
    /// The requested start (video time base).
    target: i64,
    /// End of the window (video time base) and µs.
    video_end: i64,
    end_us: i64,
    /// Video packets from the starting keyframe to just before the splice point, decode order.
    packets: Vec<Packet>,
    /// `(pts, dts)` of the keyframe after the start: copying resumes there. `None` if the window
    /// (or the recording) ends first.
    splice: Option<(i64, i64)>,
    /// Packets read past the GOP (audio, the splice keyframe and after), read order.
    held: Vec<Packet>,
    eof: bool,
}

enum GopError {
    Clip(ClipError),
    Bitstream(h264::H264Error),
}

impl From<ClipError> for GopError {
    fn from(e: ClipError) -> Self {
        GopError::Clip(e)
    }
}

/// Reads from the starting keyframe to the next keyframe after the requested start, collecting the
/// recording's in-band parameter sets on the way.
fn read_gop(
    source: &mut Source,
    start: Start,
    framing: Framing,
    sets: &mut ParameterSets,
) -> Result<Gop, GopError> {
    let video = source.video;
    let video_end = start.end_us.rescale(TIME_BASE, video.time_base);
    let mut gop = Gop {
        target: start.target,
        video_end,
        end_us: start.end_us,
        packets: Vec::new(),
        splice: None,
        held: Vec::new(),
        eof: start.eof,
    };
    let mut buffered = start.buffered.into_iter();
    let mut gop_done = false;
    loop {
        let packet = match buffered.next() {
            Some(packet) => packet,
            None if gop.eof || gop_done => break,
            None => {
                let mut packet = Packet::empty();
                if !read_packet(&mut source.input, &mut packet, &source.path)? {
                    gop.eof = true;
                    break;
                }
                packet
            }
        };
        if gop_done || packet.stream() != video.index {
            gop.held.push(packet);
            continue;
        }
        let (Some(pts), Some(dts)) = (packet.pts().or(packet.dts()), packet.dts().or(packet.pts())) else {
            continue;
        };
        if packet.is_key() && !gop.packets.is_empty() && pts > gop.target {
            gop.splice = Some((pts, dts));
            gop.held.push(packet);
            gop_done = true;
            continue;
        }
        if packet.is_key() {
            for nal in framing.split(packet.data().unwrap_or_default()).map_err(GopError::Bitstream)? {
                sets.add(nal);
            }
        }
        gop.packets.push(packet);
        if dts >= video_end {
            // Every later picture is shown after the end: the window ends inside this GOP.
            gop_done = true;
        }
    }
    Ok(gop)
}

/// The re-encoded head of the clip.
struct Head {
    target: i64,
    /// Pictures shown at or after this (the splice point or the window's end) are not encoded.
    limit: i64,
    time_base: Rational,
    rate: Rational,
    profile_idc: u8,
    level_idc: u8,
    sps_id: u32,
    /// Opened on the first picture to encode (its size, format and colours).
    encoder: Option<encoder::Video>,
    /// x264's packets (Annex B, in-band SPS/PPS in the first).
    packets: Vec<Packet>,
    /// pts of the first picture encoded: the clip's start.
    first_pts: Option<i64>,
    out: std::path::PathBuf,
}

impl Head {
    fn drain_decoder(&mut self, decoder: &mut ffmpeg::decoder::Video) -> Result<(), ClipError> {
        let mut decoded = frame::Video::empty();
        while decoder.receive_frame(&mut decoded).is_ok() {
            let Some(pts) = decoded.timestamp() else { continue };
            if pts < self.target || pts >= self.limit {
                continue;
            }
            if self.encoder.is_none() {
                let encoder = self.open_encoder(&decoded).map_err(|e| x264_err(&self.out, e))?;
                self.encoder = Some(encoder);
                self.first_pts = Some(pts);
            }
            decoded.set_pts(Some(pts));
            // x264 chooses the picture types: the first is the IDR, no other keyframe follows.
            decoded.set_kind(picture::Type::None);
            let Some(encoder) = self.encoder.as_mut() else { continue };
            encoder.send_frame(&decoded).map_err(|e| x264_err(&self.out, e))?;
            self.drain_encoder()?;
        }
        Ok(())
    }

    fn drain_encoder(&mut self) -> Result<(), ClipError> {
        let Some(encoder) = self.encoder.as_mut() else { return Ok(()) };
        let mut packet = Packet::empty();
        while encoder.receive_packet(&mut packet).is_ok() {
            self.packets.push(std::mem::replace(&mut packet, Packet::empty()));
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ClipError> {
        if let Some(encoder) = self.encoder.as_mut() {
            encoder.send_eof().map_err(|e| x264_err(&self.out, e))?;
        }
        self.drain_encoder()
    }

    /// x264 matching the recording: size, pixel format, colours and aspect of `first`; the
    /// recording's time base, frame rate, profile and level; the free SPS id; no B-frames, no
    /// scene-cut keyframes, so the only keyframe is the first picture.
    fn open_encoder(&self, first: &frame::Video) -> Result<encoder::Video, String> {
        let codec = encoder::find_by_name("libx264").ok_or("libx264 is not available")?;
        let context = codec::context::Context::new_with_codec(codec);
        let mut enc = context.encoder().video().map_err(|e| e.to_string())?;
        enc.set_width(first.width());
        enc.set_height(first.height());
        enc.set_format(first.format());
        enc.set_time_base(self.time_base);
        enc.set_frame_rate(Some(self.rate));
        let aspect = first.aspect_ratio();
        if aspect.numerator() > 0 && aspect.denominator() > 0 {
            enc.set_aspect_ratio(aspect);
        }
        enc.set_colorspace(first.color_space());
        enc.set_color_range(first.color_range());
        enc.set_color_primaries(first.color_primaries());
        enc.set_color_transfer_characteristic(first.color_transfer_characteristic());
        enc.set_max_b_frames(0);
        enc.set_gop(u32::MAX >> 1);
        let mut options = Dictionary::new();
        options.set("preset", PRESET);
        options.set("crf", CRF);
        options.set("threads", "auto");
        if let Some(profile) = x264_profile(self.profile_idc, first.format()) {
            options.set("profile", profile);
        }
        if self.level_idc > 0 {
            options.set("level", &format!("{}.{}", self.level_idc / 10, self.level_idc % 10));
        }
        options.set("x264-params", &format!("sps-id={}:scenecut=0", self.sps_id));
        enc.open_as_with(codec, options).map_err(|e| format!("x264 refused the settings: {e}"))
    }
}

fn x264_err(out: &Path, e: impl std::fmt::Display) -> ClipError {
    ClipError::Mux { path: out.to_path_buf(), reason: format!("x264: {e}") }
}

/// The x264 profile for the recording's `profile_idc`, where x264 can match it in this pixel format.
fn x264_profile(profile_idc: u8, format: ffmpeg::format::Pixel) -> Option<&'static str> {
    if format != ffmpeg::format::Pixel::YUV420P && format != ffmpeg::format::Pixel::YUVJ420P {
        return None; // x264 picks the High 10/4:2:2/4:4:4 profile the format needs
    }
    match profile_idc {
        66 => Some("baseline"),
        77 => Some("main"),
        100 => Some("high"),
        _ => None,
    }
}
