//! `billing-api healthcheck`: asks the running service whether it is ready, for images that
//! have no curl.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use http_body_util::Empty;
use hyper_util::rt::TokioIo;

/// Returns the status code of `GET /health/ready` on the configured address.
pub async fn check(addr: SocketAddr, timeout: Duration) -> Result<u16, String> {
    let target = SocketAddr::new(loopback_for(addr.ip()), addr.port());
    tokio::time::timeout(timeout, request(target))
        .await
        .map_err(|_| format!("no answer from {target} within {}s", timeout.as_secs()))?
}

/// A wildcard listen address is reached through loopback.
fn loopback_for(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

async fn request(target: SocketAddr) -> Result<u16, String> {
    let stream = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| format!("cannot connect to {target}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {target} failed: {e}"))?;
    tokio::spawn(conn);
    let req = http::Request::get("/health/ready")
        .header(http::header::HOST, target.to_string())
        .header(
            http::header::USER_AGENT,
            concat!("billing-api-healthcheck/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request to {target} failed: {e}"))?;
    Ok(response.status().as_u16())
}
