//! Tokens for a console started with none configured: one per role, made on the first start,
//! kept in the console's state directory (mode 0600) and reused on every start after — so a
//! creator trying Dropline on a laptop needs no setup, and the login URLs are printed once.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::auth::Role;

/// The file the tokens are kept in, inside the state directory.
pub const TOKENS_FILE: &str = "console-tokens";

/// The console's state directory: `DROPLINE_CONSOLE_STATE`, else `$XDG_STATE_HOME/dropline`,
/// else `~/.local/state/dropline` (where `make stack-up` keeps the broker's state too).
pub fn state_dir(lookup: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if let Some(dir) = set("DROPLINE_CONSOLE_STATE") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = set("XDG_STATE_HOME") {
        return Some(PathBuf::from(dir).join("dropline"));
    }
    set("HOME").map(|home| PathBuf::from(home).join(".local/state/dropline"))
}

/// Tokens read from `dir`, or made there now: the `role:token` lines, and whether they were made
/// by this call (so the caller prints the login URLs once).
pub fn tokens(dir: &Path) -> Result<(String, bool), String> {
    let file = dir.join(TOKENS_FILE);
    match std::fs::read_to_string(&file) {
        Ok(spec) => return Ok((spec, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", file.display())),
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let spec: String = [Role::Creator, Role::Producer, Role::Editor]
        .iter()
        .map(|role| format!("{}:{}\n", role.name(), fresh_token()))
        .collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&file) {
        Ok(mut out) => {
            out.write_all(spec.as_bytes())
                .and_then(|()| out.sync_all())
                .map_err(|e| format!("{}: {e}", file.display()))?;
            Ok((spec, true))
        }
        // Another console made them first: use those.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read_to_string(&file)
            .map(|spec| (spec, false))
            .map_err(|e| format!("{}: {e}", file.display())),
        Err(e) => Err(format!("{}: {e}", file.display())),
    }
}

/// 244 random bits as 64 hex digits (two v4 UUIDs; only URL-safe characters).
fn fresh_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The `role`, `token` pairs of a spec made by [`tokens`], for printing the login URLs.
pub fn logins(spec: &str) -> Vec<(String, String)> {
    spec.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(role, token)| (role.trim().to_owned(), token.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_made_once_private_and_reused() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let state = dir.path().join("state");
        let (first, made) = tokens(&state).expect("made");
        assert!(made);
        let roles: Vec<String> = logins(&first).into_iter().map(|(role, _)| role).collect();
        assert_eq!(roles, ["creator", "producer", "editor"]);
        assert!(logins(&first)
            .iter()
            .all(|(_, t)| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(state.join(TOKENS_FILE)).expect("the file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "only the owner may read the tokens");
        }
        let (again, made) = tokens(&state).expect("read");
        assert!(!made, "the second start reuses them");
        assert_eq!(again, first);
        crate::auth::Access::parse(&again, 20).expect("they are valid tokens");
    }

    #[test]
    fn the_state_directory_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(
            state_dir(&env(&[("DROPLINE_CONSOLE_STATE", "/srv/dl"), ("HOME", "/h")])),
            Some("/srv/dl".into())
        );
        assert_eq!(state_dir(&env(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")])), Some("/x/dropline".into()));
        assert_eq!(state_dir(&env(&[("HOME", "/h")])), Some("/h/.local/state/dropline".into()));
        assert_eq!(state_dir(&env(&[])), None);
    }
}
