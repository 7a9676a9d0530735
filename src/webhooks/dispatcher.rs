//! The dispatcher: claims due deliveries in batches (on PostgreSQL with `FOR UPDATE SKIP LOCKED`
//! and a lease, so any number of replicas can run it without sending a delivery twice at once),
//! sends each one signed, and records the attempt, the retry and the endpoint's health in one
//! transaction. A crashed dispatcher's claims come back when their lease ends: delivery is
//! at least once, and receivers deduplicate on `webhook-id`.
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::instrument::WithSubscriber;

use super::{Webhooks, signature};
use crate::clock;
use crate::domain::ids::{Kind, new_id};
use crate::objects::{WebhookAttempt, WebhookEndpoint};
use crate::operation;
use crate::store::webhooks::{self as store, Claimed, DeliveryUpdate};
use crate::store::{Store, describe_error};
use crate::telemetry::{OTEL_TARGET, metrics};

/// The part of a response body kept in the attempt log.
const EXCERPT_BYTES: usize = 1024;

pub struct Dispatcher {
    store: Store,
    hooks: Arc<Webhooks>,
    client: reqwest::Client,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl Dispatcher {
    pub fn new(store: Store, hooks: Arc<Webhooks>) -> Result<Self, String> {
        let c = &hooks.config;
        let user_agent = concat!("billing-api-webhooks/", env!("CARGO_PKG_VERSION"));
        let client = crate::outbound::builder(c.connect_timeout, c.timeout, user_agent)
            .dns_resolver(hooks.policy.clone())
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        Ok(Dispatcher {
            store,
            hooks,
            client,
            in_flight: Arc::default(),
        })
    }

    /// Delivers until `stop`; then stops claiming, lets attempts in flight finish within `drain`,
    /// and gives back the claims of those that did not.
    pub async fn run(self, stop: CancellationToken, drain: Duration) {
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.hooks.config.concurrency));
        let mut tasks = JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            let idle = Self::claim_and_send(&this, &permits, &mut tasks).await == 0;
            if idle {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = operation::deliveries_queued() => {}
                    _ = tokio::time::sleep(this.hooks.config.poll_interval) => {}
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                }
            } else if stop.is_cancelled() {
                break;
            }
        }
        let drained = tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tasks.abort_all();
            let left: Vec<String> = this
                .in_flight
                .lock()
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            for id in &left {
                if let Ok(mut conn) = this.store.acquire().await {
                    let _ = store::release(&mut conn, id).await;
                }
            }
            tracing::warn!(
                released = left.len(),
                "webhook attempts cut short by shutdown; their deliveries were released"
            );
        }
    }

    /// Delivers what is due, and what falls due while it runs, until nothing is: for a scheduled
    /// job where no process runs the dispatcher all the time. Returns the attempts made. A failed
    /// attempt waits for its retry time, so this ends.
    pub async fn run_until_idle(self) -> usize {
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.hooks.config.concurrency));
        let mut tasks = JoinSet::new();
        let mut attempts = 0;
        loop {
            let claimed = Self::claim_and_send(&this, &permits, &mut tasks).await;
            attempts += claimed;
            // Nothing claimable now: done once no attempt is in flight (one may free a probe).
            if claimed == 0 && tasks.join_next().await.is_none() {
                return attempts;
            }
        }
    }

    /// Claims as many due deliveries as there are free permits and starts their attempts;
    /// returns how many it started.
    async fn claim_and_send(this: &Arc<Self>, permits: &Arc<Semaphore>, tasks: &mut JoinSet<()>) -> usize {
        let free = permits.available_permits().min(this.hooks.config.batch_size);
        let claimed = if free == 0 { Vec::new() } else { this.claim(free).await };
        let mut started = 0;
        for delivery in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let this = this.clone();
            tasks.spawn(async move {
                this.attempt(delivery).await;
                drop(permit);
            });
            started += 1;
        }
        started
    }

    /// Claims up to `limit` due deliveries. An endpoint whose breaker has cooled down gets one
    /// probe, and no other delivery until the probe's result is known.
    async fn claim(&self, limit: usize) -> Vec<Claimed> {
        let result = async {
            let backend = self.store.backend();
            let mut tx = self.store.begin_write().await?;
            let now = clock::now();
            let lease_until = now + self.hooks.config.lease.as_secs() as i64;
            let rows = store::due(&mut tx, backend, now, limit as i64).await?;
            let threshold = i64::from(self.hooks.config.breaker_threshold);
            let mut probing = HashSet::new();
            let mut chosen = Vec::new();
            for row in rows {
                if row.consecutive_failures >= threshold {
                    if !probing.insert(row.endpoint_id.clone()) {
                        continue;
                    }
                    store::hold_breaker(&mut tx, &row.endpoint_id, lease_until).await?;
                }
                chosen.push(row);
            }
            let ids: Vec<&str> = chosen.iter().map(|c| c.id.as_str()).collect();
            store::lease(&mut tx, &ids, lease_until).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(chosen)
        }
        // Polling is not worth a trace (it would be one every poll interval); the attempts are.
        .with_subscriber(tracing::subscriber::NoSubscriber::default())
        .await;
        match result {
            Ok(claimed) => {
                if let Ok(mut set) = self.in_flight.lock() {
                    set.extend(claimed.iter().map(|c| c.id.clone()));
                }
                claimed
            }
            Err(e) => {
                tracing::warn!(error = %describe_error(&e), "claiming webhook deliveries failed");
                Vec::new()
            }
        }
    }

    async fn attempt(&self, delivery: Claimed) {
        let span = tracing::debug_span!(
            target: OTEL_TARGET,
            "webhook attempt",
            otel.kind = "client",
            otel.name = "POST webhook",
            http.request.method = "POST",
            webhook.event_type = delivery.event_type.as_str(),
            webhook.attempt = delivery.attempts + 1,
            http.response.status_code = tracing::field::Empty,
        );
        let started = Instant::now();
        let attempted_at = clock::now();
        let outcome = self.send(&delivery).instrument(span.clone()).await;
        if let Outcome::Response { status, .. } = &outcome {
            span.record("http.response.status_code", status);
        }
        let latency_ms = started.elapsed().as_millis() as i64;
        let recorded = self
            .record(&delivery, &outcome, attempted_at, latency_ms)
            .instrument(span)
            .await;
        if let Err(e) = recorded {
            // The lease runs out and the delivery is sent again: at least once.
            tracing::warn!(error = %describe_error(&e), delivery = %delivery.id, "recording a webhook attempt failed");
        }
        if let Ok(mut set) = self.in_flight.lock() {
            set.remove(&delivery.id);
        }
    }

    async fn send(&self, d: &Claimed) -> Outcome {
        let Some(cipher) = &self.hooks.cipher else {
            return Outcome::NotSent("webhooks.encryption_key is not configured".into());
        };
        let url = match self.hooks.policy.check_url(&d.url) {
            Ok(url) => url,
            Err(why) => return Outcome::Refused(format!("destination not allowed: the URL {why}")),
        };
        let now = clock::now();
        let mut secrets = Vec::new();
        for stored in [
            Some(&d.secret),
            d.previous_secret
                .as_ref()
                .filter(|_| d.previous_secret_expires.is_some_and(|t| t > now)),
        ]
        .into_iter()
        .flatten()
        {
            match cipher.decrypt(stored) {
                Ok(secret) => secrets.push(secret),
                Err(e) => return Outcome::NotSent(format!("signing secret unreadable: {e}")),
            }
        }
        let body = payload(d);
        let mut signatures = Vec::new();
        for secret in &secrets {
            match signature::sign(secret, &d.event_id, now, body.as_bytes()) {
                Ok(s) => signatures.push(s),
                Err(e) => return Outcome::NotSent(e),
            }
        }
        let mut request = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &d.event_id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signatures.join(" "));
        if let Some(traceparent) = crate::telemetry::otel::current_traceparent() {
            request = request.header("traceparent", traceparent);
        }
        match request.body(body).send().await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let mut excerpt = Vec::new();
                while excerpt.len() < EXCERPT_BYTES {
                    match response.chunk().await {
                        Ok(Some(chunk)) => {
                            excerpt.extend_from_slice(&chunk[..chunk.len().min(EXCERPT_BYTES - excerpt.len())])
                        }
                        _ => break,
                    }
                }
                Outcome::Response {
                    status,
                    excerpt: String::from_utf8_lossy(&excerpt).into_owned(),
                }
            }
            Err(e) if e.is_timeout() => Outcome::Timeout,
            Err(e) => {
                let text = error_chain(&e);
                if text.contains("destination not allowed") {
                    Outcome::Refused(text)
                } else {
                    Outcome::Failed(text)
                }
            }
        }
    }

    /// Logs the attempt and moves the delivery and its endpoint on, in one transaction.
    async fn record(
        &self,
        d: &Claimed,
        outcome: &Outcome,
        attempted_at: i64,
        latency_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let c = &self.hooks.config;
        let now = clock::now();
        let attempts = d.attempts + 1;
        let success = outcome.is_success();
        metrics::webhook_attempt(outcome.label());
        if attempts > 1 {
            metrics::count(metrics::WEBHOOK_RETRIES);
        }
        let mut tx = self.store.begin_write().await?;
        let (status_code, error, excerpt) = match outcome {
            Outcome::Response { status, excerpt } => (
                Some(i64::from(*status)),
                (!success).then(|| format!("HTTP {status}")),
                Some(excerpt.clone()),
            ),
            other => (None, Some(other.describe()), None),
        };
        store::insert_attempt(
            &mut tx,
            &d.tenant,
            &WebhookAttempt {
                id: new_id(Kind::WebhookAttempt),
                object: WebhookAttempt::OBJECT,
                delivery_id: d.id.clone(),
                endpoint_id: d.endpoint_id.clone(),
                event_id: d.event_id.clone(),
                attempted_at,
                status_code,
                latency_ms,
                error: error.clone(),
                response_excerpt: excerpt,
            },
        )
        .await?;
        let (status, next) = if success {
            ("succeeded", now)
        } else {
            match c.retry_schedule.get((attempts - 1) as usize) {
                Some(delay) => ("pending", now + jittered(*delay)),
                None => ("failed", now),
            }
        };
        store::finish_delivery(
            &mut tx,
            &DeliveryUpdate {
                id: &d.id,
                status,
                attempts,
                next_attempt_at: next,
                last_status: status_code,
                last_error: error.as_deref(),
                now,
            },
        )
        .await?;
        // The endpoint as it is now (another attempt may have moved it since the claim).
        let Some(mut endpoint) = store::find_endpoint(&mut tx, &d.tenant, &d.endpoint_id).await? else {
            tx.commit().await?;
            return Ok(());
        };
        let threshold = i64::from(c.breaker_threshold);
        if success {
            if endpoint.consecutive_failures >= threshold {
                metrics::breaker_transition("closed");
            }
            store::set_endpoint_health(&mut tx, &endpoint.id, 0, None, None).await?;
        } else {
            let failures = endpoint.consecutive_failures + 1;
            let open_until = (failures >= threshold).then(|| now + c.breaker_cooldown.as_secs() as i64);
            if failures == threshold {
                metrics::breaker_transition("open");
            }
            let failing_since = endpoint.failing_since.unwrap_or(now);
            if now - failing_since < c.disable_after.as_secs() as i64 || endpoint.status != "enabled" {
                store::set_endpoint_health(&mut tx, &endpoint.id, failures, open_until, Some(failing_since)).await?;
            } else {
                endpoint.status = "disabled".into();
                endpoint.disabled_reason = Some("failing".into());
                endpoint.consecutive_failures = failures;
                endpoint.breaker_open_until = open_until;
                endpoint.failing_since = Some(failing_since);
                store::update_endpoint(&mut tx, &d.tenant, &endpoint).await?;
                let snapshot = WebhookEndpoint::from(endpoint.clone());
                operation::emit_for(&mut tx, &d.tenant, now, "webhook_endpoint.disabled", &snapshot).await?;
                tracing::warn!(endpoint = %endpoint.id, "webhook endpoint disabled after failing continuously");
            }
        }
        tx.commit().await?;
        if success {
            tracing::debug!(delivery = %d.id, latency_ms, "webhook delivered");
        } else {
            tracing::info!(delivery = %d.id, endpoint = %d.endpoint_id, attempts, status, error = error.as_deref().unwrap_or(""), "webhook attempt failed");
        }
        Ok(())
    }
}

