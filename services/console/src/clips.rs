//! The clip gallery's data: every `ClipEvent` on `clips` (replayed from the start) kept by clip id,
//! and the files served with HTTP range requests so a browser can seek. Only files a `ClipReady`
//! named, inside `DROPLINE_CLIPS`, are ever served.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{PoisonError, RwLock};

use axum::body::Body as HttpBody;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dropline_core::kafka::{self, Followed};
use dropline_core::TopicKind;
use dropline_proto::v1::{clip_event, ClipEvent, ClipReason};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::warn;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// Everyone may watch clips; the gallery is the editors'.
pub(crate) const READERS: &[Role] = &[Role::Editor, Role::Producer, Role::Creator];

/// A clip as the gallery shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ClipView {
    pub clip_id: String,
    pub drop_id: String,
    /// The moment this clip is of: the clips of every angle of one moment share it (a clip of a
    /// drop with one recording is its own moment).
    pub moment_id: String,
    /// The camera (empty: the drop has one recording).
    pub angle: String,
    /// `ready` or `failed`.
    pub status: String,
    /// `DROP_OPENED`, `RUSH`, `SOLD_OUT`, `MARKER`.
    pub reason: String,
    pub note: String,
    /// Where the clip starts in the recording, and its length (ms).
    pub start_ms: i64,
    pub duration_ms: i64,
    pub size_bytes: u64,
    /// The moment, Unix ms, when the clip was cut around one.
    pub at_ms: Option<i64>,
    pub ready_at_ms: i64,
    /// Why it failed.
    pub failure: String,
    pub video_url: Option<String>,
    pub thumbnail_url: Option<String>,
    pub vertical_url: Option<String>,
}

/// Server-side paths of a clip's files.
#[derive(Debug, Clone, Default)]
struct Files {
    video: Option<PathBuf>,
    thumbnail: Option<PathBuf>,
    vertical: Option<PathBuf>,
}

/// Clip ids in arrival order, and each clip with its files.
type Clips = (Vec<String>, HashMap<String, (ClipView, Files)>);

/// Clips by id, in arrival order.
#[derive(Debug, Default)]
pub struct ClipIndex {
    clips: RwLock<Clips>,
}

fn reason_name(reason: i32) -> String {
    ClipReason::try_from(reason)
        .unwrap_or(ClipReason::Unspecified)
        .as_str_name()
        .trim_start_matches("CLIP_REASON_")
        .to_owned()
}

fn some_path(path: &str) -> Option<PathBuf> {
    (!path.is_empty()).then(|| PathBuf::from(path))
}

impl ClipIndex {
    /// Folds one event in. A later `ClipReady` of the same clip (its vertical variant) completes
    /// the earlier one.
    pub fn add(&self, event: ClipEvent) {
        let mut guard = self.clips.write().unwrap_or_else(PoisonError::into_inner);
        let (order, clips) = &mut *guard;
        let (view, files) = match event.event {
            Some(clip_event::Event::Ready(ready)) => {
                let id = ready.clip_id.clone();
                let url = |kind: &str, present: bool| present.then(|| format!("/clips/{id}/{kind}"));
                let previous = clips.get(&id).map(|(_, f)| f.clone()).unwrap_or_default();
                let files = Files {
                    video: some_path(&ready.path).or(previous.video),
                    thumbnail: some_path(&ready.thumbnail_path).or(previous.thumbnail),
                    vertical: some_path(&ready.vertical_path).or(previous.vertical),
                };
                let moment_id = if ready.moment_id.is_empty() { id.clone() } else { ready.moment_id };
                let view = ClipView {
                    clip_id: id.clone(),
                    drop_id: ready.drop_id,
                    moment_id,
                    angle: ready.angle,
                    status: "ready".into(),
                    reason: reason_name(ready.reason),
                    note: ready.note,
                    start_ms: ready.start_ms,
                    duration_ms: ready.duration_ms,
                    size_bytes: ready.size_bytes,
                    at_ms: ready.at_ms,
                    ready_at_ms: ready.ready_at_ms,
                    failure: String::new(),
                    video_url: url("video", files.video.is_some()),
                    thumbnail_url: url("thumbnail", files.thumbnail.is_some()),
                    vertical_url: url("vertical", files.vertical.is_some()),
                };
                (view, files)
            }
            Some(clip_event::Event::Failed(failed)) => {
                if clips.get(&failed.clip_id).is_some_and(|(v, _)| v.status == "ready") {
                    return; // a redelivered failure never hides a clip that exists
                }
                let moment_id =
                    if failed.moment_id.is_empty() { failed.clip_id.clone() } else { failed.moment_id };
                let view = ClipView {
                    clip_id: failed.clip_id.clone(),
                    drop_id: failed.drop_id,
                    moment_id,
                    angle: failed.angle,
                    status: "failed".into(),
                    reason: reason_name(failed.moment),
                    note: String::new(),
                    start_ms: 0,
                    duration_ms: 0,
                    size_bytes: 0,
                    at_ms: None,
                    ready_at_ms: failed.failed_at_ms,
                    failure: failed.reason,
                    video_url: None,
                    thumbnail_url: None,
                    vertical_url: None,
                };
                (view, Files::default())
            }
            None => return,
        };
        if !clips.contains_key(&view.clip_id) {
            order.push(view.clip_id.clone());
        }
        clips.insert(view.clip_id.clone(), (view, files));
    }

