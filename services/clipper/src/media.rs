//! Helpers every libav job of the clipper shares: opening inputs and decoders, reading packets,
//! and writing outputs under a temporary name beside their final path.

use std::fs;
use std::io;
use std::path::Path;

use ffmpeg::format::context::Input;
use ffmpeg::rescale::TIME_BASE;
use ffmpeg::{codec, decoder, format, media, Dictionary, Packet, Rescale};
use ffmpeg_next as ffmpeg;

use crate::error::ClipError;

/// libav's "no timestamp" (`AV_NOPTS_VALUE`).
pub(crate) const NO_TS: i64 = i64::MIN;

/// First timestamp of the recording (earliest start of its video and audio), µs; as in `cut`.
pub(crate) fn origin_us(input: &Input) -> i64 {
    [media::Type::Video, media::Type::Audio]
        .into_iter()
        .filter_map(|kind| input.streams().best(kind))
        .filter(|s| s.start_time() != NO_TS)
        .map(|s| s.start_time().rescale(s.time_base(), TIME_BASE))
        .min()
        .unwrap_or(0)
}

/// Opens `path` as a media file: `NotFound` if it does not exist, `NotMedia` if libav cannot read
/// it (text files included, which libav would take for ANSI art).
pub(crate) fn open_checked(path: &Path) -> Result<Input, ClipError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
            return Err(io_error("cannot read", path, e));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ClipError::NotFound { path: path.to_path_buf() })
        }
        Err(e) => return Err(io_error("cannot open", path, e)),
    }
    let input =
        format::input(path).map_err(|source| ClipError::NotMedia { path: path.to_path_buf(), source })?;
    if input.format().name() == "tty" {
        return Err(ClipError::NotMedia { path: path.to_path_buf(), source: ffmpeg::Error::InvalidData });
    }
    Ok(input)
}

/// A video decoder for `stream`, opened with an explicit codec and `threads=auto`.
pub(crate) fn open_video_decoder(
    stream: &format::stream::Stream<'_>,
    path: &Path,
) -> Result<decoder::Video, ClipError> {
    let parameters = stream.parameters();
    let id = parameters.id();
    let not_media = |source| ClipError::NotMedia { path: path.to_path_buf(), source };
    let codec = decoder::find(id).ok_or(ClipError::Unsupported {
        path: path.to_path_buf(),
        kind: "video",
        codec: id.name(),
    })?;
    let mut context = codec::context::Context::from_parameters(parameters).map_err(not_media)?;
    context.set_time_base(stream.time_base());
    let mut decoder = context.decoder();
    decoder.set_packet_time_base(stream.time_base());
    let mut options = Dictionary::new();
    options.set("threads", "auto");
    decoder.open_as_with(codec, options).and_then(|d| d.video()).map_err(not_media)
}

/// Reads the next packet; `Ok(false)` at the end of the file. Read errors are reported, not taken
/// for the end.
pub(crate) fn read_packet(input: &mut Input, packet: &mut Packet, path: &Path) -> Result<bool, ClipError> {
    match packet.read(input) {
        Ok(()) => Ok(true),
        Err(ffmpeg::Error::Eof) => Ok(false),
        Err(source) => Err(ClipError::Read { path: path.to_path_buf(), source }),
    }
}

/// A temporary file in the directory of `out` (so the final rename stays on one filesystem),
/// removed when dropped.
pub(crate) fn temp_beside(out: &Path, suffix: &str) -> Result<tempfile::NamedTempFile, ClipError> {
    let dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(suffix)
        .tempfile_in(dir)
        .map_err(|e| io_error("cannot create a temporary file in", dir, e))
}

/// Temporary files are created owner-only; a thumbnail or clip is an ordinary file.
pub(crate) fn set_readable(path: &Path) -> Result<(), ClipError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o644))
            .map_err(|e| io_error("cannot set permissions of", path, e))?;
    }
    Ok(())
}

pub(crate) fn io_error(what: &'static str, path: &Path, source: io::Error) -> ClipError {
    ClipError::Io { what, path: path.to_path_buf(), source }
}

/// A duration in microseconds (libav's `AV_TIME_BASE`), saturating.
pub(crate) fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The window (or moment) at `at_us` lies past the end of a recording `length_us` long.
pub(crate) fn past_end(at_us: i64, length_us: i64) -> ClipError {
    ClipError::PastEnd { start_s: at_us as f64 / 1e6, length_s: length_us as f64 / 1e6 }
}

/// How far before the wanted time each seek attempt lands, after the exact seek (MPEG-TS and FLV
/// have no index, so a seek can land after the keyframe wanted); the last resort reads the
/// recording from its beginning.
pub(crate) const SEEK_BACKOFFS: [std::time::Duration; 5] = [
    std::time::Duration::ZERO,
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(6),
    std::time::Duration::from_secs(20),
    std::time::Duration::from_secs(60),
];
