//! Settings every Dropline binary reads from `DROPLINE_*` environment variables, with the brief's defaults.
//!
//! Raw strings are parsed here, once, into typed values; a bad value is an error that names the
//! variable, the value and what was expected.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::topics::{TopicKind, Topics};

/// A setting that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}={value:?}: {expected}")]
pub struct SettingsError {
    /// The environment variable at fault.
    pub var: String,
    /// The value it held.
    pub value: String,
    /// What a valid value looks like.
    pub expected: String,
}

/// A service's own `DROPLINE_<SERVICE>_*` variables, read through a lookup (the process
/// environment, or a map in tests) and parsed the one way every service parses them: surrounding
/// whitespace ignored, empty means unset, errors name the variable.
pub struct Vars<F> {
    lookup: F,
}

impl<F> std::fmt::Debug for Vars<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vars")
    }
}

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    pub fn new(lookup: F) -> Self {
        Self { lookup }
    }

    /// The trimmed value; `None` when unset or empty.
    pub fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// A whole number within `range`.
    pub fn number<T>(&self, var: &str, range: std::ops::RangeInclusive<T>) -> Result<Option<T>, SettingsError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        let Some(v) = self.get(var) else { return Ok(None) };
        match v.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(invalid(var, &v, &format!("a whole number from {} to {}", range.start(), range.end()))),
        }
    }

    /// A positive duration such as `100ms` or `5m`.
    pub fn duration(&self, var: &str) -> Result<Option<Duration>, SettingsError> {
        let Some(v) = self.get(var) else { return Ok(None) };
        humantime::parse_duration(&v)
            .ok()
            .filter(|d| !d.is_zero())
            .map(Some)
            .ok_or_else(|| invalid(var, &v, "a positive duration such as `100ms` or `5m`"))
    }

    /// `on`/`yes`/`1` or `off`/`no`/`0`.
    pub fn switch(&self, var: &str) -> Result<Option<bool>, SettingsError> {
        let Some(v) = self.get(var) else { return Ok(None) };
        match v.as_str() {
            "on" | "yes" | "1" => Ok(Some(true)),
            "off" | "no" | "0" => Ok(Some(false)),
            _ => Err(invalid(var, &v, "`on` or `off`")),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Everything a Dropline process needs to know about its surroundings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Kafka bootstrap servers (`DROPLINE_KAFKA`, default `127.0.0.1:9092`).
    pub kafka: String,
    /// Extra librdkafka properties (`DROPLINE_KAFKA_CONFIG`, `key=value;key=value`), applied last.
    pub kafka_config: crate::secret::KafkaProperties,
    /// Redis URL (`DROPLINE_REDIS`, default `redis://127.0.0.1:6379`).
    pub redis: String,
    /// Console listen address (`DROPLINE_HTTP`, default `127.0.0.1:8080`).
    pub http: SocketAddr,
    /// Admin listen address for `/metrics` and `/healthz` (`DROPLINE_ADMIN`); each service has its own default.
    pub admin: Option<SocketAddr>,
    /// Directory of stream recordings (`DROPLINE_RECORDINGS`, default `data/recordings`).
    pub recordings: PathBuf,
    /// Directory clips are written to (`DROPLINE_CLIPS`, default `data/clips`).
    pub clips: PathBuf,
    /// Topic names (`DROPLINE_TOPIC_PREFIX`, `DROPLINE_TOPIC_<KIND>`).
    pub topics: Topics,
    /// The deployment's Redis keyspace (`DROPLINE_NAMESPACE`, default the topic prefix without its
    /// trailing separator, or `default`): every key starts with `dl:<namespace>:`.
    pub keyspace: crate::keys::Keyspace,
    /// Partitions of topics we create (`DROPLINE_PARTITIONS`, default 4).
    pub partitions: i32,
    /// Log format (`DROPLINE_LOG_FORMAT`: `human` or `json`).
    pub log_format: LogFormat,
    /// Log filter (`DROPLINE_LOG`, else `RUST_LOG`, default `info`), in `tracing` EnvFilter syntax.
    pub log_filter: String,
    /// How long a stopping service may take to drain (`DROPLINE_SHUTDOWN_GRACE`, default `10s`).
    pub shutdown_grace: Duration,
    /// Where buyers reach the console from outside (`DROPLINE_PUBLIC_URL`, `http(s)://host[:port]`
    /// without a trailing slash; default `http://` + `DROPLINE_HTTP`): claim links start with it.
    pub public_url: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            kafka: "127.0.0.1:9092".into(),
            kafka_config: crate::secret::KafkaProperties::default(),
            redis: "redis://127.0.0.1:6379".into(),
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: None,
            recordings: PathBuf::from("data/recordings"),
            clips: PathBuf::from("data/clips"),
            topics: Topics::default(),
            keyspace: crate::keys::Keyspace::default(),
            partitions: 4,
            log_format: LogFormat::Human,
            log_filter: "info".into(),
            shutdown_grace: Duration::from_secs(10),
            public_url: "http://127.0.0.1:8080".into(),
        }
    }
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|var| match std::env::var(var) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(raw)) => Err(SettingsError {
                var: var.to_owned(),
                value: raw.to_string_lossy().into_owned(),
                expected: "valid UTF-8".into(),
            }),
        })
    }

    /// Reads settings through `lookup` (a variable name → its value, if set), so tests need no
    /// process environment. Empty values count as unset.
    pub fn from_lookup<F>(lookup: F) -> Result<Self, SettingsError>
    where
        F: Fn(&str) -> Result<Option<String>, SettingsError>,
    {
        let get = |var: &str| -> Result<Option<String>, SettingsError> {
            Ok(lookup(var)?.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()))
        };
        let mut s = Self::default();

        if let Some(v) = get("DROPLINE_KAFKA")? {
            s.kafka = parse_bootstrap("DROPLINE_KAFKA", &v)?;
        }
        if let Some(v) = get("DROPLINE_KAFKA_CONFIG")? {
            s.kafka_config = crate::secret::KafkaProperties(parse_pairs("DROPLINE_KAFKA_CONFIG", &v)?);
        }
        if let Some(v) = get("DROPLINE_REDIS")? {
            s.redis = parse_redis_url("DROPLINE_REDIS", &v)?;
        }
        if let Some(v) = get("DROPLINE_HTTP")? {
            s.http = parse_addr("DROPLINE_HTTP", &v)?;
            s.public_url = format!("http://{}", s.http);
        }
        if let Some(v) = get("DROPLINE_PUBLIC_URL")? {
            s.public_url = parse_public_url("DROPLINE_PUBLIC_URL", &v)?;
        }
        if let Some(v) = get("DROPLINE_ADMIN")? {
            s.admin = Some(parse_addr("DROPLINE_ADMIN", &v)?);
        }
        if let Some(v) = get("DROPLINE_RECORDINGS")? {
            s.recordings = PathBuf::from(v);
        }
        if let Some(v) = get("DROPLINE_CLIPS")? {
            s.clips = PathBuf::from(v);
        }
        if let Some(v) = get("DROPLINE_PARTITIONS")? {
            s.partitions = match v.parse::<i32>() {
                Ok(n) if (1..=1024).contains(&n) => n,
                _ => return Err(invalid("DROPLINE_PARTITIONS", &v, "a whole number from 1 to 1024")),
            };
        }
        if let Some(v) = get("DROPLINE_LOG_FORMAT")? {
            s.log_format = match v.to_ascii_lowercase().as_str() {
                "human" | "text" | "pretty" => LogFormat::Human,
                "json" => LogFormat::Json,
                _ => return Err(invalid("DROPLINE_LOG_FORMAT", &v, "`human` or `json`")),
            };
        }
        if let Some(v) = get("DROPLINE_LOG")?.or(get("RUST_LOG")?) {
            tracing_subscriber::EnvFilter::try_new(&v).map_err(|e| {
                invalid("DROPLINE_LOG", &v, &format!("a tracing filter such as `info,dropline=debug` ({e})"))
            })?;
            s.log_filter = v;
        }
        if let Some(v) = get("DROPLINE_SHUTDOWN_GRACE")? {
            s.shutdown_grace = parse_duration("DROPLINE_SHUTDOWN_GRACE", &v)?;
        }

        let prefix = get("DROPLINE_TOPIC_PREFIX")?.unwrap_or_default();
        if !prefix.is_empty() {
            check_topic_name("DROPLINE_TOPIC_PREFIX", &prefix)?;
        }
        let mut topics = Topics::with_prefix(&prefix);
        for kind in TopicKind::ALL {
            let var = kind.env_var();
            if let Some(v) = get(&var)? {
                check_topic_name(&var, &v)?;
                topics.set(kind, v);
            }
        }
        s.topics = topics;
        s.keyspace = match get("DROPLINE_NAMESPACE")? {
            Some(v) => crate::keys::Keyspace::new(&v),
            None => crate::keys::Keyspace::for_topic_prefix(&prefix),
        }
        .map_err(|e| invalid("DROPLINE_NAMESPACE", &e.0, &e.to_string()))?;
        Ok(s)
    }

    /// Topics named with `prefix` and the keyspace that goes with them, as `DROPLINE_TOPIC_PREFIX`
    /// alone would set them (tests and tools give each run a deployment of its own this way).
    pub fn set_topic_prefix(&mut self, prefix: &str) -> Result<(), crate::keys::BadNamespace> {
        self.keyspace = crate::keys::Keyspace::for_topic_prefix(prefix)?;
        self.topics = Topics::with_prefix(prefix);
        Ok(())
    }
}

