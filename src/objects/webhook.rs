use serde::Serialize;
use utoipa::ToSchema;

/// Where events are sent. The signing secret is shown once, when created or rotated.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    /// `we_…`
    pub id: String,
    #[schema(example = "webhook_endpoint")]
    pub object: &'static str,
    pub url: String,
    pub description: Option<String>,
    /// Event types sent to this endpoint, or `["*"]` for all.
    pub enabled_events: Vec<String>,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Why the endpoint was disabled: `manual` or `failing`.
    pub disabled_reason: Option<String>,
    /// Deliveries have failed since this time (none while healthy).
    pub failing_since: Option<i64>,
    pub created: i64,
    /// Only in the answer to create and rotate_secret: `whsec_…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl WebhookEndpoint {
    /// The endpoint as every later answer shows it: its secret is shown once, and never stored
    /// in the clear (not even as the replay of the request that made it).
    pub fn without_secret(&self) -> Self {
        WebhookEndpoint {
            secret: None,
            ..self.clone()
        }
    }
}

/// One event on its way to one endpoint.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookDelivery {
    /// `wd_…`
    pub id: String,
    #[schema(example = "webhook_delivery")]
    pub object: &'static str,
    pub endpoint: String,
    pub event: String,
    /// `pending`, `succeeded` or `failed` (retries exhausted).
    pub status: String,
    pub attempts: i64,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: Option<i64>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created: i64,
}

/// One HTTP attempt of a delivery, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WebhookAttempt {
    /// `wa_…`
    pub id: String,
    #[schema(example = "webhook_attempt")]
    pub object: &'static str,
    #[serde(rename = "delivery")]
    pub delivery_id: String,
    #[serde(skip)]
    pub endpoint_id: String,
    #[serde(rename = "event")]
    pub event_id: String,
    pub attempted_at: i64,
    /// The endpoint's HTTP status, if it answered.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    /// Why the attempt failed (timeout, refused destination, connection error, non-2xx).
    pub error: Option<String>,
    /// The first KiB of the endpoint's answer.
    pub response_excerpt: Option<String>,
}

impl WebhookAttempt {
    pub const OBJECT: &'static str = "webhook_attempt";
}
