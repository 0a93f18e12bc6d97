//! What the worker needs to know about a recording before cutting: its length and when it started
//! (container `creation_time`, or a sidecar `<recording>.json` with `started_at_ms`).

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use ffmpeg_next as ffmpeg;

use crate::error::ClipError;
use crate::media::open_checked;

/// A recording's length and wall-clock start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// Length in milliseconds.
    pub length_ms: i64,
    /// When the recording started (Unix ms), if known.
    pub started_at_ms: Option<i64>,
}

#[derive(Debug, serde::Deserialize)]
struct Sidecar {
    started_at_ms: i64,
}

/// The sidecar of `recording`: `<recording>.json`.
pub fn sidecar_path(recording: &Path) -> PathBuf {
    let mut name = recording.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// Reads the recording's length and start. The sidecar wins over the container's `creation_time`.
pub fn probe(path: &Path) -> Result<Recording, ClipError> {
    ffmpeg::init().map_err(ClipError::Init)?;
    let input = open_checked(path)?;
    let length_ms = crate::growing::length_ms(&input, path)?;
    if length_ms <= 0 {
        return Err(ClipError::InvalidWindow(format!("{} has no known duration", path.display())));
    }
    let from_container = input
        .metadata()
        .get("creation_time")
        .and_then(|text| humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok())
        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok());
    let sidecar = sidecar_path(path);
    let from_sidecar = match std::fs::read(&sidecar) {
        Ok(bytes) => Some(
            serde_json::from_slice::<Sidecar>(&bytes)
                .map_err(|e| ClipError::InvalidWindow(format!("{}: {e}", sidecar.display())))?
                .started_at_ms,
        ),
        Err(_) => None,
    };
    Ok(Recording { length_ms, started_at_ms: from_sidecar.or(from_container) })
}
