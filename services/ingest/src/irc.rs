//! IRC lines (RFC 1459 with IRCv3 message tags, as Twitch chat speaks them): parsing what the
//! server sends and formatting what the client sends. Pure; never panics on any input.

use std::collections::HashMap;

/// One message from the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// IRCv3 tags (`@id=…;user-id=…`), values unescaped.
    pub tags: HashMap<String, String>,
    /// `nick!user@host` or a server name, without the leading `:`.
    pub prefix: Option<String>,
    /// Command or numeric reply, upper-cased (`PRIVMSG`, `PING`, `001`).
    pub command: String,
    /// Parameters; the trailing one (after ` :`) may contain spaces.
    pub params: Vec<String>,
}

impl Message {
    /// Parses one line (without the CR LF). `None` for a line with no command.
    pub fn parse(line: &str) -> Option<Message> {
        let mut rest = line.trim_end_matches(['\r', '\n']);
        let mut message = Message::default();
        if let Some(tagged) = rest.strip_prefix('@') {
            let (tags, after) = tagged.split_once(' ')?;
            for tag in tags.split(';').filter(|t| !t.is_empty()) {
                let (key, value) = tag.split_once('=').unwrap_or((tag, ""));
                message.tags.insert(key.to_owned(), unescape_tag(value));
            }
            rest = after.trim_start_matches(' ');
        }
        if let Some(prefixed) = rest.strip_prefix(':') {
            let (prefix, after) = prefixed.split_once(' ')?;
            message.prefix = Some(prefix.to_owned());
            rest = after.trim_start_matches(' ');
        }
        let (command, mut rest) = match rest.split_once(' ') {
            Some((command, after)) => (command, after),
            None => (rest, ""),
        };
        if command.is_empty() {
            return None;
        }
        message.command = command.to_ascii_uppercase();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                message.params.push(trailing.to_owned());
                break;
            }
            let (param, after) = rest.split_once(' ').unwrap_or((rest, ""));
            message.params.push(param.to_owned());
            rest = after;
        }
        Some(message)
    }

    /// The nick of the prefix (`nick` of `nick!user@host`).
    pub fn nick(&self) -> Option<&str> {
        let prefix = self.prefix.as_deref()?;
        let nick = prefix.split(['!', '@']).next()?;
        (!nick.is_empty()).then_some(nick)
    }

    /// A tag's value, if present and not empty.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Unescapes an IRCv3 tag value (`\:` → `;`, `\s` → space, `\\` → `\`, `\r`, `\n`).
fn unescape_tag(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// A line the client sends: `command params… :trailing` with CR LF. CR, LF and NUL inside the
/// arguments are replaced by spaces (they would end or corrupt the line).
pub fn line(command: &str, params: &[&str], trailing: Option<&str>) -> String {
    let clean = |s: &str| s.replace(['\r', '\n', '\0'], " ");
    let mut out = clean(command);
    for param in params {
        out.push(' ');
        out.push_str(&clean(param).replace(' ', ""));
    }
    if let Some(trailing) = trailing {
        out.push_str(" :");
        out.push_str(&clean(trailing));
    }
    out.push_str("\r\n");
    out
}

/// Escapes an IRCv3 tag value (the inverse of `unescape_tag`).
fn escape_tag(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            ';' => out.push_str("\\:"),
            ' ' => out.push_str("\\s"),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\0' => {}
            c => out.push(c),
        }
    }
    out
}

/// A reply in a channel, Twitch style: `@reply-parent-msg-id=<id> PRIVMSG #channel :text` (the tag
/// only when the server took message tags and there is a message to reply to).
pub fn privmsg(channel: &str, text: &str, reply_to: Option<&str>) -> String {
    let body = line("PRIVMSG", &[channel], Some(text));
    match reply_to {
        Some(id) if !id.is_empty() => format!("@reply-parent-msg-id={} {body}", escape_tag(id)),
        _ => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replies_carry_the_parent_tag() {
        assert_eq!(
            privmsg("#c", "@Ada hi", Some("b34c-1")),
            "@reply-parent-msg-id=b34c-1 PRIVMSG #c :@Ada hi\r\n"
        );
        assert_eq!(privmsg("#c", "hi", None), "PRIVMSG #c :hi\r\n");
        let tricky = privmsg("#c", "x", Some("a b;c\r\nQUIT"));
        let parsed = Message::parse(tricky.trim_end()).unwrap();
        assert_eq!(parsed.tag("reply-parent-msg-id"), Some("a b;c\r\nQUIT"));
        assert_eq!(parsed.command, "PRIVMSG");
        assert_eq!(tricky.matches("\r\n").count(), 1);
    }

    #[test]
    fn twitch_privmsg_with_tags() {
        let raw = "@badge-info=;display-name=Ada\\sL;id=b34ccfc7-4977-403a-8a94-33c6bac34fb8;\
                   tmi-sent-ts=1795795799197;user-id=1337 :ada!ada@ada.tmi.twitch.tv PRIVMSG #creator :!buy hoodie L\r\n";
        let m = Message::parse(raw).unwrap();
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, vec!["#creator", "!buy hoodie L"]);
        assert_eq!(m.nick(), Some("ada"));
        assert_eq!(m.tag("display-name"), Some("Ada L"));
        assert_eq!(m.tag("id"), Some("b34ccfc7-4977-403a-8a94-33c6bac34fb8"));
        assert_eq!(m.tag("user-id"), Some("1337"));
        assert_eq!(m.tag("badge-info"), None);
    }

    #[test]
    fn plain_lines() {
        let ping = Message::parse("PING :tmi.twitch.tv").unwrap();
        assert_eq!(
            (ping.command.as_str(), ping.params.as_slice()),
            ("PING", &["tmi.twitch.tv".to_owned()][..])
        );
        let welcome = Message::parse(":irc.local 001 dropline :Welcome").unwrap();
        assert_eq!(welcome.prefix.as_deref(), Some("irc.local"));
        assert_eq!(welcome.params, vec!["dropline", "Welcome"]);
        assert_eq!(Message::parse(""), None);
        assert_eq!(Message::parse("@a=b"), None);
        assert_eq!(Message::parse(":prefix-only"), None);
        let no_colon = Message::parse("privmsg #c hello").unwrap();
        assert_eq!((no_colon.command.as_str(), no_colon.params.len()), ("PRIVMSG", 2));
    }

    #[test]
    fn tag_values_unescape() {
        assert_eq!(unescape_tag(r"a\sb\:c\\d\n"), "a b;c\\d\n");
        assert_eq!(unescape_tag("trailing\\"), "trailing");
    }

    #[test]
    fn outgoing_lines_cannot_be_split() {
        assert_eq!(line("PRIVMSG", &["#c"], Some("hi\r\nQUIT")), "PRIVMSG #c :hi  QUIT\r\n");
        assert_eq!(line("JOIN", &["#a b"], None), "JOIN #ab\r\n");
    }

    proptest! {
        #[test]
        fn never_panics(raw in "\\PC*") {
            let _ = Message::parse(&raw);
        }

        #[test]
        fn trailing_text_survives(text in "[^\r\n]{0,80}") {
            let raw = format!(":n!u@h PRIVMSG #chan :{text}");
            let m = Message::parse(&raw).unwrap();
            prop_assert_eq!(m.params.get(1).map(String::as_str), Some(text.as_str()));
        }
    }
}
