//! Tells the request layer which route template (`/v1/invoices/{id}`, never the raw path) a
//! request matched. The template is only known after routing, so the request layer leaves a
//! slot in the request and this per-route layer fills it; a slot survives a panicking handler
//! or a timeout, so those are still attributed to their route.
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use tower::{Layer, Service};

#[derive(Debug, Clone, Default)]
pub struct RouteSlot(Arc<OnceLock<MatchedPath>>);

impl RouteSlot {
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(MatchedPath::as_str)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RecordRouteLayer;

impl<S> Layer<S> for RecordRouteLayer {
    type Service = RecordRoute<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RecordRoute { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RecordRoute<S> {
    inner: S,
}

impl<S: Service<Request>> Service<Request> for RecordRoute<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if let (Some(slot), Some(matched)) = (
            req.extensions().get::<RouteSlot>(),
            req.extensions().get::<MatchedPath>(),
        ) {
            let _ = slot.0.set(matched.clone());
        }
        self.inner.call(req)
    }
}
