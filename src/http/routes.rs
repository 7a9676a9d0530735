//! The route templates of the service, for the request layer: which template a path matches
//! (`/v1/customers/{id}`), found by the same matcher axum routes with (matchit, same syntax), so
//! that the layer can sit outside the router. Inside it (as an axum `Router::layer`), it would be
//! wrapped around every route and cost a boxed service and a boxed future per request each time;
//! outside, it wraps the router once.
use std::sync::Arc;

use crate::telemetry::metrics::{self, RouteMetrics};

/// The route label of requests no route matched (404s), so labels stay bounded.
pub const UNMATCHED: &str = "unmatched";

#[derive(Clone)]
pub struct RouteTable {
    matcher: Arc<matchit::Router<Arc<RouteMetrics>>>,
    unmatched: Arc<RouteMetrics>,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteTable")
    }
}

impl RouteTable {
    /// The table of `templates` (each as given to `Router::route`).
    pub fn new<'a>(templates: impl IntoIterator<Item = &'a str>) -> Self {
        let mut matcher = matchit::Router::new();
        for template in templates {
            // A template twice is the same route (several methods): the first one stands.
            let _ = matcher.insert(template, metrics::route(template));
        }
        RouteTable {
            matcher: Arc::new(matcher),
            unmatched: metrics::route(UNMATCHED),
        }
    }

    /// The route `path` is served by, or `unmatched`.
    pub fn find(&self, path: &str) -> Arc<RouteMetrics> {
        match self.matcher.at(path) {
            Ok(found) => found.value.clone(),
            Err(_) => self.unmatched.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_their_templates() {
        let table = RouteTable::new([
            "/",
            "/v1/customers",
            "/v1/customers/{id}",
            "/v1/invoices/{id}/lines/{line_id}",
        ]);
        for (path, template) in [
            ("/", "/"),
            ("/v1/customers", "/v1/customers"),
            ("/v1/customers/cus_1", "/v1/customers/{id}"),
            ("/v1/invoices/in_1/lines/il_2", "/v1/invoices/{id}/lines/{line_id}"),
            ("/v1/customers/cus_1/nope", UNMATCHED),
            ("/nope", UNMATCHED),
        ] {
            assert_eq!(&*table.find(path).name, template, "{path}");
        }
    }
}
