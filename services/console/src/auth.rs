//! Bearer tokens with roles: `creator` (drops), `producer` (live view, markers, holds), `editor`
//! (clips). A missing or unknown token is 401, a known token with the wrong role 403; writes are
//! rate-limited per token. Tokens are kept as SHA-256 digests and looked up in constant time (every
//! known token compared, byte by byte, whatever matches).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Creator,
    Producer,
    Editor,
}

impl Role {
    fn parse(text: &str) -> Option<Role> {
        match text.trim().to_ascii_lowercase().as_str() {
            "creator" => Some(Role::Creator),
            "producer" => Some(Role::Producer),
            "editor" => Some(Role::Editor),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Creator => "creator",
            Role::Producer => "producer",
            Role::Editor => "editor",
        }
    }
}

/// Known tokens and the write rate limit.
#[derive(Clone)]
pub struct Access {
    /// SHA-256 of each token, and its role.
    tokens: Arc<Vec<([u8; 32], Role)>>,
    writes: Arc<DefaultKeyedRateLimiter<String>>,
    per_second: u32,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("tokens", &self.tokens.len())
            .field("per_second", &self.per_second)
            .finish()
    }
}

impl Access {
    /// Tokens from `role:token` entries separated by commas or new lines (`#` at the start of a
    /// line or after a space starts a comment; inside a token it is part of the token); at most
    /// `per_second` writes per token per second (bursts of twice that). A token is at least 16
    /// visible ASCII characters, none of `,` `;` `"` `\` (they would end an entry or a cookie).
    pub fn parse(spec: &str, per_second: u32) -> Result<Access, String> {
        let mut tokens: HashMap<String, Role> = HashMap::new();
        let entries = spec.lines().map(strip_comment).flat_map(|line| line.split(',')).map(str::trim);
        for entry in entries {
            if entry.is_empty() {
                continue;
            }
            let (role, token) = entry
                .split_once(':')
                .ok_or_else(|| format!("token entry {:?} is not role:token", mask(entry)))?;
            let role = Role::parse(role)
                .ok_or_else(|| format!("unknown role {role:?} (creator, producer or editor)"))?;
            let token = token.trim();
            if token.len() < 16 {
                return Err(format!(
                    "the {} token {} is shorter than 16 characters",
                    role.name(),
                    mask(token)
                ));
            }
            if let Some(c) = token.chars().find(|c| !c.is_ascii_graphic() || matches!(c, ';' | '"' | '\\')) {
                return Err(format!(
                    "the {} token {} contains {c:?}; use visible ASCII without ; \" \\ or ,",
                    role.name(),
                    mask(token)
                ));
            }
            tokens.insert(token.to_owned(), role);
        }
        if tokens.is_empty() {
            return Err("no tokens configured".into());
        }
        let tokens: Vec<([u8; 32], Role)> = tokens.into_iter().map(|(t, role)| (digest(&t), role)).collect();
        let rate = NonZeroU32::new(per_second).ok_or("the write rate must be at least 1 per second")?;
        let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
        let writes = RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst));
        Ok(Access { tokens: Arc::new(tokens), writes: Arc::new(writes), per_second })
    }

    /// The role of `token`: its digest compared with every known one in constant time, so how long
    /// this takes says nothing about how much of a guess was right.
    fn role(&self, token: &str) -> Option<Role> {
        let wanted = digest(token);
        let mut found = None;
        for (known, role) in self.tokens.iter() {
            if bool::from(known.ct_eq(&wanted)) {
                found = Some(*role);
            }
        }
        found
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A line without its comment: `#` at the start or after whitespace starts one.
fn strip_comment(line: &str) -> &str {
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        if c == '#' && previous.is_whitespace() {
            return &line[..i];
        }
        previous = c;
    }
    line
}

/// The value of `name` in a URL query, percent-decoded (`+` is a space, as forms encode it; a
/// token with `+` arrives as `%2B`).
pub fn query_value(query: &str, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// The first 4 characters of a secret, for error messages.
fn mask(secret: &str) -> String {
    format!("{}…", secret.chars().take(4).collect::<String>())
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    token: String,
}

impl Caller {
    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let allowed: Vec<&str> = roles.iter().map(|r| r.name()).collect();
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("role {} may not {what} (needs {})", self.role.name(), allowed.join(" or ")),
        ))
    }

    /// `require`, then one write from this token's budget (429 when it is spent).
    pub fn write(&self, access: &Access, roles: &[Role], what: &str) -> Result<(), ApiError> {
        self.require(roles, what)?;
        access.writes.check_key(&self.token).map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("rate limit: at most {} writes per second per token", access.per_second),
            )
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, message);
        let from_header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("").trim().to_owned())
            .map(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_owned()).ok_or(v));
        // Browsers cannot set headers on EventSource and <video>: those pass ?access_token=.
        let from_query = parts.uri.query().and_then(|q| query_value(q, "access_token"));
        let token = match (from_header, from_query.or_else(|| session_cookie(&parts.headers))) {
            (Some(Ok(token)), _) => token,
            (Some(Err(_)), _) => return Err(unauthorized("Authorization must be `Bearer <token>`")),
            (None, Some(token)) => token,
            (None, None) => return Err(unauthorized("missing bearer token (Authorization: Bearer <token>)")),
        };
        let role = state.access.role(&token).ok_or_else(|| unauthorized("unknown token"))?;
        Ok(Caller { role, token })
    }
}

