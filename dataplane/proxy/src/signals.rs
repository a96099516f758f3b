//! Unix signals as futures.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first SIGTERM or SIGINT. If the handlers cannot be
/// installed, never resolves (the process can still be killed).
pub async fn terminate() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("cannot install SIGTERM/SIGINT handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// A stream of SIGHUPs: each call of the returned closure yields a future
/// that resolves on the next one.
pub fn hangups() -> impl FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    let hup = std::rc::Rc::new(tokio::sync::Mutex::new(signal(SignalKind::hangup()).ok()));
    move || {
        let hup = hup.clone();
        Box::pin(async move {
            let mut guard = hup.lock().await;
            match guard.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        })
    }
}
