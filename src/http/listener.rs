//! The API's listener, and the order in which a stopping service lets go of its connections.
//!
//! When shutdown stops the service, the connections the kernel has already completed are taken
//! from the socket's queue, and the listening socket is closed: a new connection is then refused,
//! which a proxy safely retries on another instance (nothing was sent), and with socket
//! activation it waits in the socket's backlog for the next process. (Closing the socket with
//! connections still queued would reset them, with their requests already sent.) Connections
//! accepted get [`LAST_REQUESTS`] to deliver the request they may already carry before idle ones
//! are closed: closing a connection with an unread request on it resets it too, and a proxy must
//! not retry a request it sent (the instance may have acted on it), so it would fail.
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long accepted connections have to deliver their request once the listener is closed.
pub const LAST_REQUESTS: Duration = Duration::from_millis(500);

/// A TCP listener that closes its socket when `stop` is cancelled, then accepts nothing more.
pub struct StopAccepting {
    inner: Option<TcpListener>,
    addr: SocketAddr,
    stop: CancellationToken,
    /// Connections taken from the queue when the socket was closed, still to be handed out.
    last: VecDeque<(TcpStream, SocketAddr)>,
}

impl StopAccepting {
    pub fn new(listener: TcpListener, stop: CancellationToken) -> io::Result<Self> {
        Ok(StopAccepting {
            addr: listener.local_addr()?,
            inner: Some(listener),
            stop,
            last: VecDeque::new(),
        })
    }

    /// Takes every connection already queued on the socket, without waiting, then closes it.
    fn close(&mut self) {
        let Some(listener) = self.inner.take() else {
            return;
        };
        // A second handle on the same socket, to accept synchronously: the socket is
        // non-blocking, so an empty queue answers WouldBlock at once.
        let queued = listener.as_fd().try_clone_to_owned().map(std::net::TcpListener::from);
        if let Ok(queued) = queued {
            while let Ok((stream, peer)) = queued.accept() {
                let stream = stream.set_nonblocking(true).and_then(|()| TcpStream::from_std(stream));
                if let Ok(stream) = stream {
                    self.last.push_back((stream, peer));
                }
            }
        }
        // Both handles dropped: this process's socket is closed.
    }
}

impl Listener for StopAccepting {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            if let Some(last) = self.last.pop_front() {
                return last;
            }
            let Some(listener) = self.inner.as_mut() else {
                return std::future::pending().await;
            };
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => self.close(),
                accepted = Listener::accept(listener) => return accepted,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopping_takes_what_is_queued_then_refuses() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let mut accepting = StopAccepting::new(listener, stop.clone()).unwrap();
        // Three connections the kernel completed, not accepted yet: closing now would reset them.
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        stop.cancel();
        for _ in 0..3 {
            let accepted = tokio::time::timeout(Duration::from_secs(1), accepting.accept()).await;
            assert!(accepted.is_ok(), "a queued connection is handed out after stop");
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(100), accepting.accept())
                .await
                .is_err(),
            "then nothing more"
        );
        let refused = TcpStream::connect(addr).await;
        assert_eq!(refused.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    }
}