/// The error for `var` holding `value`, saying what was `expected`.
pub fn invalid(var: &str, value: &str, expected: &str) -> SettingsError {
    SettingsError { var: var.into(), value: value.into(), expected: expected.into() }
}

fn parse_public_url(var: &str, v: &str) -> Result<String, SettingsError> {
    let url = v.trim_end_matches('/');
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host)
            if !host.is_empty()
                && !host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#') =>
        {
            Ok(url.to_owned())
        }
        _ => Err(invalid(var, v, "an http(s) URL such as `https://drop.example.com`")),
    }
}

fn parse_bootstrap(var: &str, v: &str) -> Result<String, SettingsError> {
    let expected = "comma-separated host:port pairs, e.g. `127.0.0.1:9092`";
    for server in v.split(',') {
        let server = server.trim();
        let server = server.strip_prefix("tcp://").unwrap_or(server);
        let Some((host, port)) = server.rsplit_once(':') else {
            return Err(invalid(var, v, expected));
        };
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(invalid(var, v, expected));
        }
    }
    Ok(v.to_owned())
}

fn parse_pairs(var: &str, v: &str) -> Result<Vec<(String, String)>, SettingsError> {
    v.split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, val)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), val.trim().to_owned())),
            // Passwords in the value stay out of the message.
            _ => {
                Err(invalid(var, &crate::secret::redact_properties(v), "`key=value` pairs separated by `;`"))
            }
        })
        .collect()
}

