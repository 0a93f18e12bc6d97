//! Clip retention: files under the clips directory older than the configured age
//! (`DROPLINE_CLIPPER_RETENTION`) are deleted — clips, thumbnails, 9:16 variants, and partial
//! files a crash left — and drop directories left empty go too. The gallery then says a clip's
//! file is gone (404) instead of serving it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What one sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Files deleted.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Deletes the files under `dir` last modified more than `max_age` before `now`, then the
/// directories below `dir` left empty. Files that cannot be read or deleted are skipped (and
/// logged); `dir` itself stays.
pub fn sweep(dir: &Path, max_age: Duration, now: SystemTime) -> Swept {
    let mut swept = Swept::default();
    let Some(cutoff) = now.checked_sub(max_age) else { return swept };
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(path.clone());
                pending.push(path);
            } else if meta.is_file() && meta.modified().is_ok_and(|m| m < cutoff) {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        swept.files += 1;
                        swept.bytes += meta.len();
                    }
                    Err(e) => warn!(path = %path.display(), error = %e, "cannot delete an expired clip file"),
                }
            }
        }
    }
    // Deepest first; a directory that still holds something is not removed.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
    swept
}

/// Sweeps `dir` every `every` until `shutdown` (blocking file work off the async threads).
pub async fn run(dir: PathBuf, max_age: Duration, every: Duration, shutdown: CancellationToken) {
    loop {
        let at = dir.clone();
        match tokio::task::spawn_blocking(move || sweep(&at, max_age, SystemTime::now())).await {
            Ok(swept) if swept.files > 0 => {
                info!(files = swept.files, bytes = swept.bytes, max_age = ?max_age, "expired clip files deleted");
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "clip retention sweep failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &Path, bytes: usize, age: Duration) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![0u8; bytes]).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn old_clip_files_go_and_new_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(86_400);
        file(&dir.path().join("old-drop/open.mp4"), 100, day * 40);
        file(&dir.path().join("old-drop/open.jpg"), 10, day * 40);
        file(&dir.path().join("mixed/a.mp4"), 7, day * 31);
        file(&dir.path().join("mixed/b.mp4"), 5, day * 2);
        file(&dir.path().join("new/c.vertical.mp4"), 3, Duration::ZERO);

        let swept = sweep(dir.path(), day * 30, SystemTime::now());
        assert_eq!(swept, Swept { files: 3, bytes: 117 });
        assert!(!dir.path().join("old-drop").exists(), "an emptied drop directory goes too");
        assert!(!dir.path().join("mixed/a.mp4").exists());
        assert!(dir.path().join("mixed/b.mp4").exists());
        assert!(dir.path().join("new/c.vertical.mp4").exists());
        assert!(dir.path().exists(), "the clips directory itself stays");
        assert_eq!(
            sweep(dir.path(), day * 30, SystemTime::now()),
            Swept::default(),
            "a second sweep finds nothing"
        );
    }
}
