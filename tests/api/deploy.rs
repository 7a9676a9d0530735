//! What deployment targets rely on: systemd's notify protocol and watchdog.
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::helpers::process::Server;

fn receive_until(socket: &UnixDatagram, needle: &str, deadline: Duration) -> Vec<String> {
    let until = Instant::now() + deadline;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let found = message.lines().any(|l| l == needle);
            seen.push(message);
            if found {
                break;
            }
        }
    }
    seen
}

#[test]
fn systemd_hears_ready_watchdog_pings_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let db = format!("sqlite://{}/billing.db", dir.path().display());
    let env = [
        ("BILLING_DATABASE__URL", db.as_str()),
        ("BILLING_SERVER__PORT", "0"),
        ("BILLING_SHUTDOWN__GRACE_PERIOD", "0s"),
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "200000"),
    ];
    let mut server = Server::start(&env);

    let messages = receive_until(&socket, "READY=1", Duration::from_secs(20));
    let ready = messages.last().expect("a notification");
    assert!(ready.lines().any(|l| l == "READY=1"), "{messages:?}");
    assert!(ready.contains("STATUS=serving on 127.0.0.1:"), "{ready}");
    // Readiness is announced once the port answers.
    let addr = server.wait_for_address();
    assert_eq!(
        crate::helpers::blocking_client()
            .get(format!("http://{addr}/health/ready"))
            .send()
            .unwrap()
            .status(),
        200
    );

    let pings = receive_until(&socket, "never", Duration::from_millis(900));
    let count = pings.iter().filter(|m| m.lines().any(|l| l == "WATCHDOG=1")).count();
    assert!(count >= 3, "a ping every 100 ms for WatchdogSec=200ms: {pings:?}");

    server.signal("TERM");
    let stopping = receive_until(&socket, "STOPPING=1", Duration::from_secs(10));
    assert!(
        stopping.iter().any(|m| m.lines().any(|l| l == "STOPPING=1")),
        "{stopping:?}"
    );
    assert_eq!(server.wait(Duration::from_secs(15)).and_then(|s| s.code()), Some(0));
}
