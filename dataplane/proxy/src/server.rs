//! The process: listeners, the admin listener, the workers, the timer
//! task, hot reload and graceful drain.
//!
//! The main thread is worker 0: it accepts every listener's connections
//! and hands each to the worker with the fewest open ones (Envoy's
//! `exact_balance`), serves the admin listener, runs the engines' timers,
//! the recording and reloads. Workers 1.. are threads with their own event
//! loop; a connection, its requests and the upstream connections they
//! use stay on the worker it was handed to.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::admin;
use crate::config::{self, Loaded};
use crate::downstream;
use crate::log::now_rfc3339;
use crate::msg::ConnInfo;
use crate::proxy::{Options, Phase, Shared, lock, set_worker};

/// Runs `meshproxy` until `shutdown` resolves, then drains.
///
/// `listeners` are bound already, one per `[[listener]]` of `loaded` in
/// order (so tests can bind port 0); `admin` is the admin listener, if any.
/// `reload` yields each time the config should be read again (SIGHUP); the
/// file is also watched for changes. Runs on a current-thread runtime
/// inside a `LocalSet` (worker 0); starts `options.concurrency - 1` more
/// worker threads and stops them before it returns.
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
    let sh = Arc::new(Shared::new(
        options,
        &specs,
        &loaded.mesh,
        loaded.text.clone(),
    ));
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let (stop_tx, stop_rx) = watch::channel(false);
    let workers = sh.options.concurrency.max(1);
    set_worker(0);
    let mut feeds = vec![None];
    let mut threads = Vec::new();
    for w in 1..workers {
        match start_worker(w, &sh, &phase_rx, &stop_rx) {
            Ok((feed, thread)) => {
                feeds.push(Some(feed));
                threads.push(thread);
            }
            Err(e) => {
                eprintln!(
                    "{} meshproxy: cannot start worker {w}: {e}; serving with {w}",
                    now_rfc3339()
                );
                break;
            }
        }
    }
    let balancer = Rc::new(Balancer {
        sh: sh.clone(),
        feeds,
        next: Cell::new(0),
    });
    for (li, l) in listeners.into_iter().enumerate() {
        tokio::task::spawn_local(accept_loop(
            sh.clone(),
            li,
            l,
            phase_rx.clone(),
            balancer.clone(),
        ));
    }
    drop(balancer);
    if let Some(a) = admin {
        tokio::task::spawn_local(admin::serve(sh.clone(), a));
    }
    let timer = tokio::task::spawn_local(timer(sh.clone()));
    let sweeper = tokio::task::spawn_local(sweep(sh.clone()));
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
    sh.ready.store(false, Ordering::Release);
    let _ = phase_tx.send(Phase::Draining);
    tokio::time::sleep(sh.options.drain_time).await;
    let _ = phase_tx.send(Phase::Stopped);
    let deadline = tokio::time::Instant::now() + sh.options.drain_timeout;
    let busy = || {
        sh.connections
            .iter()
            .any(|c| c.active.load(Ordering::Acquire) > 0)
            || sh.in_flight.load(Ordering::Acquire) > 0
    };
    while busy() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    for t in threads {
        // Each worker returns at once on `stop`, dropping what is left.
        let _ = t.join();
    }
    timer.abort();
    sweeper.abort();
    sh.finish_recording();
    eprintln!(
        "{} meshproxy: stopped ({} requests still in flight)",
        now_rfc3339(),
        sh.in_flight.load(Ordering::Acquire)
    );
}

/// A connection accepted on listener `li`, on its way to a worker.
struct Handoff {
    li: usize,
    stream: std::net::TcpStream,
    remote: SocketAddr,
}

