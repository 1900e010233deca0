//! Signed webhooks with guaranteed delivery (programs' own systems learn what happened).
//!
//! A fact and the event that reports it are written in one transaction (`store::webhooks`): a
//! final result and its `attendance.finalized`, a meeting's end and `meeting.ended`, a ban and
//! `participant.banned`. Each event gets one delivery row per subscribed endpoint (the outbox);
//! `dispatch` claims due rows with a lease (on PostgreSQL also `FOR UPDATE SKIP LOCKED`), so with
//! several nodes on one database exactly one node sends each attempt, and a node that dies while
//! sending loses nothing: its lease runs out and another attempt is made. Attempts are retried
//! with exponential backoff and jitter for at least `retry_for` (24 h); every attempt carries the
//! same `webhook-id`, so receivers deduplicate. Requests are signed per the Standard Webhooks
//! specification (`sign`) and sent only where `guard` allows (https, public addresses).
//!
//! Payloads name only the receiving program's own members, never chat or support-request text.

pub mod dispatch;
pub mod guard;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The events a program can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    /// The first participant was admitted to a meeting.
    #[serde(rename = "meeting.started")]
    MeetingStarted,
    /// A meeting ended (its results are final).
    #[serde(rename = "meeting.ended")]
    MeetingEnded,
    /// One member's final result, with the fields of the attendance export.
    #[serde(rename = "attendance.finalized")]
    AttendanceFinalized,
    /// One of the program's members was banned from a meeting.
    #[serde(rename = "participant.banned")]
    ParticipantBanned,
    /// A certificate was issued for one of the program's members' attendance.
    #[serde(rename = "certificate.issued")]
    CertificateIssued,
    /// A test event (`POST /v1/webhooks/{id}/test`), sent to one endpoint; not subscribable.
    #[serde(rename = "webhook.test")]
    Test,
}

impl EventType {
    /// Every event an endpoint can subscribe to.
    pub const SUBSCRIBABLE: [EventType; 5] = [
        EventType::MeetingStarted,
        EventType::MeetingEnded,
        EventType::AttendanceFinalized,
        EventType::ParticipantBanned,
        EventType::CertificateIssued,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MeetingStarted => "meeting.started",
            EventType::MeetingEnded => "meeting.ended",
            EventType::AttendanceFinalized => "attendance.finalized",
            EventType::ParticipantBanned => "participant.banned",
            EventType::CertificateIssued => "certificate.issued",
            EventType::Test => "webhook.test",
        }
    }

    /// A subscribable event by name.
    pub fn parse(s: &str) -> Option<EventType> {
        EventType::SUBSCRIBABLE.into_iter().find(|e| e.as_str() == s)
    }
}

/// The body of every webhook request (Standard Webhooks' recommended shape).
pub fn payload(ty: EventType, at_ms: i64, data: serde_json::Value) -> String {
    serde_json::json!({"type": ty.as_str(), "timestamp": crate::attendance::rfc3339(at_ms), "data": data}).to_string()
}

