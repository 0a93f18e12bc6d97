//! Secrets in settings: a value that is used but never printed — `Debug` shows its length only, so
//! a logged settings struct or a panic message cannot leak a webhook secret, an IRC password or a
//! broker password. Also the masking of secret Kafka properties in settings errors.

use std::fmt;

/// A secret value. `expose` is the only way to the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (signing, sending it to the server).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text (lossy for bytes that are not UTF-8).
    pub fn expose_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes, hidden)", self.0.len())
    }
}

/// Whether a librdkafka property holds a secret (`sasl.password`, `ssl.key.password`,
/// `sasl.oauthbearer.client.secret`, `ssl.keystore.password`, …).
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "sasl.jaas.config", "ssl.key.pem", "ssl_key"].iter().any(|s| key.contains(s))
}

/// `key=value;…` with the values of secret properties replaced by `***`, for messages and logs.
pub fn redact_properties(spec: &str) -> String {
    spec.split(';')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_property(k.trim()) => format!("{}=***", k.trim()),
            _ => pair.trim().to_owned(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Librdkafka properties with their secret values hidden from `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(pub Vec<(String, String)>);

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<(&str, &str)> = self
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret_property(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_list().entries(shown).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_or_messages() {
        let secret = Secret::new("whsec_very_secret");
        assert_eq!(format!("{secret:?}"), "Secret(17 bytes, hidden)");
        assert_eq!(secret.expose(), b"whsec_very_secret");
        let props = KafkaProperties(vec![
            ("security.protocol".into(), "SASL_SSL".into()),
            ("sasl.password".into(), "hunter2".into()),
        ]);
        let shown = format!("{props:?}");
        assert!(shown.contains("SASL_SSL") && !shown.contains("hunter2"), "{shown}");
        assert_eq!(
            redact_properties("security.protocol=SASL_SSL; sasl.password=hunter2;ssl.key.password=x"),
            "security.protocol=SASL_SSL;sasl.password=***;ssl.key.password=***"
        );
    }
}
