//! Recordings still being written (the MPEG-TS or FLV file of a stream that is live): how far a
//! recording reaches now, whether it still grows, and waiting (bounded) until a window is recorded.
//!
//! A live FLV says "duration 0" in its header until the recorder finishes it (and libav then guesses
//! from bit rates), while libav's duration of a growing MPEG-TS is read from its last timestamps;
//! so the length is measured from the end of the file: libav's estimate for MPEG-TS, the timestamp
//! of the last complete tag for FLV.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use ffmpeg_next::format::context::Input;

use crate::error::ClipError;
use crate::media::{io_error, open_checked};

/// How much of the end of an FLV file is searched for its last complete tag.
const FLV_TAIL: u64 = 1 << 20;

/// How a wait for a window is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitLimits {
    /// Give up after this long (`DROPLINE_CLIPPER_WAIT`).
    pub max_wait: Duration,
    /// A recording whose size has not changed for this long is finished.
    pub stall: Duration,
    /// How often the recording is looked at.
    pub poll: Duration,
}

impl Default for WaitLimits {
    fn default() -> Self {
        WaitLimits {
            max_wait: Duration::from_secs(90),
            stall: Duration::from_secs(10),
            poll: Duration::from_millis(500),
        }
    }
}

/// What a wait found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// How far the recording reaches, ms from its start.
    pub length_ms: i64,
    /// Whether it was still being written when the wait ended.
    pub growing: bool,
}

/// Whether `path` was modified within `stall` (a recorder appends to it continuously). A file
/// that cannot be looked at is not growing (opening it will say why).
pub fn is_growing(path: &Path, stall: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|modified| SystemTime::now().duration_since(modified).unwrap_or(Duration::ZERO) < stall)
}

/// How far the recording at `path` reaches now, in ms from its first timestamp.
pub fn recorded_ms(path: &Path) -> Result<i64, ClipError> {
    ffmpeg_next::init().map_err(ClipError::Init)?;
    length_ms(&open_checked(path)?, path)
}

/// How far the opened recording `input` (at `path`) reaches, in ms from its first timestamp.
pub(crate) fn length_ms(input: &Input, path: &Path) -> Result<i64, ClipError> {
    let from_libav = input.duration().max(0) / 1000;
    let is_flv = input.format().name().split(',').any(|n| n == "flv" || n == "live_flv");
    if !is_flv {
        return Ok(from_libav);
    }
    // libav's FLV duration is the header's (0 while live) or, without one, the file size over the
    // header's bit rates, which leave out CRF video: minutes for a few seconds of stream. Only the
    // last tag tells.
    let origin_ms = crate::media::origin_us(input) / 1000;
    Ok(flv_last_timestamp(path)?.map_or(from_libav, |ts| (ts - origin_ms).max(0)))
}

/// Waits until the recording at `path` reaches `until_ms` (ms from its start), it stops growing, or
/// `limits.max_wait` passes; returns what it reaches then. Blocking.
pub fn wait_until_recorded(path: &Path, until_ms: i64, limits: WaitLimits) -> Result<Recorded, ClipError> {
    let started = Instant::now();
    let mut last_size = None;
    let mut last_change = Instant::now();
    loop {
        let size = std::fs::metadata(path).map_err(|e| io_error("cannot stat", path, e))?.len();
        if last_size != Some(size) {
            last_size = Some(size);
            last_change = Instant::now();
        }
        // A recording just started may not be readable yet (no complete header or packet).
        let length_ms = match recorded_ms(path) {
            Ok(length_ms) => length_ms,
            Err(ClipError::NotMedia { .. } | ClipError::Read { .. })
                if last_change.elapsed() < limits.stall =>
            {
                0
            }
            Err(e) => return Err(e),
        };
        let growing = last_change.elapsed() < limits.stall && is_growing(path, limits.stall);
        if length_ms >= until_ms || !growing {
            return Ok(Recorded { length_ms, growing });
        }
        if started.elapsed() >= limits.max_wait {
            return Err(ClipError::NotRecordedYet {
                until_s: until_ms as f64 / 1000.0,
                recorded_s: length_ms as f64 / 1000.0,
                waited_s: started.elapsed().as_secs_f64(),
            });
        }
        std::thread::sleep(limits.poll);
    }
}

/// Timestamp (ms) of the last complete tag of the FLV file at `path`, found from the end: each tag
/// is followed by its size, so a tag ends at `i` where the 4 bytes at `i` name a size `n` and a
/// well-formed tag header of that size sits `n` bytes earlier.
fn flv_last_timestamp(path: &Path) -> Result<Option<i64>, ClipError> {
    let mut file = File::open(path).map_err(|e| io_error("cannot open", path, e))?;
    let size = file.metadata().map_err(|e| io_error("cannot stat", path, e))?.len();
    let from = size.saturating_sub(FLV_TAIL);
    file.seek(SeekFrom::Start(from)).map_err(|e| io_error("cannot read", path, e))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(|e| io_error("cannot read", path, e))?;
    Ok(last_tag_timestamp(&tail))
}

/// See `flv_last_timestamp`; `tail` is the end of the file.
fn last_tag_timestamp(tail: &[u8]) -> Option<i64> {
    let u24 = |b: &[u8]| (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
    for end in (0..tail.len().saturating_sub(3)).rev() {
        let tag_size = u32::from_be_bytes([tail[end], tail[end + 1], tail[end + 2], tail[end + 3]]);
        let Ok(tag_size) = usize::try_from(tag_size) else { continue };
        if tag_size < 11 || tag_size > end {
            continue;
        }
        let header = &tail[end - tag_size..end - tag_size + 11];
        let kind = header[0] & 0x1f;
        let well_formed = matches!(kind, 8 | 9 | 18)
            && header[0] & 0xc0 == 0
            && usize::try_from(u24(&header[1..4])).is_ok_and(|data| data + 11 == tag_size)
            && header[8..11] == [0, 0, 0];
        if well_formed {
            let timestamp = u24(&header[4..7]) | (u32::from(header[7]) << 24);
            return Some(i64::from(timestamp as i32));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One FLV tag (header, data, trailing size).
    fn tag(kind: u8, timestamp: u32, data: &[u8]) -> Vec<u8> {
        let len = u32::try_from(data.len()).unwrap();
        let mut out = vec![kind];
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.extend_from_slice(&timestamp.to_be_bytes()[1..]);
        out.push((timestamp >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(data);
        out.extend_from_slice(&(len + 11).to_be_bytes());
        out
    }

    #[test]
    fn last_complete_tag_is_found_even_when_the_file_ends_mid_tag() {
        let mut flv = tag(9, 0, &[0x17; 40]);
        flv.extend(tag(8, 23, &[0xaf; 20]));
        flv.extend(tag(9, 33, &[0x27; 300]));
        assert_eq!(last_tag_timestamp(&flv), Some(33));
        let partial = tag(9, 66, &[0x27; 300]);
        flv.extend_from_slice(&partial[..150]);
        assert_eq!(last_tag_timestamp(&flv), Some(33));
        // Timestamps past 2^24 ms use the extension byte.
        assert_eq!(last_tag_timestamp(&tag(9, 20_000_000, &[1; 5])), Some(20_000_000));
        assert_eq!(last_tag_timestamp(&[0; 64]), None);
        assert_eq!(last_tag_timestamp(&[]), None);
    }
}
