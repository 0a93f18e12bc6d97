//! A moment's files in one download: every ready clip of the moment — each angle's MP4, its 9:16
//! variant and its thumbnail — as one ZIP, stored without compression (the media are compressed
//! already), written to an anonymous temporary file off the async threads and then streamed, so
//! a bundle of large clips never sits in memory.

use std::io::{Seek, SeekFrom};
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::auth::Caller;
use crate::clips::READERS;
use crate::error::ApiError;
use crate::state::AppState;

/// Writes `files` (name in the archive, path) into a stored ZIP in an anonymous temporary file,
/// rewound for reading.
pub fn write_zip(files: &[(String, PathBuf)]) -> std::io::Result<std::fs::File> {
    let file = tempfile::tempfile()?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for (name, path) in files {
        zip.start_file(name.as_str(), options).map_err(std::io::Error::other)?;
        std::io::copy(&mut std::fs::File::open(path)?, &mut zip)?;
    }
    let mut file = zip.finish().map_err(std::io::Error::other)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// All files of a moment (every angle, every variant) as one ZIP.
#[utoipa::path(get, path = "/moments/{moment_id}/download", tag = "clips", params(("moment_id" = String, Path)),
    responses((status = 200, content_type = "application/zip"), (status = 404)), security(("bearer" = [])))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(moment_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(READERS, "download clips")?;
    dropline_core::domain::check_name("moment_id", &moment_id).map_err(ApiError::bad_request)?;
    let files = state.clips.files_of_moment(&moment_id, &state.settings.clips);
    if files.is_empty() {
        return Err(ApiError::not_found(format!("no clip files of moment {moment_id:?}")));
    }
    let zipped = tokio::task::spawn_blocking(move || write_zip(&files))
        .await
        .map_err(std::io::Error::other)
        .and_then(|written| written)
        .map_err(|e| ApiError::unavailable(format!("cannot bundle the clips: {e}")))?;
    let length = zipped.metadata().map(|m| m.len()).unwrap_or(0);
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(zipped));
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{moment_id}.zip\"")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
