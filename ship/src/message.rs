//! Which protobuf message an endpoint is sent: the `protobuf_message`
//! setting (`v1`, `v2` or `auto`) and, for `auto`, what the endpoint has
//! turned out to accept.
//!
//! Remote-Write 2.0 (`io.prometheus.write.v2.Request`) interns every
//! string once per request and carries each family's type, help and unit;
//! 1.0 (`prometheus.WriteRequest`) repeats every label of every series.
//! `auto` starts with 2.0 and falls back to 1.0, for the rest of the
//! process's life, once the endpoint shows it does not take 2.0: a 415, or
//! a 2xx without the `X-Prometheus-Remote-Write-Samples-Written` header
//! the 2.0 specification makes mandatory (a 1.x receiver such as
//! Prometheus 2.42 ignores `Content-Type`, finds no 1.0 fields in a 2.0
//! body and answers 204 having stored nothing), or, until the endpoint has
//! confirmed one 2.0 request, any other refusal (4xx but 429) of a 2.0
//! request: a 1.x receiver may refuse the body it cannot read with a 400,
//! and under the default setting that must not drop every batch. The
//! batch is then sent again as 1.0, so one that was refused for its own
//! sake is refused again and dropped, as it would have been. A restart
//! tries 2.0 again, so an endpoint upgraded meanwhile is used at its best.
//!
//! It owns no I/O: the worker reports what an answer showed, the
//! collection loop asks which message to encode.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use dcmon_protocol::remote_write::{PROTO_V1, PROTO_V2, Version};

use super::endpoint::Attempt;

/// The `protobuf_message` setting of one endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProtobufMessage {
    /// Always Remote-Write 1.0.
    V1,
    /// Always Remote-Write 2.0.
    V2,
    /// 2.0 until the endpoint shows it takes only 1.0. The default: every
    /// receiver gets the leaner message it accepts, with no setting to get
    /// wrong.
    #[default]
    Auto,
}

impl ProtobufMessage {
    /// The accepted spellings, for error messages and help.
    pub const CHOICES: &'static str =
        "v1 (prometheus.WriteRequest), v2 (io.prometheus.write.v2.Request) or auto";

    /// The setting's short name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtobufMessage::V1 => "v1",
            ProtobufMessage::V2 => "v2",
            ProtobufMessage::Auto => "auto",
        }
    }
}

impl fmt::Display for ProtobufMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `protobuf_message` value that is none of the accepted ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protobuf message {0:?}: expected {choices}", choices = ProtobufMessage::CHOICES)]
pub struct UnknownProtobufMessage(pub String);

impl FromStr for ProtobufMessage {
    type Err = UnknownProtobufMessage;

    /// `v1`, `v2`, `auto`, or the message names Prometheus's own
    /// `protobuf_message` setting takes.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input {
            "v1" | PROTO_V1 => Ok(ProtobufMessage::V1),
            "v2" | PROTO_V2 => Ok(ProtobufMessage::V2),
            "auto" => Ok(ProtobufMessage::Auto),
            _ => Err(UnknownProtobufMessage(input.to_owned())),
        }
    }
}

