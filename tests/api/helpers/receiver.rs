//! A webhook receiver on loopback: records every request, answers as its mode says (up, down
//! with 503, or slow), and verifies signatures with an independent Standard Webhooks library.
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};

pub const UP: u8 = 0;
pub const DOWN: u8 = 1;
pub const SLOW: u8 = 2;

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn id(&self) -> String {
        self.headers["webhook-id"].to_str().unwrap().to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Verified with the `standardwebhooks` crate, as a receiver would.
    pub fn verifies_with(&self, secret: &str) -> bool {
        let hook = standardwebhooks::Webhook::new(secret).unwrap();
        hook.verify(&self.body, &self.headers).is_ok()
    }
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    mode: Arc<AtomicU8>,
    received: Arc<Mutex<Vec<Received>>>,
    _server: Arc<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let mode = Arc::new(AtomicU8::new(UP));
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let (m, r) = (mode.clone(), received.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (m, r) = (m.clone(), r.clone());
                async move {
                    let status = match m.load(Ordering::SeqCst) {
                        DOWN => StatusCode::SERVICE_UNAVAILABLE,
                        SLOW => {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            StatusCode::OK
                        }
                        _ => StatusCode::OK,
                    };
                    r.lock().unwrap().push(Received {
                        headers,
                        body,
                        status: status.as_u16(),
                    });
                    (status, "ok")
                }
            }),
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url,
            mode,
            received,
            _server: Arc::new(server),
        }
    }

    pub fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Requests answered 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.status < 300).collect()
    }

    /// Waits until `done` holds for what was delivered, or panics after `timeout`.
    pub async fn wait_for(&self, timeout: Duration, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let delivered = self.delivered();
            if done(&delivered) {
                return delivered;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; {} delivered, {} received",
                delivered.len(),
                self.all().len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
