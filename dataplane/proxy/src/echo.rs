//! `meshecho`: a small, fast test upstream in the spirit of fortio's echo
//! server. Each request may ask for its own answer with query parameters:
//!
//! | parameter | meaning |
//! | --- | --- |
//! | `status=503` or `status=503:20,500:5` | a status, or statuses with percent chances (the rest: 200) |
//! | `delay=150ms` or `delay=10ms:20,1s:1` | a delay before answering, or delays with percent chances |
//! | `size=N` or `size=N:P,…` | a body of N bytes, streamed (up to 1 TiB); the request body is read and dropped, its length and FNV-1a hash answered in `x-meshecho-received` and `x-meshecho-fnv` (default: the request body echoed back, up to 16 MiB) |
//! | `close=true` or `close=P` | close the connection after the answer (always, or with P percent chance) |
//! | `header=K:V` | add a response header (repeatable) |
//! | `reset=true` | no answer: reset the request after any delay (HTTP/1.1: the connection closes; HTTP/2: `RST_STREAM`) |
//!
//! Flags make the server misbehave by default: `--status 503 --after 60s`
//! (every answer without its own `status` is 503 once 60 s have passed since
//! start), `--error-rate P` (P percent of those answers are 503 from the
//! start). The dice come from `--seed`. Every answer carries `x-meshecho-name`
//! so tests and demos see which upstream answered, and `x-meshecho-proto`
//! (`HTTP/1.1` or `HTTP/2`: it speaks HTTP/1.1, and HTTP/2 to a client
//! that opens with the h2c preface) so they see how it was reached.

use std::fmt;
use std::time::Duration;

use mesh_engine::config::parse_duration;
use rand_core::Rng;
use rand_pcg::Pcg64Mcg;

/// The longest delay a request may ask for.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// The largest body a request may ask for (`size`, streamed).
pub const MAX_SIZE: usize = 1 << 40;
/// The largest request body echoed back (held whole).
pub const MAX_ECHO: usize = 16 << 20;

/// How the server behaves when a request does not say otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    /// Name reported in `x-meshecho-name`.
    pub name: String,
    /// Status of every answer from `after` on (0: none).
    pub status: u16,
    /// When `status` starts to apply, since start.
    pub after: Duration,
    /// Percent chance (0–100) of a 503 before/besides `status`.
    pub error_rate: f64,
}

/// A weighted choice: values with percent chances; when no value hits, the
/// default applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Dice<T> {
    choices: Vec<(T, f64)>,
}

impl<T: Copy> Dice<T> {
    /// The value for a roll `r` in `[0, 100)`.
    pub fn pick(&self, r: f64) -> Option<T> {
        let mut acc = 0.0;
        for (v, p) in &self.choices {
            acc += p;
            if r < acc {
                return Some(*v);
            }
        }
        None
    }
}

/// A query parameter that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadParam(pub String);

impl fmt::Display for BadParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses `v` or `v:p,v:p,…`; a lone `v` has a 100 % chance.
fn dice<T>(name: &str, text: &str, value: impl Fn(&str) -> Option<T>) -> Result<Dice<T>, BadParam> {
    let mut choices = Vec::new();
    let mut total = 0.0;
    for part in text.split(',') {
        let (v, p) = match part.split_once(':') {
            Some((v, p)) => {
                let p: f64 = p.parse().map_err(|_| {
                    BadParam(format!(
                        "{name}: expected a percentage after ':' in \"{part}\""
                    ))
                })?;
                (v, p)
            }
            None => (part, 100.0),
        };
        if !(0.0..=100.0).contains(&p) {
            return Err(BadParam(format!(
                "{name}: percentage {p} is not between 0 and 100"
            )));
        }
        let v = value(v).ok_or_else(|| BadParam(format!("{name}: cannot read \"{v}\"")))?;
        total += p;
        choices.push((v, p));
    }
    if total > 100.0 + 1e-9 {
        return Err(BadParam(format!(
            "{name}: percentages add up to {total}, more than 100"
        )));
    }
    Ok(Dice { choices })
}

