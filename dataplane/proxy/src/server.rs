//! The process: listeners, the admin listener, the timer task, hot reload
//! and graceful drain, all on one thread.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin;
use crate::config::{self, Loaded};
use crate::downstream;
use crate::log::now_rfc3339;
use crate::msg::ConnInfo;
use crate::proxy::{Options, Phase, Shared};

/// Runs `meshproxy` until `shutdown` resolves, then drains.
///
/// `listeners` are bound already, one per `[[listener]]` of `loaded` in
/// order (so tests can bind port 0); `admin` is the admin listener, if any.
/// `reload` yields each time the config should be read again (SIGHUP); the
/// file is also watched for changes. `bound` is called once every listener
/// serves.
pub async fn run(
    paths: Vec<PathBuf>,
    loaded: Loaded,
    listeners: Vec<TcpListener>,
    admin: Option<TcpListener>,
    options: Options,
    mut reload: impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = ()>>> + 'static,
    shutdown: impl Future<Output = ()>,
) {
    // Name each listener by the address it is bound to (port 0 resolved).
    let specs: Vec<config::ListenerSpec> = loaded
        .listeners
        .iter()
        .zip(&listeners)
        .map(|(spec, l)| config::ListenerSpec {
            address: l.local_addr().unwrap_or(spec.address),
            proxy: spec.proxy.clone(),
        })
        .collect();
    let sh = Rc::new(Shared::new(
        options,
        &specs,
        &loaded.mesh,
        loaded.text.clone(),
    ));
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let connections = Rc::new(Cell::new(0usize));
    for (li, l) in listeners.into_iter().enumerate() {
        tokio::task::spawn_local(accept_loop(
            sh.clone(),
            li,
            l,
            phase_rx.clone(),
            connections.clone(),
        ));
    }
    if let Some(a) = admin {
        tokio::task::spawn_local(admin::serve(sh.clone(), a));
    }
    let timer = tokio::task::spawn_local(timer(sh.clone()));
    // Reloads: SIGHUP, or the file's modification time changing.
    {
        let sh = sh.clone();
        let paths = paths.clone();
        tokio::task::spawn_local(async move {
            let mut stamp = config::modified(&paths);
            let interval = sh.options.watch_interval;
            loop {
                let changed = async {
                    match interval {
                        Some(i) => loop {
                            tokio::time::sleep(i).await;
                            let s = config::modified(&paths);
                            if s != stamp {
                                return s;
                            }
                        },
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    s = changed => stamp = s,
                    () = reload() => stamp = config::modified(&paths),
                }
                apply_reload(&sh, &paths);
            }
        });
    }
    shutdown.await;
    // Envoy's graceful drain, as Istio's pilot-agent runs it on SIGTERM:
    // `/ready` fails and the listeners keep accepting for the drain time,
    // every answer closing its connection, so that clients and load
    // balancers move away without an error; then the listeners close and
    // in-flight requests have the drain timeout to finish.
    eprintln!(
        "{} meshproxy: draining: accepting for {} ms, then up to {} ms for in-flight requests",
        now_rfc3339(),
        sh.options.drain_time.as_millis(),
        sh.options.drain_timeout.as_millis()
    );
    sh.ready.set(false);
    let _ = phase_tx.send(Phase::Draining);
    tokio::time::sleep(sh.options.drain_time).await;
    let _ = phase_tx.send(Phase::Stopped);
    let deadline = tokio::time::Instant::now() + sh.options.drain_timeout;
    while (connections.get() > 0 || sh.in_flight.get() > 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    timer.abort();
    sh.finish_recording();
    eprintln!(
        "{} meshproxy: stopped ({} requests still in flight)",
        now_rfc3339(),
        sh.in_flight.get()
    );
}

/// Reads the config again; applies it if valid and the listeners are the
/// same, else logs why not and keeps the config in force.
fn apply_reload(sh: &Rc<Shared>, paths: &[PathBuf]) {
    let new = match config::load(paths) {
        Ok(n) => n,
        Err(e) => {
            sh.reloads_failed.set(sh.reloads_failed.get() + 1);
            eprintln!(
                "{} meshproxy: config reload refused, the previous config keeps serving:\n{e}",
                now_rfc3339()
            );
            return;
        }
    };
    let same = new.listeners.len() == sh.proxies.len()
        && new.listeners.iter().zip(&sh.proxies).all(|(l, p)| {
            let p = p.borrow();
            (l.address == p.listener.address || l.address.port() == 0)
                && l.proxy == p.listener.proxy
        });
    if !same {
        sh.reloads_failed.set(sh.reloads_failed.get() + 1);
        eprintln!(
            "{} meshproxy: config reload refused, the previous config keeps serving:\n{}: listener: the listeners changed; restart meshproxy to change listeners",
            now_rfc3339(),
            paths
                .first()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        return;
    }
    for w in &new.warnings {
        eprintln!("{} meshproxy: warning: {w}", now_rfc3339());
    }
    for i in 0..sh.proxies.len() {
        let now = sh.now();
        sh.proxy(i).reconfigure(new.mesh.clone(), now);
    }
    *sh.config_text.borrow_mut() = new.text;
    sh.reloads_ok.set(sh.reloads_ok.get() + 1);
    sh.timer_wake.notify_one();
}

/// The timer task, as quinn's `drive_timer`: sleep until the earliest
/// `poll_timeout`, run `handle_timeout`, drain events; about once a second
/// close idle connections past their idle timeout.
async fn timer(sh: Rc<Shared>) {
    let start = tokio::time::Instant::now();
    let mut next_sweep = start + Duration::from_secs(1);
    loop {
        let next = sh
            .proxies
            .iter()
            .filter_map(|p| p.borrow().engine.poll_timeout())
            .min();
        let wake = match next {
            Some(t) => {
                let now = sh.now();
                tokio::time::Instant::now() + t.saturating_since(now)
            }
            None => next_sweep,
        }
        .min(next_sweep);
        let wake = match sh.recorder.borrow().as_ref() {
            Some(r) => {
                let now = sh.now();
                wake.min(tokio::time::Instant::now() + r.window_end.saturating_since(now))
            }
            None => wake,
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = sh.timer_wake.notified() => {}
        }
        for i in 0..sh.proxies.len() {
            let now = sh.now();
            let mut p = sh.proxy(i);
            if p.engine.poll_timeout().is_some_and(|t| t <= now) {
                p.engine.handle_timeout(now);
                p.drain_events();
            }
            if tokio::time::Instant::now() >= next_sweep {
                p.sweep_idle(now);
            }
        }
        let now = sh.now();
        sh.record_windows(now, false);
        if tokio::time::Instant::now() >= next_sweep {
            next_sweep = tokio::time::Instant::now() + Duration::from_secs(1);
        }
    }
}

async fn accept_loop(
    sh: Rc<Shared>,
    li: usize,
    listener: TcpListener,
    mut phase: watch::Receiver<Phase>,
    connections: Rc<Cell<usize>>,
) {
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    eprintln!("{} meshproxy: accept failed: {e}", now_rfc3339());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = phase.wait_for(|p| *p == Phase::Stopped) => return,
        };
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let info = ConnInfo::new(remote, local);
        let sh = sh.clone();
        let phase = phase.clone();
        let connections = connections.clone();
        connections.set(connections.get() + 1);
        tokio::task::spawn_local(async move {
            // Counted out however the task ends (a panic included), so the
            // drain never waits for a connection that is gone.
            let _counted = Counted(connections);
            downstream::serve(sh, li, info, stream, phase).await;
        });
    }
}

/// An open client connection, counted until dropped.
struct Counted(Rc<Cell<usize>>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}