/// A new event id: `msg_` and 128 random bits. The same id goes with every attempt.
pub fn new_event_id() -> String {
    format!("msg_{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// A new endpoint id.
pub fn new_endpoint_id() -> String {
    format!("ep_{}", hex::encode(rand::random::<[u8; 10]>()))
}

/// A new signing secret: `whsec_` and 32 random bytes, base64 (Standard Webhooks' format).
pub fn new_secret() -> String {
    format!("whsec_{}", B64.encode(rand::random::<[u8; 32]>()))
}

/// The key bytes of a `whsec_` secret.
fn secret_key(secret: &str) -> Option<Vec<u8>> {
    B64.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).ok()
}

/// One `webhook-signature` entry: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`
/// under the secret's key bytes.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = secret_key(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

/// Webhook delivery settings (`[webhooks]` in the configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Whether this node delivers webhooks (events are recorded either way; another node, or this
    /// one after a restart, delivers them).
    pub deliver: bool,
    /// Allow `http://` endpoints on loopback addresses (`127.0.0.1`, `[::1]`, `localhost`), and
    /// loopback addresses at all. For testing; never needed in production.
    pub allow_http_loopback: bool,
    /// Allow endpoints whose addresses are private, link-local, shared (CGNAT) or unique-local
    /// (an operator whose programs' systems sit on an internal network). Off: such endpoints are
    /// refused, when registered and again when connecting (server-side request forgery).
    pub allow_private_addresses: bool,
    /// Time to connect (TCP and TLS).
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// Time for the whole request, answer included; longer counts as a failed attempt.
    #[serde(with = "humantime_serde_compat")]
    pub request_timeout: Duration,
    /// The first retry's delay; each further retry doubles it (with jitter), up to `retry_max_delay`.
    #[serde(with = "humantime_serde_compat")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub retry_max_delay: Duration,
    /// How long an event is retried before it is given up (at least 24 hours by default).
    #[serde(with = "humantime_serde_compat")]
    pub retry_for: Duration,
    /// Requests in flight to one endpoint at once, across every node.
    pub max_in_flight_per_endpoint: u32,
    /// Consecutive failed attempts after which an endpoint is disabled (the API shows it,
    /// `disabled_reason` = `failures`; its pending events wait until it is enabled again).
    pub disable_after_failures: u32,
    /// How often a node looks for due deliveries besides being woken by its own new events
    /// (another node's events, retries).
    #[serde(with = "humantime_serde_compat")]
    pub poll_interval: Duration,
    /// Days after which delivered and given-up events are purged.
    pub keep_days: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            deliver: true,
            allow_http_loopback: false,
            allow_private_addresses: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            retry_base: Duration::from_secs(5),
            retry_max_delay: Duration::from_secs(3600),
            retry_for: Duration::from_secs(24 * 3600),
            max_in_flight_per_endpoint: 4,
            disable_after_failures: 50,
            poll_interval: Duration::from_secs(1),
            keep_days: 30,
        }
    }
}

impl WebhookConfig {
    /// How long a claimed delivery stays claimed: a node that dies while sending leaves the row
    /// to others once this passes.
    pub fn lease(&self) -> Duration {
        self.connect_timeout + self.request_timeout + Duration::from_secs(5)
    }

    /// The delay before retry number `attempt` (1 = the first retry): exponential, capped, with
    /// equal jitter (half fixed, half random) so endpoints recovering from an outage are not hit
    /// by every sender at once.
    pub fn backoff(&self, attempt: u32, random: f64) -> Duration {
        let exp =
            self.retry_base.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1).min(30)).unwrap_or(u32::MAX));
        let d = exp.min(self.retry_max_delay);
        d / 2 + d.mul_f64(random.clamp(0.0, 1.0) / 2.0)
    }
}

/// Durations as `5s`, `24h` (humantime) in the configuration.
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example (its test vector).
    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn secrets_are_whsec_and_32_bytes() {
        let s = new_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(secret_key(&s).map(|k| k.len()), Some(32));
        assert_ne!(s, new_secret());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let c = WebhookConfig { retry_base: Duration::from_secs(10), ..Default::default() };
        assert_eq!(c.backoff(1, 0.0), Duration::from_secs(5));
        assert_eq!(c.backoff(1, 1.0), Duration::from_secs(10));
        assert_eq!(c.backoff(3, 1.0), Duration::from_secs(40));
        assert_eq!(c.backoff(40, 1.0), Duration::from_secs(3600), "capped at retry_max_delay");
        let d = c.backoff(2, 0.3);
        assert!(d > Duration::from_secs(10) && d < Duration::from_secs(20), "{d:?}");
    }

    #[test]
    fn only_the_five_events_are_subscribable() {
        for e in EventType::SUBSCRIBABLE {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
        }
        assert_eq!(EventType::parse("webhook.test"), None);
        assert_eq!(EventType::parse("chat.message"), None);
    }
}