/// The cookie a browser signs in with: pages opened with `?token=` set it (HttpOnly,
/// SameSite=Strict) and drop the token from the address bar; same-origin calls then carry it.
pub const SESSION_COOKIE: &str = "dropline_session";

/// The session cookie's token, if the request has one.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('=').map(str::to_owned))
        .filter(|t| !t.is_empty())
}

/// A page opened with `?token=<a known token>`: the same page without the token, and the cookie
/// that keeps the browser signed in (`Secure` when the console's public URL is https). Any other
/// request: `None` (the page is served as it is).
pub fn sign_in(access: &Access, path: &str, query: Option<&str>, secure: bool) -> Option<(String, String)> {
    let query = query?;
    let token = query_value(query, "token")?;
    access.role(&token)?;
    let rest: Vec<&str> =
        query.split('&').filter(|pair| !pair.starts_with("token=") && !pair.is_empty()).collect();
    let location = if rest.is_empty() { path.to_owned() } else { format!("{path}?{}", rest.join("&")) };
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000{}",
        if secure { "; Secure" } else { "" }
    );
    Some((location, cookie))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_with_roles_and_refuse_bad_entries() {
        let access = Access::parse(
            "creator:cccccccccccccccc1, producer:pppppppppppppppp1\neditor:eeeeeeeeeeeeeeee1 # gallery",
            5,
        )
        .unwrap();
        assert_eq!(access.role("cccccccccccccccc1"), Some(Role::Creator));
        assert_eq!(access.role("eeeeeeeeeeeeeeee1"), Some(Role::Editor));
        assert_eq!(access.role("nope"), None);
        assert!(Access::parse("", 5).unwrap_err().contains("no tokens"));
        assert!(Access::parse("admin:aaaaaaaaaaaaaaaaaa", 5).unwrap_err().contains("unknown role"));
        assert!(Access::parse("creator:short", 5).unwrap_err().contains("shorter"));
        assert!(Access::parse("justatoken", 5).unwrap_err().contains("role:token"));
        assert!(Access::parse("creator:cccccccccccccccc1", 0).is_err());
    }

    #[test]
    fn a_hash_or_a_plus_inside_a_token_is_part_of_it() {
        let access =
            Access::parse("creator:abc#def+ghi/jkl=mno # the creator's\n# a comment line", 5).unwrap();
        assert_eq!(access.role("abc#def+ghi/jkl=mno"), Some(Role::Creator));
        assert_eq!(access.role("abc"), None, "not truncated at the #");
        assert!(Access::parse("creator:abcdefghijklmnop;q", 5).unwrap_err().contains("contains ';'"));
        // As a browser sends it in a URL: + / = # percent-encoded.
        assert_eq!(
            query_value("drop=x&access_token=abc%23def%2Bghi%2Fjkl%3Dmno", "access_token").as_deref(),
            Some("abc#def+ghi/jkl=mno")
        );
        let (location, _) =
            sign_in(&access, "/studio", Some("token=abc%23def%2Bghi%2Fjkl%3Dmno&drop=x"), false)
                .expect("signed in");
        assert_eq!(location, "/studio?drop=x");
    }

    #[test]
    fn a_page_opened_with_a_token_signs_in_and_drops_it_from_the_address() {
        let access = Access::parse("producer:pppppppppppppppp1", 5).unwrap();
        let (location, cookie) =
            sign_in(&access, "/", Some("token=pppppppppppppppp1&drop=fall"), false).expect("signed in");
        assert_eq!(location, "/?drop=fall");
        assert!(cookie.starts_with("dropline_session=pppppppppppppppp1; Path=/; HttpOnly; SameSite=Strict"));
        assert!(!cookie.contains("Secure"));
        assert!(sign_in(&access, "/gallery", Some("token=pppppppppppppppp1"), true)
            .unwrap()
            .1
            .ends_with("; Secure"));
        assert_eq!(
            sign_in(&access, "/", Some("token=unknown-token-123456"), false),
            None,
            "an unknown token"
        );
        assert_eq!(sign_in(&access, "/", Some("drop=fall"), false), None);
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header::COOKIE, "theme=dark; dropline_session=pppppppppppppppp1".parse().unwrap());
        assert_eq!(session_cookie(&headers).as_deref(), Some("pppppppppppppppp1"));
    }

    #[test]
    fn writes_are_limited_per_token() {
        let access = Access::parse("creator:cccccccccccccccc1,creator:dddddddddddddddd1", 1).unwrap();
        let a = Caller { role: Role::Creator, token: "cccccccccccccccc1".into() };
        let b = Caller { role: Role::Creator, token: "dddddddddddddddd1".into() };
        assert!(a.write(&access, &[Role::Creator], "x").is_ok());
        assert!(a.write(&access, &[Role::Creator], "x").is_ok()); // burst of 2
        let refused = a.write(&access, &[Role::Creator], "x").unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(b.write(&access, &[Role::Creator], "x").is_ok());
        let forbidden = b.require(&[Role::Producer], "confirm holds").unwrap_err();
        assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
        assert!(forbidden.message.contains("needs producer"));
    }
}
