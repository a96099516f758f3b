//! Opening upstream connections: TCP (with `TCP_NODELAY`) within the
//! cluster's connect timeout, then HTTP/1.1 as is or HTTP/2 with prior
//! knowledge.

use std::sync::Arc;
use std::time::Duration;

use mesh_engine::Upstream;

use crate::pool::{Conn, H2Send};

/// Where to connect: an `ip:port`, or a `host:port` resolved at connect
/// time (a `DNS` ServiceEntry's endpoint, e.g. a Kubernetes Service name).
#[derive(Debug)]
pub(crate) enum Target {
    Socket(std::net::SocketAddr),
    Name(Arc<str>),
}

pub(crate) async fn connect(target: Target, timeout: Duration, up: Upstream) -> Option<Conn> {
    let stream = tokio::time::timeout(timeout, async {
        match target {
            Target::Socket(s) => tokio::net::TcpStream::connect(s).await,
            Target::Name(name) => tokio::net::TcpStream::connect(&*name).await,
        }
    })
    .await
    .ok()?
    .ok()?;
    let _ = stream.set_nodelay(true);
    Some(Conn::new(stream, up))
}

/// Connects and starts an HTTP/2 connection with prior knowledge (cleartext,
/// no upgrade), within `timeout`; its connection task runs on this thread
/// until the connection closes.
pub(crate) async fn connect_h2(
    target: Target,
    timeout: Duration,
    max_head: usize,
) -> Option<H2Send> {
    tokio::time::timeout(timeout, async {
        let stream = match target {
            Target::Socket(s) => tokio::net::TcpStream::connect(s).await,
            Target::Name(name) => tokio::net::TcpStream::connect(&*name).await,
        }
        .ok()?;
        let _ = stream.set_nodelay(true);
        let (send, conn) = hyper::client::conn::http2::Builder::new(crate::rt::LocalExec)
            .timer(hyper_util::rt::TokioTimer::new())
            .max_header_list_size(u32::try_from(max_head).unwrap_or(u32::MAX))
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        Some(send)
    })
    .await
    .ok()
    .flatten()
}
