//! Ctrl-C and SIGTERM during an export.

use chrono::Duration;

use crate::error::{Error, Kind, Result};
use crate::log;

/// Ctrl-C and SIGTERM. Between polls of `--follow` the run ends cleanly
/// (exit 0, state saved); during a request or a write it ends within
/// seconds: the work under way is dropped (its temporary file removed), the
/// state stays as the last commit left it, and the exit code is 130.
pub(super) struct Shutdown {
    requested: tokio::sync::watch::Receiver<bool>,
}

impl Shutdown {
    pub(super) fn listen() -> Shutdown {
        let (tell, requested) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signal().await;
            log::info("stopping: interrupted");
            let _ = tell.send(true);
            // Kept open: a closed channel would read as a second signal.
            std::future::pending::<()>().await;
        });
        Shutdown { requested }
    }

    pub(super) fn requested(&self) -> bool {
        *self.requested.borrow()
    }

    async fn stopped(&self) {
        let mut requested = self.requested.clone();
        let _ = requested.wait_for(|stop| *stop).await;
    }

    pub(super) fn interrupted() -> Error {
        Error::new(
            Kind::Interrupted,
            "interrupted: the window under way was not committed",
        )
        .with_hint("the state keeps the last committed window; run again to continue from there")
    }

    /// Runs `work` unless a signal comes: then `work` has `grace` to finish
    /// before it is dropped.
    pub(super) async fn guard<T>(
        &self,
        work: impl std::future::Future<Output = Result<T>>,
        grace: std::time::Duration,
    ) -> Result<T> {
        tokio::pin!(work);
        tokio::select! {
            result = &mut work => result,
            () = self.stopped() => {
                match tokio::time::timeout(grace, &mut work).await {
                    Ok(result) => result,
                    Err(_) => Err(Shutdown::interrupted()),
                }
            }
        }
    }

    /// Sleeps `interval`; false when asked to stop (before or during).
    pub(super) async fn wait(&self, interval: Duration) -> bool {
        if self.requested() {
            return false;
        }
        let pause = interval
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(300));
        tokio::select! {
            _ = tokio::time::sleep(pause) => !self.requested(),
            () = self.stopped() => false,
        }
    }
}

#[cfg(unix)]
async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn signal() {
    let _ = tokio::signal::ctrl_c().await;
}