/// The body: `{"type", "timestamp", "data"}`, with the event's stored snapshot as `data`.
fn payload(d: &Claimed) -> String {
    let timestamp =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(d.event_created.max(0) as u64));
    format!(
        "{{\"type\":{},\"timestamp\":\"{timestamp}\",\"data\":{}}}",
        serde_json::Value::String(d.event_type.clone()),
        d.event_data
    )
}

/// ±20% so that retries of many deliveries after one outage do not arrive together.
fn jittered(delay: Duration) -> i64 {
    let secs = delay.as_secs_f64();
    let mut byte = [0u8; 1];
    let r = if getrandom::fill(&mut byte).is_ok() {
        f64::from(byte[0]) / 255.0
    } else {
        0.5
    };
    (secs * (0.8 + 0.4 * r)).round().max(1.0) as i64
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[derive(Debug)]
enum Outcome {
    Response { status: u16, excerpt: String },
    Timeout,
    Refused(String),
    Failed(String),
    NotSent(String),
}

impl Outcome {
    fn is_success(&self) -> bool {
        matches!(self, Outcome::Response { status, .. } if (200..300).contains(status))
    }

    /// The `outcome` label of the attempts metric.
    fn label(&self) -> &'static str {
        match self {
            Outcome::Response { .. } if self.is_success() => "success",
            Outcome::Response { .. } => "http_error",
            Outcome::Timeout => "timeout",
            Outcome::Refused(_) => "refused",
            Outcome::Failed(_) | Outcome::NotSent(_) => "error",
        }
    }

    fn describe(&self) -> String {
        match self {
            Outcome::Response { status, .. } => format!("HTTP {status}"),
            Outcome::Timeout => "timed out".into(),
            Outcome::Refused(why) | Outcome::Failed(why) | Outcome::NotSent(why) => why.clone(),
        }
    }
}