/// What a request asks for, read from its query string.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ask {
    /// `status`.
    pub status: Option<Dice<u16>>,
    /// `delay`.
    pub delay: Option<Dice<Duration>>,
    /// `size`.
    pub size: Option<Dice<usize>>,
    /// `close`.
    pub close: Option<f64>,
    /// `header` (name, value) pairs.
    pub headers: Vec<(String, String)>,
    /// `reset`.
    pub reset: bool,
}

impl Ask {
    /// Reads the query string (without `?`).
    pub fn parse(query: &str) -> Result<Self, BadParam> {
        let mut ask = Self::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k {
                "status" => {
                    ask.status = Some(dice("status", &v, |s| {
                        s.parse::<u16>().ok().filter(|c| (100..=599).contains(c))
                    })?);
                }
                "delay" => {
                    ask.delay = Some(dice("delay", &v, |s| {
                        parse_duration(s).ok().filter(|d| *d <= MAX_DELAY)
                    })?);
                }
                "size" => {
                    ask.size = Some(dice("size", &v, |s| {
                        s.parse::<usize>().ok().filter(|n| *n <= MAX_SIZE)
                    })?);
                }
                "close" => {
                    ask.close = Some(match v.as_str() {
                        "true" | "" => 100.0,
                        "false" => 0.0,
                        p => p
                            .parse::<f64>()
                            .ok()
                            .filter(|p| (0.0..=100.0).contains(p))
                            .ok_or_else(|| {
                                BadParam(format!(
                                    "close: expected true, false or a percentage, found \"{p}\""
                                ))
                            })?,
                    });
                }
                "reset" => ask.reset = matches!(v.as_str(), "true" | ""),
                "header" => {
                    let (name, value) = v.split_once(':').ok_or_else(|| {
                        BadParam(format!("header: expected name:value, found \"{v}\""))
                    })?;
                    ask.headers
                        .push((name.trim().to_owned(), value.trim().to_owned()));
                }
                _ => {}
            }
        }
        Ok(ask)
    }
}

/// `%XX` and `+` decoding of a query value (invalid escapes stay as written).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(x) => {
                    out.push(x);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The answer to one request, decided with the server's dice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Status.
    pub status: u16,
    /// Delay before answering.
    pub delay: Duration,
    /// Body size, or `None` to echo the request body.
    pub size: Option<usize>,
    /// Close the connection afterwards.
    pub close: bool,
}

/// Decides the answer to a request `elapsed` after start.
pub fn decide(ask: &Ask, defaults: &Defaults, elapsed: Duration, rng: &mut Pcg64Mcg) -> Answer {
    let mut roll = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 100.0;
    let status = match &ask.status {
        Some(d) => d.pick(roll()).unwrap_or(200),
        None if defaults.status != 0 && elapsed >= defaults.after => defaults.status,
        None if defaults.error_rate > 0.0 && roll() < defaults.error_rate => 503,
        None => 200,
    };
    let delay = ask
        .delay
        .as_ref()
        .and_then(|d| d.pick(roll()))
        .unwrap_or(Duration::ZERO);
    let size = ask.size.as_ref().and_then(|d| d.pick(roll()));
    let close = ask.close.is_some_and(|p| roll() < p);
    Answer {
        status,
        delay,
        size,
        close,
    }
}

/// Serves `listener` until `shutdown` resolves: one task per connection,
/// HTTP/1.1 with keep-alive or HTTP/2 (prior knowledge), on the current
/// thread.
pub async fn serve(
    listener: tokio::net::TcpListener,
    defaults: Defaults,
    seed: u64,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use std::cell::RefCell;
    use std::rc::Rc;

    let started = tokio::time::Instant::now();
    let state = Rc::new(EchoState {
        defaults,
        rng: RefCell::new(Pcg64Mcg::new(u128::from(seed) | 1)),
        started,
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("meshecho: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::task::spawn_local(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            // An error makes hyper reset the request: HTTP/1.1 closes the
            // connection, HTTP/2 resets the stream.
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { state.answer(req).await.ok_or(Reset) }
            });
            // HTTP/1.1, or HTTP/2 when the client opens with the h2c
            // preface (prior knowledge).
            let _ = hyper_util::server::conn::auto::Builder::new(crate::rt::LocalExec)
                .serve_connection(io, service)
                .await;
        });
    }
}