fn parse_redis_url(var: &str, v: &str) -> Result<String, SettingsError> {
    if let Some(nodes) = crate::redis::cluster_nodes(v) {
        if nodes.is_empty() {
            return Err(invalid(
                var,
                v,
                "redis-cluster:// (or rediss-cluster://) followed by host:port seed nodes, comma-separated",
            ));
        }
        for node in &nodes {
            redis::Client::open(node.as_str())
                .map_err(|e| invalid(var, v, &format!("valid seed nodes ({node}: {e})")))?;
        }
        return Ok(v.to_owned());
    }
    let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"].iter().any(|s| v.starts_with(s));
    if !scheme_ok {
        return Err(invalid(
            var,
            v,
            "a redis:// (or rediss://, unix://, redis-cluster://, rediss-cluster://) URL",
        ));
    }
    redis::Client::open(v).map_err(|e| invalid(var, v, &format!("a valid Redis URL ({e})")))?;
    Ok(v.to_owned())
}

fn parse_addr(var: &str, v: &str) -> Result<SocketAddr, SettingsError> {
    v.parse().map_err(|_| invalid(var, v, "an IP address and port, e.g. `127.0.0.1:8080`"))
}

fn parse_duration(var: &str, v: &str) -> Result<Duration, SettingsError> {
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v).map_err(|_| invalid(var, v, "a duration such as `10s`, `500ms` or `1m`"))
}

