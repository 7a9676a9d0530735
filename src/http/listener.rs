//! The API's listener, and the order in which a stopping service lets go of its connections.
//!
//! When shutdown stops the service, a socket this process bound first stops completing new
//! handshakes ([`refuse_new_connections`]), the connections the kernel has already completed are
//! taken from the socket's queue, and the listening socket is closed: a new connection is then
//! refused, which a proxy safely retries on another instance (nothing was sent). Closing the
//! socket with connections still queued would reset them, with their requests already sent, and
//! a connection completed between the last `accept` and the `close` would be one of them: that
//! is why new handshakes stop first (the rollout scenarios behind nginx met such a reset in 1 of
//! 17 local runs, and CI once failed a `POST` with it). A socket passed in by socket activation
//! is the supervisor's: it stays open, and what is queued on it waits for the next process.
//!
//! Connections accepted get [`LAST_REQUESTS`] to deliver the request they may already carry
//! before idle ones are closed: closing a connection with an unread request on it resets it too,
//! and a proxy must not retry a request it sent (the instance may have acted on it), so it would
//! fail.
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use axum::serve::Listener;
use socket2::{SockFilter, SockRef};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long accepted connections have to deliver their request once the listener stops.
pub const LAST_REQUESTS: Duration = Duration::from_millis(500);

/// How long handshakes already under way when new ones are refused get to complete: several
/// round trips between a proxy and an instance in one data centre (well under a millisecond
/// each). Short, because a connection begun meanwhile waits a second for its SYN to be sent
/// again: at 100 ms, every client of the rollout test behind nginx had a request in that window
/// and all stalled for that second at each restart.
const HANDSHAKES_UNDER_WAY: Duration = Duration::from_millis(5);

/// Who the listening socket belongs to, which decides how it is let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketOwner {
    /// Bound by this process: it closes with it.
    ThisProcess,
    /// Passed in by a supervisor (socket activation): it outlives this process, with its
    /// backlog, and anything set on it would outlive it too.
    Supervisor,
}

/// A TCP listener that lets go of its socket when `stop` is cancelled, then accepts nothing more.
pub struct StopAccepting {
    inner: Option<TcpListener>,
    addr: SocketAddr,
    stop: CancellationToken,
    owner: SocketOwner,
    /// Set once stopping: until then, handshakes under way complete and are accepted as usual.
    closes_at: Option<Instant>,
    /// Connections taken from the queue when the socket was closed, still to be handed out.
    last: VecDeque<(TcpStream, SocketAddr)>,
}

impl StopAccepting {
    pub fn new(listener: TcpListener, owner: SocketOwner, stop: CancellationToken) -> io::Result<Self> {
        Ok(StopAccepting {
            addr: listener.local_addr()?,
            inner: Some(listener),
            stop,
            owner,
            closes_at: None,
            last: VecDeque::new(),
        })
    }

    /// Stops new handshakes on a socket this process owns; returns when to close it.
    fn start_closing(&self) -> Instant {
        let now = Instant::now();
        match (&self.inner, self.owner) {
            (Some(listener), SocketOwner::ThisProcess) => match refuse_new_connections(listener) {
                Ok(()) => now + HANDSHAKES_UNDER_WAY,
                Err(e) => {
                    // Then closing is as racy as it is without the filter, and no worse.
                    tracing::warn!(error = %e, "cannot refuse new connections before closing the listener");
                    now
                }
            },
            _ => now,
        }
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

/// Makes the kernel drop every new connection's first packet (a SYN without ACK) on `listener`,
/// while the rest of a handshake under way, and everything on connections already made, still
/// passes. The client sends its SYN again a second later, and by then the socket is closed (it
/// is refused, and a proxy tries another instance) or the next process listens (it is served).
/// A classic BPF socket filter: it sees a packet from its TCP header on, whose byte 13 holds
/// the flags.
fn refuse_new_connections(listener: &TcpListener) -> io::Result<()> {
    const LOAD_BYTE_AT: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const AND: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
    const JUMP_IF_EQUAL: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RETURN: u16 = 0x06; // BPF_RET | BPF_K: how many bytes of the packet to keep, 0 drops it
    const TCP_FLAGS: u32 = 13;
    const SYN: u32 = 0x02;
    const ACK: u32 = 0x10;
    let drop_new_handshakes = [
        SockFilter::new(LOAD_BYTE_AT, 0, 0, TCP_FLAGS),
        SockFilter::new(AND, 0, 0, SYN | ACK),
        // SYN alone: the next instruction (drop); otherwise skip it (keep).
        SockFilter::new(JUMP_IF_EQUAL, 0, 1, SYN),
        SockFilter::new(RETURN, 0, 0, 0),
        SockFilter::new(RETURN, 0, 0, u32::MAX),
    ];
    SockRef::from(listener).attach_filter(&drop_new_handshakes)
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
            match self.closes_at {
                None => tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => self.closes_at = Some(self.start_closing()),
                    accepted = Listener::accept(listener) => return accepted,
                },
                // Handshakes under way complete meanwhile; new ones do not start.
                Some(at) => tokio::select! {
                    biased;
                    _ = tokio::time::sleep_until(at) => self.close(),
                    accepted = Listener::accept(listener) => return accepted,
                },
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
        let mut accepting = StopAccepting::new(listener, SocketOwner::ThisProcess, stop.clone()).unwrap();
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

    /// What closes the race between the last `accept` and the `close`: once refused, a new
    /// handshake cannot complete (so it cannot be queued and then reset), while a connection
    /// completed before is still accepted and carries data both ways.
    #[tokio::test]
    async fn a_closing_socket_completes_no_new_handshake() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut before = TcpStream::connect(addr).await.unwrap();
        refuse_new_connections(&listener).unwrap();

        let late = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await;
        assert!(
            late.is_err(),
            "a handshake started after the filter completed: {late:?}"
        );

        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut accepted, _) = listener.accept().await.unwrap();
        before.write_all(b"POST").await.unwrap();
        let mut got = [0u8; 4];
        accepted.read_exact(&mut got).await.unwrap();
        accepted.write_all(b"201!").await.unwrap();
        let mut answer = [0u8; 4];
        before.read_exact(&mut answer).await.unwrap();
        assert_eq!((&got, &answer), (b"POST", b"201!"));
    }

    /// A socket passed in by socket activation stays the supervisor's: nothing is set on it, so
    /// connections made after this process let go wait in its backlog for the next one.
    #[tokio::test]
    async fn a_supervisors_socket_keeps_taking_connections_for_the_next_process() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let supervisor = std::net::TcpListener::from(listener.as_fd().try_clone_to_owned().unwrap());
        let stop = CancellationToken::new();
        let mut accepting = StopAccepting::new(listener, SocketOwner::Supervisor, stop.clone()).unwrap();
        stop.cancel();
        assert!(
            tokio::time::timeout(Duration::from_millis(100), accepting.accept())
                .await
                .is_err(),
            "nothing is queued"
        );
        drop(accepting);
        let waiting = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await;
        assert!(
            matches!(waiting, Ok(Ok(_))),
            "a connection after this process let go: {waiting:?}"
        );
        supervisor.set_nonblocking(true).unwrap();
        assert!(
            supervisor.accept().is_ok(),
            "and the next process takes it from the backlog"
        );
    }
}
