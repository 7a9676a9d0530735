use serde::Serialize;
use utoipa::ToSchema;

/// A test clock: the time of the customers created on it, moved forward on demand.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TestClock {
    pub id: String,
    #[schema(example = "test_clock")]
    pub object: &'static str,
    pub name: Option<String>,
    /// The clock's time (Unix seconds): "now" for its customers and their subscriptions.
    pub frozen_time: i64,
    pub created: i64,
}

impl TestClock {
    pub const OBJECT: &'static str = "test_clock";
}