/// Kafka topic names: 1–249 characters of `[a-zA-Z0-9._-]`.
fn check_topic_name(var: &str, v: &str) -> Result<(), SettingsError> {
    let ok = v.len() <= 249 && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(var, v, "a Kafka topic name: up to 249 of [a-zA-Z0-9._-]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_variables_parse_one_way() {
        let vars = Vars::new(|var: &str| match var {
            "N" => Some(" 12 ".into()),
            "BIG" => Some("5000".into()),
            "D" => Some("250ms".into()),
            "ZERO" => Some("0s".into()),
            "ON" => Some("yes".into()),
            "EMPTY" => Some("  ".into()),
            _ => None,
        });
        assert_eq!(vars.number("N", 1..=64u32), Ok(Some(12)));
        assert_eq!(
            vars.number("BIG", 1..=64u32).map_err(|e| e.expected),
            Err("a whole number from 1 to 64".into())
        );
        assert_eq!(vars.duration("D"), Ok(Some(Duration::from_millis(250))));
        assert_eq!(vars.duration("ZERO").map_err(|e| e.var), Err("ZERO".into()));
        assert_eq!(vars.switch("ON"), Ok(Some(true)));
        assert_eq!(vars.get("EMPTY"), None);
        assert_eq!(vars.number("UNSET", 1..=2u32), Ok(None));
    }
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::from_lookup(|k| Ok(map.get(k).cloned()))
    }

    #[test]
    fn defaults_are_the_briefs() {
        let s = parse(&[]).expect("defaults parse");
        assert_eq!(s.kafka, "127.0.0.1:9092");
        assert_eq!(s.redis, "redis://127.0.0.1:6379");
        assert_eq!(s.http, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(s.partitions, 4);
        assert_eq!(s.log_format, LogFormat::Human);
        assert_eq!(s.shutdown_grace, Duration::from_secs(10));
        assert_eq!(s.topics.name(TopicKind::ChatOrders), "chat-orders");
        assert_eq!(s.topics.name(TopicKind::DeadLetters), "dead-letters");
    }

    #[test]
    fn every_variable_is_read() {
        let s = parse(&[
            ("DROPLINE_KAFKA", "10.0.0.1:9092,10.0.0.2:9093"),
            ("DROPLINE_KAFKA_CONFIG", "security.protocol=SASL_SSL; sasl.mechanism=PLAIN"),
            ("DROPLINE_REDIS", "redis://10.0.0.3:6380/2"),
            ("DROPLINE_HTTP", "0.0.0.0:80"),
            ("DROPLINE_ADMIN", "127.0.0.1:9101"),
            ("DROPLINE_RECORDINGS", "/srv/rec"),
            ("DROPLINE_CLIPS", "/srv/clips"),
            ("DROPLINE_PARTITIONS", "12"),
            ("DROPLINE_LOG_FORMAT", "JSON"),
            ("DROPLINE_LOG", "warn,dropline=debug"),
            ("DROPLINE_SHUTDOWN_GRACE", "1500ms"),
            ("DROPLINE_TOPIC_PREFIX", "staging."),
            ("DROPLINE_TOPIC_RESERVATIONS", "outcomes"),
            ("DROPLINE_PUBLIC_URL", "https://drop.example.com/"),
        ])
        .expect("valid settings parse");
        assert_eq!(s.public_url, "https://drop.example.com");
        assert_eq!(s.kafka, "10.0.0.1:9092,10.0.0.2:9093");
        assert_eq!(
            s.kafka_config.0,
            vec![
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
                ("sasl.mechanism".to_owned(), "PLAIN".to_owned())
            ]
        );
        assert_eq!(s.redis, "redis://10.0.0.3:6380/2");
        assert_eq!(s.http.port(), 80);
        assert_eq!(s.admin, Some("127.0.0.1:9101".parse().expect("addr")));
        assert_eq!(s.recordings, PathBuf::from("/srv/rec"));
        assert_eq!(s.clips, PathBuf::from("/srv/clips"));
        assert_eq!(s.partitions, 12);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.log_filter, "warn,dropline=debug");
        assert_eq!(s.shutdown_grace, Duration::from_millis(1500));
        assert_eq!(s.topics.name(TopicKind::ChatOrders), "staging.chat-orders");
        assert_eq!(s.topics.name(TopicKind::Reservations), "outcomes");
        assert_eq!(s.keyspace.namespace(), "staging", "the prefix names the keyspace too");
        let s = parse(&[("DROPLINE_TOPIC_PREFIX", "staging."), ("DROPLINE_NAMESPACE", "eu-prod")])
            .expect("parses");
        assert_eq!(s.keyspace.namespace(), "eu-prod");
        assert_eq!(parse(&[]).expect("defaults").keyspace.namespace(), "default");
    }

    #[test]
    fn a_broken_kafka_config_is_reported_without_its_passwords() {
        let e = parse(&[("DROPLINE_KAFKA_CONFIG", "sasl.password=hunter2; broken")]).expect_err("not pairs");
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("DROPLINE_KAFKA_CONFIG") && !shown.contains("hunter2"), "{shown}");
        let s = parse(&[("DROPLINE_KAFKA_CONFIG", "sasl.password=hunter2")]).expect("parses");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn plain_seconds_and_blank_values() {
        let s = parse(&[("DROPLINE_SHUTDOWN_GRACE", "3"), ("DROPLINE_KAFKA", "  ")]).expect("parses");
        assert_eq!(s.shutdown_grace, Duration::from_secs(3));
        assert_eq!(s.kafka, "127.0.0.1:9092", "a blank value falls back to the default");
        let s = parse(&[("DROPLINE_HTTP", "127.0.0.1:9000")]).expect("parses");
        assert_eq!(s.public_url, "http://127.0.0.1:9000", "the console's own address by default");
    }

    #[test]
    fn bad_values_name_the_variable_and_what_was_expected() {
        let cases = [
            ("DROPLINE_KAFKA", "localhost"),
            ("DROPLINE_KAFKA", "host:notaport"),
            ("DROPLINE_KAFKA", ":9092"),
            ("DROPLINE_KAFKA_CONFIG", "noequals"),
            ("DROPLINE_REDIS", "http://127.0.0.1:6379"),
            ("DROPLINE_HTTP", "8080"),
            ("DROPLINE_ADMIN", "localhost:x"),
            ("DROPLINE_PARTITIONS", "0"),
            ("DROPLINE_PARTITIONS", "four"),
            ("DROPLINE_LOG_FORMAT", "xml"),
            ("DROPLINE_LOG", "info,[[["),
            ("DROPLINE_SHUTDOWN_GRACE", "soon"),
            ("DROPLINE_TOPIC_PREFIX", "bad prefix"),
            ("DROPLINE_TOPIC_CHAT_ORDERS", "chat/orders"),
            ("DROPLINE_NAMESPACE", "a{b}"),
            ("DROPLINE_PUBLIC_URL", "drop.example.com"),
            ("DROPLINE_PUBLIC_URL", "https://a b"),
        ];
        for (var, value) in cases {
            let err = parse(&[(var, value)]).expect_err(&format!("{var}={value} must be refused"));
            assert_eq!(err.var, var);
            assert_eq!(err.value, value);
            let message = err.to_string();
            assert!(message.starts_with(&format!("{var}=")), "{message}");
            assert!(!err.expected.is_empty());
        }
    }

    #[test]
    fn lookup_errors_propagate() {
        let err = Settings::from_lookup(|k| {
            if k == "DROPLINE_REDIS" {
                Err(invalid(k, "\u{fffd}", "valid UTF-8"))
            } else {
                Ok(None)
            }
        })
        .expect_err("non-UTF-8 is refused");
        assert_eq!(err.var, "DROPLINE_REDIS");
    }
}