struct EchoState {
    defaults: Defaults,
    rng: std::cell::RefCell<Pcg64Mcg>,
    started: tokio::time::Instant,
}

impl EchoState {
    async fn answer(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Option<hyper::Response<EchoBody>> {
        use http_body_util::BodyExt;
        let query = req.uri().query().unwrap_or("").to_owned();
        let proto = match req.version() {
            hyper::Version::HTTP_2 => "HTTP/2",
            hyper::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        let ask = match Ask::parse(&query) {
            Ok(a) => a,
            Err(e) => return Some(text(400, format!("meshecho: {e}\n"), &self.defaults.name)),
        };
        let answer = {
            let mut rng = self.rng.borrow_mut();
            decide(&ask, &self.defaults, self.started.elapsed(), &mut rng)
        };
        let mut received = None;
        let body = match answer.size {
            Some(n) => {
                // The request body is read as it comes and dropped.
                let mut body = req.into_body();
                let (mut len, mut fnv) = (0u64, FNV_OFFSET);
                while let Some(f) = body.frame().await {
                    let Ok(f) = f else { return None };
                    if let Ok(d) = f.into_data() {
                        len += d.len() as u64;
                        fnv = fnv1a(fnv, &d);
                    }
                }
                received = Some((len, fnv));
                EchoBody::Right(Repeat { left: n as u64 })
            }
            None => match http_body_util::Limited::new(req.into_body(), MAX_ECHO)
                .collect()
                .await
            {
                Ok(b) => EchoBody::Left(http_body_util::Full::new(b.to_bytes())),
                Err(_) => {
                    return Some(text(
                        413,
                        "meshecho: body too large\n".into(),
                        &self.defaults.name,
                    ));
                }
            },
        };
        if !answer.delay.is_zero() {
            tokio::time::sleep(answer.delay).await;
        }
        if ask.reset {
            return None;
        }
        let mut resp = hyper::Response::new(body);
        *resp.status_mut() =
            hyper::StatusCode::from_u16(answer.status).unwrap_or(hyper::StatusCode::OK);
        let h = resp.headers_mut();
        if let Some((len, fnv)) = received {
            h.insert("x-meshecho-received", len.into());
            if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("{fnv:016x}")) {
                h.insert("x-meshecho-fnv", v);
            }
        }
        if let Ok(v) = hyper::header::HeaderValue::from_str(&self.defaults.name) {
            h.insert("x-meshecho-name", v);
        }
        h.insert(
            "x-meshecho-proto",
            hyper::header::HeaderValue::from_static(proto),
        );
        for (k, v) in &ask.headers {
            if let (Ok(k), Ok(v)) = (
                hyper::header::HeaderName::from_bytes(k.as_bytes()),
                hyper::header::HeaderValue::from_str(v),
            ) {
                h.append(k, v);
            }
        }
        // HTTP/2 has no `Connection` header.
        if answer.close && proto != "HTTP/2" {
            h.insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
        }
        Some(resp)
    }
}

/// The error a `reset=true` request ends with, so hyper resets it.
#[derive(Debug)]
struct Reset;

impl fmt::Display for Reset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("reset asked by the request")
    }
}

impl std::error::Error for Reset {}

/// The body of an answer: whole, or `size` bytes generated as they go.
type EchoBody = http_body_util::Either<http_body_util::Full<bytes::Bytes>, Repeat>;

/// `left` more bytes of `x`, 64 KiB at a time (no allocation).
#[derive(Debug)]
struct Repeat {
    left: u64,
}

static XS: [u8; 64 << 10] = [b'x'; 64 << 10];