impl<'de> serde::Deserialize<'de> for ProtobufMessage {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The message one endpoint is sent now; shared by its worker (which
/// learns from the answers), the collection loop (which encodes for it)
/// and the metrics (which show it).
#[derive(Debug)]
pub struct Negotiation {
    setting: ProtobufMessage,
    /// Set once an `auto` endpoint has shown it takes only 1.0.
    fell_back: AtomicBool,
    /// Set once the endpoint has acknowledged a 2.0 request.
    confirmed: AtomicBool,
}

impl Negotiation {
    /// Nothing learnt yet.
    pub fn new(setting: ProtobufMessage) -> Self {
        Self {
            setting,
            fell_back: AtomicBool::new(false),
            confirmed: AtomicBool::new(false),
        }
    }

    /// The configured setting.
    pub fn setting(&self) -> ProtobufMessage {
        self.setting
    }

    /// The message to send now.
    pub fn current(&self) -> Version {
        match self.setting {
            ProtobufMessage::V1 => Version::V1,
            ProtobufMessage::V2 => Version::V2,
            ProtobufMessage::Auto if self.fell_back.load(Ordering::Relaxed) => Version::V1,
            ProtobufMessage::Auto => Version::V2,
        }
    }

    /// What the answer to a request in `sent` means for an `auto`
    /// endpoint: a refusal of a 2.0 request before any was acknowledged
    /// is taken as "not understood"; an acknowledged 2.0 request confirms
    /// the endpoint takes 2.0.
    pub fn judge(&self, sent: Version, attempt: Attempt) -> Attempt {
        if sent != Version::V2 || self.setting != ProtobufMessage::Auto {
            return attempt;
        }
        match attempt {
            Attempt::Delivered => {
                self.confirmed.store(true, Ordering::Relaxed);
                Attempt::Delivered
            }
            Attempt::Refused { status, body } if !self.confirmed.load(Ordering::Relaxed) => {
                Attempt::NotUnderstood {
                    reason: format!(
                        "HTTP {status} to a 2.0 request before any was accepted: {body}"
                    ),
                }
            }
            other => other,
        }
    }

    /// Remembers that the endpoint takes only 1.0 (only under `auto`;
    /// a fixed setting never changes); `true` the first time.
    pub fn fall_back(&self) -> bool {
        self.setting == ProtobufMessage::Auto && !self.fell_back.swap(true, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_short_and_prometheus_names_and_refuse_others() {
        for (text, want) in [
            ("v1", ProtobufMessage::V1),
            ("prometheus.WriteRequest", ProtobufMessage::V1),
            ("v2", ProtobufMessage::V2),
            ("io.prometheus.write.v2.Request", ProtobufMessage::V2),
            ("auto", ProtobufMessage::Auto),
        ] {
            assert_eq!(text.parse::<ProtobufMessage>(), Ok(want), "{text}");
        }
        for bad in ["", "V2", "2", "v3", "io.prometheus.write.v3.Request"] {
            let err = bad.parse::<ProtobufMessage>().unwrap_err();
            assert!(err.to_string().contains("expected v1"), "{err}");
        }
        assert_eq!(ProtobufMessage::default(), ProtobufMessage::Auto);
    }

    #[test]
    fn auto_falls_back_once_and_stays_on_v1() {
        let auto = Negotiation::new(ProtobufMessage::Auto);
        assert_eq!(auto.current(), Version::V2);
        assert!(auto.fall_back());
        assert!(!auto.fall_back(), "reported once");
        assert_eq!(auto.current(), Version::V1);
    }

    #[test]
    fn a_refusal_before_any_2_0_success_means_not_understood() {
        use reqwest::StatusCode;
        let refused = || Attempt::Refused {
            status: StatusCode::BAD_REQUEST,
            body: "cannot decode".into(),
        };
        let auto = Negotiation::new(ProtobufMessage::Auto);
        assert!(matches!(
            auto.judge(Version::V2, refused()),
            Attempt::NotUnderstood { reason } if reason.contains("400") && reason.contains("cannot decode")
        ));
        // 1.0 requests, and retries, are what they are.
        assert_eq!(auto.judge(Version::V1, refused()), refused());
        let retry = Attempt::Retry {
            reason: "HTTP 503".into(),
            retry_after: None,
        };
        assert_eq!(auto.judge(Version::V2, retry.clone()), retry);
        // Once a 2.0 request was acknowledged, a refusal is a refusal.
        assert_eq!(
            auto.judge(Version::V2, Attempt::Delivered),
            Attempt::Delivered
        );
        assert_eq!(auto.judge(Version::V2, refused()), refused());
        // A fixed v2 never reinterprets.
        let fixed = Negotiation::new(ProtobufMessage::V2);
        assert_eq!(fixed.judge(Version::V2, refused()), refused());
    }

    #[test]
    fn fixed_settings_never_change() {
        for (setting, version) in [
            (ProtobufMessage::V1, Version::V1),
            (ProtobufMessage::V2, Version::V2),
        ] {
            let fixed = Negotiation::new(setting);
            assert!(!fixed.fall_back());
            assert_eq!(fixed.current(), version);
        }
    }
}
