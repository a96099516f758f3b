//! Test harness: real `meshproxy` and `meshecho` processes on loopback
//! ephemeral ports, a tiny HTTP/1.1 client on std sockets. Every process
//! started here is killed by its own PID when its handle drops.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for anything before failing (generous: CI is a
/// loaded 2-core machine).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Lines a child printed, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn collect(stream: impl Read + Send + 'static) -> Self {
        let lines = Self::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                l.0.lock().unwrap().push(line);
            }
        });
        lines
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        self.all().join("\n")
    }

    pub fn count(&self, needle: &str) -> usize {
        self.all().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits until a line contains `needle`; returns it.
    pub fn wait_for(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.all().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "no line with {needle:?} after {PATIENCE:?}; got:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A child process, killed (by its PID) when dropped.
pub struct Proc {
    pub child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts");
        let stdout = Lines::collect(child.stdout.take().unwrap());
        let stderr = Lines::collect(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Sends a signal to this child (by its PID).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the child to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(start.elapsed() < PATIENCE, "process did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `meshecho` upstream.
pub struct Echo {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub name: String,
}

impl Echo {
    pub fn start(name: &str, extra: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshecho"));
        cmd.args(["--listen", "127.0.0.1:0", "--name", name])
            .args(extra);
        let proc = Proc::spawn(cmd);
        let line = proc.stdout.wait_for("meshecho listening on ");
        let addr = line
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .expect("bound address");
        Self {
            proc,
            addr,
            name: name.to_owned(),
        }
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh directory for one test's files.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "meshproxy-test-{}-{}-{tag}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `meshproxy` with its config file.
pub struct Proxy {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config: PathBuf,
}

impl Proxy {
    /// Starts a proxy on `config` (which should listen on 127.0.0.1:0).
    pub fn start(config: &str, extra: &[&str]) -> Self {
        let dir = temp_dir("proxy");
        let path = dir.join("mesh.toml");
        std::fs::write(&path, config).unwrap();
        Self::start_file(path, extra)
    }

    pub fn start_file(path: PathBuf, extra: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshproxy"));
        cmd.arg("--config")
            .arg(&path)
            .args(["--admin", "127.0.0.1:0"])
            .args(extra);
        if !extra.contains(&"--watch-interval") {
            cmd.args(["--watch-interval", "100ms"]);
        }
        let proc = Proc::spawn(cmd);
        let line = proc.stdout.wait_for("meshproxy listening on ");
        let addr = line.split(' ').nth(3).unwrap().parse().expect("listener");
        let line = proc.stdout.wait_for("meshproxy admin on ");
        let admin = line.rsplit(' ').next().unwrap().parse().expect("admin");
        Self {
            proc,
            addr,
            admin,
            config: path,
        }
    }

    /// Rewrites the config file (the proxy notices the change).
    pub fn rewrite(&self, config: &str) {
        // A new file renamed over the old one: the proxy never reads half.
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, config).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        get(self.addr, path, headers)
    }

    pub fn admin(&self, path: &str) -> Resp {
        get(self.admin, path, &[])
    }

    /// `/clusters` line values for an endpoint: `field` of `endpoint` in a
    /// cluster whose name contains `cluster`.
    pub fn cluster_field(&self, cluster: &str, endpoint: SocketAddr, field: &str) -> String {
        let body = self.admin("/clusters").body;
        let suffix = format!("::{endpoint}::{field}::");
        body.lines()
            .find(|l| l.contains(cluster) && l.contains(&suffix))
            .and_then(|l| l.split(&suffix).nth(1))
            .unwrap_or_else(|| panic!("no {suffix} for {cluster} in:\n{body}"))
            .to_owned()
    }

    /// Repeats `f` until it returns true.
    pub fn eventually(&self, what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < PATIENCE,
                "{what}: not after {PATIENCE:?}; proxy stderr:\n{}",
                self.proc.stderr.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An HTTP response.
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `meshecho` that answered, if any.
    pub fn echo(&self) -> &str {
        self.header("x-meshecho-name").unwrap_or("-")
    }
}

/// `GET path` with `Host: echo` unless given, on a fresh connection.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("Host: echo\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    raw(addr, req.as_bytes())
}

/// Sends raw bytes and reads the response until the server closes.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse(&buf)
}

fn parse(buf: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Reads one HTTP/1.1 response (head and `Content-Length` body) from a
/// kept-alive connection, leaving what follows in `buf`.
pub fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(String, String), String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let status = head.split(' ').nth(1).unwrap_or("");
            let length = if status.starts_with('1') { 0 } else { length };
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                buf.drain(..end + 4 + length);
                return Ok((head, body));
            }
        }
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("closed before a whole response: {buf:?}"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A service `echo` (port 80) with these endpoints as (echo, version).
pub fn service(endpoints: &[(&Echo, &str)]) -> String {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|(e, v)| {
            format!(
                "  {{ address = \"{}\", labels = {{ version = \"{v}\" }} }},",
                e.addr
            )
        })
        .collect();
    format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[service]]\nname = \"echo\"\nport = 80\nendpoints = [\n{}\n]\n",
        eps.join("\n")
    )
}

/// A DestinationRule for `echo` with subsets v1 and v2 and these extra
/// `trafficPolicy` lines.
pub fn destination_rule(policy: &str) -> String {
    format!(
        "\n[[destinationRule]]\nname = \"echo\"\nhost = \"echo\"\nsubsets = [{{ name = \"v1\", labels = {{ version = \"v1\" }} }}, {{ name = \"v2\", labels = {{ version = \"v2\" }} }}]\n{policy}\n"
    )
}
