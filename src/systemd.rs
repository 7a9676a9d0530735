//! systemd's notification protocol (`Type=notify`): `READY=1` once the service serves, `WATCHDOG=1`
//! at half the `WatchdogSec` interval while the runtime is responsive, `STOPPING=1` when shutdown
//! begins. Without `NOTIFY_SOCKET` (not under systemd) every call does nothing.
use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

fn notify(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// Pings the watchdog until `stop` is cancelled, when systemd asked for it (`WatchdogSec=`).
pub fn spawn_watchdog(stop: CancellationToken) {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = timeout / 2;
    tracing::info!(interval_ms = every.as_millis() as u64, "systemd watchdog enabled");
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => notify(&[NotifyState::Watchdog]),
            }
        }
    });
}