    pub(crate) fn list(&self, drop_id: Option<&str>) -> Vec<ClipView> {
        let guard = self.clips.read().unwrap_or_else(PoisonError::into_inner);
        let (order, clips) = &*guard;
        order
            .iter()
            .rev()
            .filter_map(|id| clips.get(id))
            .filter(|(view, _)| drop_id.is_none_or(|d| view.drop_id == d))
            .map(|(view, _)| view.clone())
            .collect()
    }

    /// Every file of the ready clips of `moment_id` that still lies inside `root`, each with the
    /// name it goes by in a download (`<clip>.mp4`, `<clip>.vertical.mp4`, `<clip>.jpg`).
    pub(crate) fn files_of_moment(&self, moment_id: &str, root: &FsPath) -> Vec<(String, PathBuf)> {
        let guard = self.clips.read().unwrap_or_else(PoisonError::into_inner);
        let (order, clips) = &*guard;
        let mut out = Vec::new();
        for (view, files) in order.iter().filter_map(|id| clips.get(id)) {
            if view.moment_id != moment_id || view.status != "ready" {
                continue;
            }
            let named = [
                (&files.video, format!("{}.mp4", view.clip_id)),
                (&files.vertical, format!("{}.vertical.mp4", view.clip_id)),
                (&files.thumbnail, format!("{}.jpg", view.clip_id)),
            ];
            for (path, name) in named {
                if let Some(path) = path.as_deref().and_then(|p| inside(root, p)) {
                    out.push((name, path));
                }
            }
        }
        out
    }

    fn get(&self, clip_id: &str) -> Option<(ClipView, Files)> {
        self.clips.read().unwrap_or_else(PoisonError::into_inner).1.get(clip_id).cloned()
    }
}

/// Folds `clips` into the index until `shutdown`.
pub async fn follow(state: AppState, shutdown: CancellationToken) {
    let topic = state.settings.topics.name(TopicKind::Clips);
    kafka::follow_from_start(
        &state.settings,
        "dropline-console-clips",
        topic,
        &state.health,
        "clips",
        &shutdown,
        |f| match f {
            Followed::Message { event: Ok(event), .. } => state.clips.add(event),
            Followed::Message { event: Err(e), .. } => warn!(error = %e, "clip event skipped"),
            Followed::CaughtUp => state.ledger.caught_up(TopicKind::Clips),
        },
    )
    .await;
}

/// Filter of the clip list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ClipFilter {
    /// Only this drop's clips.
    pub drop_id: Option<String>,
}

/// Clips, newest first.
#[utoipa::path(get, path = "/api/clips", tag = "clips", params(ClipFilter),
    responses((status = 200, body = [ClipView])), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(filter): Query<ClipFilter>,
) -> Result<Json<Vec<ClipView>>, ApiError> {
    caller.require(READERS, "see clips")?;
    Ok(Json(state.clips.list(filter.drop_id.as_deref())))
}