impl hyper::body::Body for Repeat {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(XS.len() as u64) as usize;
        self.left -= n as u64;
        let piece = bytes::Bytes::from_static(&XS[..n]);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

/// FNV-1a (64 bits): the hash of a received body, for tests to check it
/// arrived intact.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Continues an FNV-1a hash with `data`.
pub fn fnv1a(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// FNV-1a of `data` (what `x-meshecho-fnv` reports for a body).
pub fn fnv1a_of(data: &[u8]) -> u64 {
    fnv1a(FNV_OFFSET, data)
}

fn text(status: u16, body: String, name: &str) -> hyper::Response<EchoBody> {
    let full = http_body_util::Full::new(bytes::Bytes::from(body));
    let mut resp = hyper::Response::new(EchoBody::Left(full));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if let Ok(v) = hyper::header::HeaderValue::from_str(name) {
        resp.headers_mut().insert("x-meshecho-name", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            name: "e".into(),
            status: 0,
            after: Duration::ZERO,
            error_rate: 0.0,
        }
    }

    #[test]
    fn a_lone_status_always_hits_and_a_list_is_percent_chances() {
        let ask = Ask::parse("status=503").unwrap();
        let mut rng = Pcg64Mcg::new(1);
        assert_eq!(
            decide(&ask, &defaults(), Duration::ZERO, &mut rng).status,
            503
        );
        let ask = Ask::parse("status=503:20,500:5").unwrap();
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            match decide(&ask, &defaults(), Duration::ZERO, &mut rng).status {
                503 => counts[0] += 1,
                500 => counts[1] += 1,
                _ => counts[2] += 1,
            }
        }
        assert!((1700..2300).contains(&counts[0]), "{counts:?}");
        assert!((300..700).contains(&counts[1]), "{counts:?}");
    }

    #[test]
    fn delays_sizes_close_and_headers_are_read() {
        let ask = Ask::parse("delay=150ms&size=10&close=true&header=X-A:b%20c&header=k:v").unwrap();
        let mut rng = Pcg64Mcg::new(1);
        let a = decide(&ask, &defaults(), Duration::ZERO, &mut rng);
        assert_eq!(a.delay, Duration::from_millis(150));
        assert_eq!(a.size, Some(10));
        assert!(a.close);
        assert_eq!(ask.headers[0], ("X-A".into(), "b c".into()));
        assert_eq!(ask.headers.len(), 2);
    }

    #[test]
    fn bad_parameters_say_what_is_wrong() {
        assert!(Ask::parse("status=abc").unwrap_err().0.contains("status"));
        assert!(
            Ask::parse("status=503:70,500:40")
                .unwrap_err()
                .0
                .contains("more than 100")
        );
        assert!(Ask::parse("delay=5").unwrap_err().0.contains("delay"));
        assert!(
            Ask::parse("header=novalue")
                .unwrap_err()
                .0
                .contains("name:value")
        );
        assert!(Ask::parse("close=maybe").unwrap_err().0.contains("close"));
    }

    #[test]
    fn the_default_status_starts_after_its_time() {
        let d = Defaults {
            status: 503,
            after: Duration::from_secs(60),
            ..defaults()
        };
        let mut rng = Pcg64Mcg::new(1);
        let ask = Ask::default();
        assert_eq!(
            decide(&ask, &d, Duration::from_secs(59), &mut rng).status,
            200
        );
        assert_eq!(
            decide(&ask, &d, Duration::from_secs(60), &mut rng).status,
            503
        );
        // A request's own status wins over the default.
        let ask = Ask::parse("status=200").unwrap();
        assert_eq!(
            decide(&ask, &d, Duration::from_secs(61), &mut rng).status,
            200
        );
    }

    #[test]
    fn the_error_rate_fails_about_that_share() {
        let d = Defaults {
            error_rate: 30.0,
            ..defaults()
        };
        let mut rng = Pcg64Mcg::new(7);
        let n = (0..10_000)
            .filter(|_| decide(&Ask::default(), &d, Duration::ZERO, &mut rng).status == 503)
            .count();
        assert!((2700..3300).contains(&n), "{n}");
    }
}
