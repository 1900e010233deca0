//! The delivery loop: claim due deliveries, send each in its own task, record how it went.
//!
//! One loop per node. It claims per endpoint, never more than the endpoint's limit of requests in
//! flight (counted in the database, so across nodes), and sends each claimed delivery in a task
//! of its own: an endpoint that never answers holds at most its own few slots until the request
//! timeout, never the loop, another endpoint or a meeting. The loop sleeps until the next
//! delivery is due, this node writes an event, or `poll_interval` passes (another node's events).

use super::{guard, WebhookConfig};
use crate::metrics::Metrics;
use crate::store::{AttemptOutcome, Claimed, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Endpoints looked at per turn of the loop.
const ENDPOINTS_PER_TURN: i64 = 256;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Starts the delivery loop (when `deliver` is on). It stops with `stop`; deliveries in flight
/// are abandoned (their leases run out and they are attempted again: at least once).
pub fn spawn(
    store: Store,
    config: WebhookConfig,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if !config.deliver {
        return None;
    }
    let client = match guard::client(&config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: cannot build the HTTP client; nothing will be delivered");
            return None;
        }
    };
    Some(tokio::spawn(run(store, config, client, metrics, stop)))
}

async fn run(
    store: Store,
    config: WebhookConfig,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let finished = Arc::new(Notify::new());
    let config = Arc::new(config);
    let mut failing_since: Option<Instant> = None;
    let mut last_purge: Option<Instant> = None;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let now = now_ms();
        match turn(&store, &config, &client, &metrics, &finished, now).await {
            Ok(()) => {
                if failing_since.take().is_some() {
                    tracing::warn!("webhooks: the database answers again; deliveries go on");
                }
            }
            Err(e) => {
                if failing_since.is_none() {
                    failing_since = Some(Instant::now());
                    tracing::warn!(error = %e, "webhooks: cannot read the outbox; events wait (logged once per outage)");
                }
            }
        }
        if last_purge.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            last_purge = Some(Instant::now());
            let before = now - i64::from(config.keep_days) * 86_400_000;
            match store.purge_webhook_events(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "webhooks: purged old delivered events"),
                Err(e) => tracing::debug!(error = %e, "webhooks: purge failed"),
            }
        }
        // Until the next due delivery, a new event, a finished delivery (a slot is free), or
        // the poll interval.
        // Something due now was not claimed: its endpoint is at its limit (a finished delivery
        // here, or the poll for one elsewhere, frees a slot).
        let now = now_ms();
        let wait = match store.next_delivery_due().await {
            Ok(Some(at)) if at > now => Duration::from_millis(u64::try_from(at - now).unwrap_or(0)),
            _ => config.poll_interval,
        }
        .min(config.poll_interval)
        .max(Duration::from_millis(5));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = store.outbox_written() => {}
            _ = finished.notified() => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One pass: claim what is due, per endpoint, and start sending it.
async fn turn(
    store: &Store,
    config: &Arc<WebhookConfig>,
    client: &reqwest::Client,
    metrics: &Arc<Metrics>,
    finished: &Arc<Notify>,
    now: i64,
) -> Result<(), crate::store::StoreError> {
    let endpoints = store.endpoints_with_due_work(now, ENDPOINTS_PER_TURN).await?;
    let lease = i64::try_from(config.lease().as_millis()).unwrap_or(i64::MAX / 4);
    for endpoint in endpoints {
        let token = hex::encode(rand::random::<[u8; 12]>());
        let max = i64::from(config.max_in_flight_per_endpoint.max(1));
        let claimed = match store.claim_deliveries(&endpoint, max, now, lease, &token).await {
            Ok(c) => c,
            // One endpoint's trouble (a secret that does not open) holds up no other endpoint.
            Err(e @ crate::store::StoreError::Sealed(_)) => {
                tracing::error!(endpoint = %endpoint, error = %e, "webhooks: cannot use this endpoint's secret");
                continue;
            }
            Err(e) => return Err(e),
        };
        for c in claimed {
            let (store, config, client, finished) = (store.clone(), config.clone(), client.clone(), finished.clone());
            let metrics = metrics.clone();
            tokio::spawn(async move {
                deliver(&store, &config, &client, &metrics, c).await;
                finished.notify_one();
            });
        }
    }
    Ok(())
}

/// Sends one delivery and records the outcome.
async fn deliver(store: &Store, config: &WebhookConfig, client: &reqwest::Client, metrics: &Metrics, c: Claimed) {
    let started = Instant::now();
    let outcome = match send(config, client, &c).await {
        Ok(status) => AttemptOutcome { status_code: Some(status), error: None, duration_ms: 0 },
        Err(error) => AttemptOutcome { status_code: None, error: Some(error), duration_ms: 0 },
    };
    let outcome =
        AttemptOutcome { duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX), ..outcome };
    let now = now_ms();
    let attempt = u32::try_from(c.attempts + 1).unwrap_or(u32::MAX);
    let retry_for = i64::try_from(config.retry_for.as_millis()).unwrap_or(i64::MAX);
    let retry_at = if now - c.event_created_at >= retry_for {
        None
    } else {
        let delay = config.backoff(attempt, rand::random::<f64>());
        Some(now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4))
    };
    if outcome.succeeded() {
        metrics.webhook_attempts_succeeded.inc();
    } else {
        metrics.webhook_attempts_failed.inc();
        if retry_at.is_none() {
            metrics.webhook_events_given_up.inc();
        }
        tracing::debug!(endpoint = %c.endpoint_id, event = %c.event_id, attempt, status = ?outcome.status_code,
            error = ?outcome.error, "webhook attempt failed");
        if retry_at.is_none() {
            tracing::warn!(endpoint = %c.endpoint_id, event = %c.event_id, attempts = attempt,
                "webhook given up after the retry window");
        }
    }
    let disable_after = i64::from(config.disable_after_failures.max(1));
    match store.finish_delivery(&c, &outcome, now, retry_at, disable_after).await {
        Ok(true) => {
            metrics.webhook_endpoints_disabled.inc();
            tracing::warn!(endpoint = %c.endpoint_id, failures = disable_after,
                "webhook endpoint disabled after a run of failed attempts")
        }
        Ok(false) => {}
        // The lease runs out and the delivery is attempted again: at least once.
        Err(e) => {
            tracing::warn!(error = %e, event = %c.event_id, "webhooks: cannot record an attempt; it will be repeated")
        }
    }
}

/// One request. The body is the stored payload, byte for byte what was signed.
async fn send(config: &WebhookConfig, client: &reqwest::Client, c: &Claimed) -> Result<u16, String> {
    // An IP literal never reaches the resolver: check it here (names are checked at connect time).
    let url = guard::check_url(&c.url, guard::Policy::from(config)).map_err(|e| format!("refused: {e}"))?;
    let timestamp = chrono::Utc::now().timestamp();
    let signature = c
        .secrets
        .iter()
        .filter_map(|s| super::sign(s, &c.event_id, timestamp, c.payload.as_bytes()))
        .collect::<Vec<_>>()
        .join(" ");
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &c.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(c.payload.clone())
        .send()
        .await
        .map_err(describe)?;
    Ok(res.status().as_u16())
}

/// A failure in words for the program's administrator (never what a name resolved to).
fn describe(e: reqwest::Error) -> String {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(s) = source {
        if s.is::<guard::RefusedAddress>() {
            return "refused: the host name resolves to no public internet address".into();
        }
        source = s.source();
    }
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_redirect() {
        "redirect (not followed)".into()
    } else {
        "request failed".into()
    }
}
