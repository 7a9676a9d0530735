//! The API's HTTP/1.1 server: one task per connection, hyper configured for what the request
//! layer checks itself (so that an oversized head is answered 431 problem+json, not by hyper with
//! an empty body), and the shutdown order of [`listener`](super::listener).
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::serve::Listener;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::listener::{LAST_REQUESTS, StopAccepting};

/// The most request-head bytes hyper buffers on a connection before giving up on it (with a bare
/// 431 and no body). Heads above `server.header_limit`, far below this, are answered by the
/// request layer: 431 problem+json.
pub const MAX_BUFFERED_HEAD: usize = 1024 * 1024;
/// Headers hyper parses at most; the request layer answers 431 above `MAX_HEADERS`.
const MAX_PARSED_HEADERS: usize = 1000;
/// The most headers a request may carry (the request layer's limit).
pub const MAX_HEADERS: usize = 100;

/// Serves `router` on `listener` until `stop`: then the listener closes, connections get
/// [`LAST_REQUESTS`] to deliver their request, are told to close once idle, and this returns
/// when every one has.
pub async fn serve<S>(
    mut listener: StopAccepting,
    service: S,
    stop: CancellationToken,
    header_read_timeout: Duration,
) -> std::io::Result<()>
where
    S: tower::Service<axum::extract::Request, Response = axum::response::Response, Error = Infallible>
        + ForPeer
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .max_buf_size(MAX_BUFFERED_HEAD)
        .max_headers(MAX_PARSED_HEADERS)
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let closing = CancellationToken::new();
    let mut connections = JoinSet::new();
    let closed = async {
        stop.cancelled().await;
        tokio::time::sleep(LAST_REQUESTS).await;
    };
    let mut closed = pin!(closed);
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut closed => break,
        };
        let per_connection = service.for_peer(peer);
        let service = tower::service_fn(move |request: http::Request<Incoming>| {
            per_connection.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let closing = closing.clone();
        connections.spawn(async move {
            let mut connection = pin!(connection);
            tokio::select! {
                result = connection.as_mut() => log_end(result),
                () = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    log_end(connection.await);
                }
            }
        });
    }
    closing.cancel();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// A service told, once per connection, the address its requests come from.
pub trait ForPeer {
    fn for_peer(&self, peer: SocketAddr) -> Self;
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result
        && !e.is_incomplete_message()
        && !e.is_timeout()
    {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