/// One clip.
#[utoipa::path(get, path = "/api/clips/{id}", tag = "clips", params(("id" = String, Path)),
    responses((status = 200, body = ClipView), (status = 404)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ClipView>, ApiError> {
    caller.require(READERS, "see clips")?;
    state
        .clips
        .get(&id)
        .map(|(view, _)| Json(view))
        .ok_or_else(|| ApiError::not_found(format!("no clip {id:?}")))
}

/// Which file of a clip.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Video,
    Thumbnail,
    Vertical,
}

async fn serve(
    state: AppState,
    caller: Caller,
    id: String,
    kind: Kind,
    request: Request,
) -> Result<Response, ApiError> {
    caller.require(READERS, "watch clips")?;
    let (_, files) = state.clips.get(&id).ok_or_else(|| ApiError::not_found(format!("no clip {id:?}")))?;
    let (path, name) = match kind {
        Kind::Video => (files.video, "video"),
        Kind::Thumbnail => (files.thumbnail, "thumbnail"),
        Kind::Vertical => (files.vertical, "vertical variant"),
    };
    let path = path.ok_or_else(|| ApiError::not_found(format!("clip {id} has no {name}")))?;
    let path = inside(&state.settings.clips, &path)
        .ok_or_else(|| ApiError::not_found(format!("the {name} of clip {id} is gone")))?;
    let response = tower_http::services::ServeFile::new(path)
        .oneshot(bytes_ranges_only(request))
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot read the {name}: {e}")))?;
    if response.status() == axum::http::StatusCode::RANGE_NOT_SATISFIABLE {
        // The refusal as every other: JSON naming the problem (Content-Range says the length).
        let (parts, _) = response.into_parts();
        let mut refusal =
            ApiError::new(parts.status, format!("Range: the {name} of clip {id} has no such bytes"))
                .into_response();
        if let Some(length) = parts.headers.get(axum::http::header::CONTENT_RANGE) {
            refusal.headers_mut().insert(axum::http::header::CONTENT_RANGE, length.clone());
        }
        return Ok(refusal);
    }
    Ok(response.map(HttpBody::new).into_response())
}

/// A `Range` in a unit other than bytes is ignored, as RFC 9110 §14.2 asks (the whole file is
/// served); byte ranges go on to the file server.
fn bytes_ranges_only(mut request: Request) -> Request {
    let range = request.headers().get(axum::http::header::RANGE).and_then(|v| v.to_str().ok());
    if range.is_some_and(|r| !r.trim_start().to_ascii_lowercase().starts_with("bytes=")) {
        request.headers_mut().remove(axum::http::header::RANGE);
    }
    request
}

/// `path` if it exists and lies inside `root` (after resolving links).
fn inside(root: &FsPath, path: &FsPath) -> Option<PathBuf> {
    let root = root.canonicalize().ok()?;
    let path = path.canonicalize().ok()?;
    path.starts_with(&root).then_some(path)
}

/// The clip's MP4 (range requests work).
#[utoipa::path(get, path = "/clips/{id}/video", tag = "clips", params(("id" = String, Path)),
    responses((status = 200, content_type = "video/mp4"), (status = 206), (status = 404)), security(("bearer" = [])))]
pub async fn video(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    serve(state, caller, id, Kind::Video, request).await
}

/// The clip's JPEG thumbnail.
#[utoipa::path(get, path = "/clips/{id}/thumbnail", tag = "clips", params(("id" = String, Path)),
    responses((status = 200, content_type = "image/jpeg"), (status = 404)), security(("bearer" = [])))]
pub async fn thumbnail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    serve(state, caller, id, Kind::Thumbnail, request).await
}

/// The clip's 9:16 variant.
#[utoipa::path(get, path = "/clips/{id}/vertical", tag = "clips", params(("id" = String, Path)),
    responses((status = 200, content_type = "video/mp4"), (status = 206), (status = 404)), security(("bearer" = [])))]
pub async fn vertical(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    serve(state, caller, id, Kind::Vertical, request).await
}