/// Starts worker `w`: a thread with its own current-thread runtime, which
/// serves the connections sent on the returned feed until `stop`.
fn start_worker(
    w: usize,
    sh: &Arc<Shared>,
    phase: &watch::Receiver<Phase>,
    stop: &watch::Receiver<bool>,
) -> std::io::Result<(mpsc::UnboundedSender<Handoff>, std::thread::JoinHandle<()>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Handoff>();
    let (sh, phase, mut stop) = (sh.clone(), phase.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name(format!("meshproxy-worker-{w}"))
        .spawn(move || {
            set_worker(w);
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                tokio::task::spawn_local(sweep(sh.clone()));
                let mut feed_open = true;
                loop {
                    tokio::select! {
                        h = rx.recv(), if feed_open => match h {
                            Some(h) => match tokio::net::TcpStream::from_std(h.stream) {
                                Ok(s) => {
                                    let counted = Counted::taken_over(&sh, w);
                                    serve(&sh, h.li, s, h.remote, &phase, counted);
                                }
                                Err(e) => {
                                    drop(Counted::taken_over(&sh, w));
                                    eprintln!("{} meshproxy: worker {w}: {e}", now_rfc3339());
                                }
                            },
                            None => feed_open = false,
                        },
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            });
        })?;
    Ok((tx, thread))
}

/// Places accepted connections on workers: the one with the fewest open
/// connections, ties taken in turn (Envoy's exact connection balance).
struct Balancer {
    sh: Arc<Shared>,
    /// Worker `w`'s feed (`None` for worker 0, this thread).
    feeds: Vec<Option<mpsc::UnboundedSender<Handoff>>>,
    next: Cell<usize>,
}

impl Balancer {
    fn pick(&self) -> usize {
        let n = self.feeds.len();
        let start = self.next.get();
        let mut best = start % n;
        let mut fewest = u64::MAX;
        for k in 0..n {
            let w = (start + k) % n;
            let c = self.sh.connections[w].active.load(Ordering::Acquire);
            if c < fewest {
                fewest = c;
                best = w;
            }
        }
        self.next.set(best + 1);
        best
    }
}

/// Reads the config again; applies it if valid and the listeners are the
/// same, else logs why not and keeps the config in force.
fn apply_reload(sh: &Arc<Shared>, paths: &[PathBuf]) {
    let new = match config::load(paths) {
        Ok(n) => n,
        Err(e) => {
            sh.reloads_failed.fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "{} meshproxy: config reload refused, the previous config keeps serving:\n{e}",
                now_rfc3339()
            );
            return;
        }
    };
    let same = new.listeners.len() == sh.proxies.len()
        && new.listeners.iter().zip(&sh.proxies).all(|(l, p)| {
            let p = lock(p);
            (l.address == p.listener.address || l.address.port() == 0)
                && l.proxy == p.listener.proxy
        });
    if !same {
        sh.reloads_failed.fetch_add(1, Ordering::Relaxed);
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
        let mut held = sh.proxy(i);
        let now = sh.now();
        held.all().reconfigure(new.mesh.clone(), now);
    }
    *lock(&sh.config_text) = new.text;
    sh.reloads_ok.fetch_add(1, Ordering::Relaxed);
    sh.timer_wake.notify_one();
}

/// The timer task, as quinn's `drive_timer`: sleep until the earliest
/// `poll_timeout` of the engines (or the recording's window end), run
/// `handle_timeout`, drain events.
async fn timer(sh: Arc<Shared>) {
    loop {
        let next = sh
            .proxies
            .iter()
            .filter_map(|p| lock(p).engine.poll_timeout())
            .min();
        let next = match lock(&sh.recorder).as_ref() {
            Some(r) => Some(next.map_or(r.window_end, |t| t.min(r.window_end))),
            None => next,
        };
        let wake = next.map(|t| {
            let now = sh.now();
            tokio::time::Instant::now() + t.saturating_since(now)
        });
        tokio::select! {
            () = async {
                match wake {
                    Some(w) => tokio::time::sleep_until(w).await,
                    None => std::future::pending().await,
                }
            } => {}
            () = sh.timer_wake.notified() => {}
        }
        for i in 0..sh.proxies.len() {
            let mut held = sh.proxy(i);
            let now = sh.now();
            let p = held.all();
            if p.engine.poll_timeout().is_some_and(|t| t <= now) {
                p.engine.handle_timeout(now);
                p.local(0).drain_events();
            }
        }
        let now = sh.now();
        sh.record_windows(now, false);
    }
}

/// About once a second, closes this worker's idle upstream connections
/// past their idle timeout.
async fn sweep(sh: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for i in 0..sh.proxies.len() {
            let mut held = sh.proxy(i);
            let now = sh.now();
            held.local().sweep_idle(now);
        }
    }
}

async fn accept_loop(
    sh: Arc<Shared>,
    li: usize,
    listener: TcpListener,
    mut phase: watch::Receiver<Phase>,
    balancer: Rc<Balancer>,
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
        let w = balancer.pick();
        let counted = Counted::new(&sh, w);
        match &balancer.feeds[w] {
            None => serve(&sh, li, stream, remote, &phase, counted),
            Some(feed) => {
                let Ok(stream) = stream.into_std() else {
                    continue;
                };
                // The worker counts it from here (its `Counted` is made
                // there): this one must not count it out.
                std::mem::forget(counted);
                if feed.send(Handoff { li, stream, remote }).is_err() {
                    drop(Counted::taken_over(&sh, w));
                }
            }
        }
    }
}

/// Serves a client connection on this worker, as a task of its own.
fn serve(
    sh: &Arc<Shared>,
    li: usize,
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    phase: &watch::Receiver<Phase>,
    counted: Counted,
) {
    let _ = stream.set_nodelay(true);
    let local = stream
        .local_addr()
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let info = ConnInfo::new(remote, local);
    let sh = sh.clone();
    let phase = phase.clone();
    tokio::task::spawn_local(async move {
        // Counted out however the task ends (a panic included), so the
        // drain never waits for a connection that is gone.
        let _counted = counted;
        downstream::serve(sh, li, info, stream, phase).await;
    });
}

/// An open client connection of worker `w`, counted until dropped.
struct Counted(Arc<Shared>, usize);

impl Counted {
    /// Counts one more connection on worker `w`.
    fn new(sh: &Arc<Shared>, w: usize) -> Self {
        let c = &sh.connections[w];
        c.active.fetch_add(1, Ordering::AcqRel);
        c.total.fetch_add(1, Ordering::Relaxed);
        Self(sh.clone(), w)
    }

    /// Takes over a connection already counted on worker `w`.
    fn taken_over(sh: &Arc<Shared>, w: usize) -> Self {
        Self(sh.clone(), w)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections[self.1]
            .active
            .fetch_sub(1, Ordering::AcqRel);
    }
}
