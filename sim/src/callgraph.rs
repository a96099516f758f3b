//! The call graph, checked: what a pod does for each request it serves —
//! calls to other services through its own sidecar, copying some inbound
//! headers (reference §7) — and the pre-built header tables that let a
//! request carry its headers as indices, so that no request builds a string.
//!
//! A request's headers are a [`HeaderSet`]: up to [`MAX_HEADERS`] pairs of
//! (name index, value index) into the run's [`HeaderTable`]. Every value a
//! header can take is known before the run: the load's fixed headers, one
//! user id and one cookie per user, and the calls' fixed headers.
//! Propagation copies index pairs from the inbound set to the outbound one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mesh_engine::config::{ConfigError, FieldPath};

use crate::experiment::{CallModel, ExperimentFile, err, positive};

/// Headers one request can carry.
pub(crate) const MAX_HEADERS: usize = 16;
/// Calls one version can declare.
pub(crate) const MAX_CALLS: usize = 16;
/// Nested calls one request can cause before the simulator refuses the
/// next one (a loop that the static cycle check could not see, e.g. through
/// a VirtualService that sends host `a` to service `b`).
pub(crate) const MAX_DEPTH: u8 = 32;

/// Every header name and value of the run, built once.
#[derive(Debug, Default)]
pub(crate) struct HeaderTable {
    pub(crate) names: Vec<String>,
    pub(crate) values: Vec<String>,
}

/// A request's headers as indices into the [`HeaderTable`] (plain data).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeaderSet {
    len: u8,
    names: [u16; MAX_HEADERS],
    values: [u32; MAX_HEADERS],
}

impl HeaderSet {
    /// No headers.
    pub(crate) const EMPTY: Self = Self {
        len: 0,
        names: [0; MAX_HEADERS],
        values: [0; MAX_HEADERS],
    };

    /// Whether there are no headers (most requests of most experiments).
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of header `name`, if present.
    pub(crate) fn get(&self, name: u16) -> Option<u32> {
        let n = usize::from(self.len);
        self.names[..n]
            .iter()
            .position(|&h| h == name)
            .map(|i| self.values[i])
    }

    /// Sets header `name` (replacing its value if present). Sets are built
    /// from checked specs that never exceed [`MAX_HEADERS`].
    pub(crate) fn set(&mut self, name: u16, value: u32) {
        let n = usize::from(self.len);
        if let Some(i) = self.names[..n].iter().position(|&h| h == name) {
            self.values[i] = value;
        } else if n < MAX_HEADERS {
            self.names[n] = name;
            self.values[n] = value;
            self.len += 1;
        } else {
            debug_assert!(false, "more than {MAX_HEADERS} headers");
        }
    }

    /// Writes the headers as the engine reads them into `out`; returns how many.
    pub(crate) fn write<'a>(
        &self,
        table: &'a HeaderTable,
        out: &mut [(&'a str, &'a str); MAX_HEADERS],
    ) -> usize {
        let n = usize::from(self.len);
        for ((slot, &name), &value) in out.iter_mut().zip(&self.names[..n]).zip(&self.values[..n]) {
            *slot = (
                table.names[usize::from(name)].as_str(),
                table.values[value as usize].as_str(),
            );
        }
        n
    }
}

/// One call of a workload, checked.
#[derive(Debug)]
pub(crate) struct CallSpec {
    /// The edge it is counted under (see [`Edge`]).
    pub(crate) edge: u32,
    pub(crate) host: String,
    pub(crate) path: String,
    /// The calling application's timeout.
    pub(crate) timeout: Option<Duration>,
    /// Inbound header names copied onto the call.
    pub(crate) propagate: Vec<u16>,
    /// Fixed headers set on the call.
    pub(crate) headers: Vec<(u16, u32)>,
    /// `onError = "ignore"`.
    pub(crate) ignore_errors: bool,
}

impl CallSpec {
    /// The headers of this call made while serving a request with `inbound`.
    pub(crate) fn outbound(&self, inbound: &HeaderSet) -> HeaderSet {
        let mut out = HeaderSet::EMPTY;
        for &name in &self.propagate {
            if let Some(v) = inbound.get(name) {
                out.set(name, v);
            }
        }
        for &(name, value) in &self.headers {
            out.set(name, value);
        }
        out
    }
}

/// What the pods of one version do for each request they serve.
#[derive(Debug)]
pub(crate) struct Workload {
    pub(crate) calls: Vec<CallSpec>,
    pub(crate) parallel: bool,
}

/// An edge of the call graph, the unit of `calls.csv`: who calls which
/// host. Edge 0 is the load (the client to `load.host`); then each call of
/// each version, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// The `[[client]]` name, or `<service>-<version>` for a workload.
    pub source: String,
    /// The authority called.
    pub host: String,
}

/// The call graph and the header tables of a run.
#[derive(Debug)]
pub(crate) struct CallGraph {
    pub(crate) headers: HeaderTable,
    pub(crate) workloads: Vec<Workload>,
    pub(crate) edges: Vec<Edge>,
    /// The workload of each (service, version), if it makes calls.
    pub(crate) workload_of: Vec<Vec<Option<u32>>>,
    /// The load's fixed headers.
    pub(crate) load_headers: HeaderSet,
    /// Name of the user-id header, if the load sends one; the value of user
    /// `u` is `headers.values[u]`.
    pub(crate) user_header: Option<u16>,
    /// Name `cookie`, if the load sends a user cookie; the value of user `u`
    /// is `headers.values[users + u]`.
    pub(crate) user_cookie: Option<u16>,
    pub(crate) users: u32,
}

#[derive(Default)]
struct Tables {
    names: BTreeMap<String, u16>,
    table: HeaderTable,
}

impl Tables {
    fn name(&mut self, n: &str) -> u16 {
        let n = n.to_ascii_lowercase();
        if let Some(&i) = self.names.get(&n) {
            return i;
        }
        let i = u16::try_from(self.table.names.len()).unwrap_or(u16::MAX);
        self.table.names.push(n.clone());
        self.names.insert(n, i);
        i
    }

    fn value(&mut self, v: String) -> u32 {
        self.table.values.push(v);
        u32::try_from(self.table.values.len() - 1).unwrap_or(u32::MAX)
    }
}

/// The host part of an authority, lowercased.
fn host_of(authority: &str) -> String {
    let h = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    h.to_ascii_lowercase()
}

/// The service an authority names without any VirtualService in the way
/// (for the static cycle check).
fn service_named(f: &ExperimentFile, authority: &str) -> Option<usize> {
    let h = host_of(authority);
    f.service.iter().position(|s| {
        if s.external == Some(true) {
            s.host
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(&h))
        } else {
            let n = &s.name;
            h == *n
                || h == format!("{n}.default")
                || h == format!("{n}.default.svc")
                || h == format!("{n}.default.svc.cluster.local")
        }
    })
}

/// Checks the call graph, the external services' fields and the load's
/// headers, and builds the tables.
pub(crate) fn build(f: &ExperimentFile, errors: &mut Vec<ConfigError>) -> CallGraph {
    let root = FieldPath::root();
    let mut t = Tables::default();
    // Users first, so that user `u`'s id is value `u` and its cookie value
    // `users + u`.
    let l = &f.load;
    let users = l.users.unwrap_or(0);
    for u in 0..users {
        t.value(format!("user-{u}"));
    }
    let user_cookie = match &l.user_cookie {
        Some(name) if users > 0 => {
            for u in 0..users {
                t.value(format!("{name}=user-{u}"));
            }
            Some(t.name("cookie"))
        }
        _ => None,
    };
    let user_header = match &l.user_header {
        Some(h) if users > 0 => Some(t.name(h)),
        _ => None,
    };
    let mut load_headers = HeaderSet::EMPTY;
    let room =
        MAX_HEADERS - usize::from(user_header.is_some()) - usize::from(user_cookie.is_some());
    if l.headers.len() > room {
        errors.push(err(
            root.key("load").key("headers"),
            format!("expected at most {room} headers (the simulator carries {MAX_HEADERS} per request, user id and cookie included), found {}", l.headers.len()),
        ));
    } else {
        for (k, v) in &l.headers {
            let name = t.name(k);
            let value = t.value(v.clone());
            load_headers.set(name, value);
        }
    }
    let mut edges = vec![Edge {
        source: l.client.clone(),
        host: l.host.clone(),
    }];
    let mut workloads = Vec::new();
    let mut workload_of = Vec::new();
    // Service → services it calls, for the cycle check.
    let mut graph: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); f.service.len()];
    for (si, s) in f.service.iter().enumerate() {
        let sp = root.key("service").named(si, &s.name);
        let external = s.external == Some(true);
        match (&s.host, external) {
            (Some(h), true) if !h.contains('.') || h.contains('*') || h.contains(':') => {
                errors.push(err(
                    sp.key("host"),
                    format!("expected a full host name such as \"api.example.com\" (no port, no wildcard), found \"{h}\""),
                ));
            }
            (None, true) => errors.push(err(
                sp.key("host"),
                "an external service needs its full host, e.g. host = \"api.example.com\"",
            )),
            (Some(_), false) => errors.push(err(
                sp.key("host"),
                format!(
                    "`host` is only for external services (external = true); callers reach a mesh service by its name, \"{}\"",
                    s.name
                ),
            )),
            _ => {}
        }
        let service_mode = mode(&s.call_mode, &sp.key("callMode"), errors);
        let mut per_version = Vec::new();
        for (vi, v) in s.version.iter().enumerate() {
            let vp = sp.key("version").named(vi, &v.name);
            let (calls, cp) = match &v.call {
                Some(c) => (c.as_slice(), vp.key("call")),
                None => (s.call.as_slice(), sp.key("call")),
            };
            let parallel = match &v.call_mode {
                Some(_) => mode(&v.call_mode, &vp.key("callMode"), errors),
                None => service_mode,
            };
            if calls.is_empty() {
                per_version.push(None);
                continue;
            }
            if external {
                errors.push(err(
                    cp,
                    "an external service has no sidecar in the mesh: model its own dependencies in its latency and errors",
                ));
                per_version.push(None);
                continue;
            }
            if calls.len() > MAX_CALLS {
                errors.push(err(
                    cp.clone(),
                    format!("expected at most {MAX_CALLS} calls, found {}", calls.len()),
                ));
            }
            let source = format!("{}-{}", s.name, v.name);
            let mut specs = Vec::new();
            for (ci, c) in calls.iter().enumerate().take(MAX_CALLS) {
                let p = cp.index(ci);
                if let Some(callee) = service_named(f, &c.host) {
                    graph[si].insert(callee);
                }
                let edge = u32::try_from(edges.len()).unwrap_or(u32::MAX);
                edges.push(Edge {
                    source: source.clone(),
                    host: c.host.clone(),
                });
                specs.push(call(c, edge, &p, &mut t, errors));
            }
            per_version.push(Some(u32::try_from(workloads.len()).unwrap_or(u32::MAX)));
            workloads.push(Workload {
                calls: specs,
                parallel,
            });
        }
        workload_of.push(per_version);
    }
    if let Some(cycle) = find_cycle(&graph) {
        let names: Vec<&str> = cycle.iter().map(|&s| f.service[s].name.as_str()).collect();
        let first = cycle[0];
        errors.push(err(
            root.key("service").named(first, &f.service[first].name).key("call"),
            format!(
                "the calls form a cycle ({}): every request would call itself forever; break the cycle",
                names.join(" → ")
            ),
        ));
    }
    CallGraph {
        headers: t.table,
        workloads,
        edges,
        workload_of,
        load_headers,
        user_header,
        user_cookie,
        users,
    }
}

fn mode(m: &Option<String>, path: &FieldPath, errors: &mut Vec<ConfigError>) -> bool {
    match m.as_deref() {
        None | Some("sequential") => false,
        Some("parallel") => true,
        Some(o) => {
            errors.push(err(
                path.clone(),
                format!("expected \"sequential\" or \"parallel\", found \"{o}\""),
            ));
            false
        }
    }
}

fn call(
    c: &CallModel,
    edge: u32,
    p: &FieldPath,
    t: &mut Tables,
    errors: &mut Vec<ConfigError>,
) -> CallSpec {
    if c.host.trim().is_empty() {
        errors.push(err(
            p.key("host"),
            "expected the host to call, e.g. host = \"ratings\"",
        ));
    }
    let path = c.path.clone().unwrap_or_else(|| "/".to_owned());
    if !path.starts_with('/') {
        errors.push(err(
            p.key("path"),
            format!("expected a path starting with '/', found \"{path}\""),
        ));
    }
    let ignore_errors = match c.on_error.as_deref() {
        None | Some("fail") => false,
        Some("ignore") => true,
        Some(o) => {
            errors.push(err(
                p.key("onError"),
                format!("expected \"fail\" or \"ignore\", found \"{o}\""),
            ));
            false
        }
    };
    let timeout = positive(&c.timeout, p.key("timeout"), errors);
    let mut propagate = Vec::new();
    for (i, h) in c.propagate.iter().enumerate() {
        if h.trim().is_empty() {
            errors.push(err(p.key("propagate").index(i), "expected a header name"));
            continue;
        }
        let n = t.name(h.trim());
        if !propagate.contains(&n) {
            propagate.push(n);
        }
    }
    let headers: Vec<(u16, u32)> = c
        .headers
        .iter()
        .map(|(k, v)| (t.name(k), t.value(v.clone())))
        .collect();
    if propagate.len() + headers.len() > MAX_HEADERS {
        errors.push(err(
            p.clone(),
            format!(
                "expected at most {MAX_HEADERS} headers in `propagate` and `headers` together, found {}",
                propagate.len() + headers.len()
            ),
        ));
        propagate.truncate(MAX_HEADERS);
    }
    let mut headers = headers;
    headers.truncate(MAX_HEADERS - propagate.len());
    CallSpec {
        edge,
        host: c.host.clone(),
        path,
        timeout,
        propagate,
        headers,
        ignore_errors,
    }
}

/// A cycle in the service graph, if any, as the services along it (first
/// repeated at the end).
fn find_cycle(graph: &[BTreeSet<usize>]) -> Option<Vec<usize>> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; graph.len()];
    let mut path = Vec::new();
    fn visit(
        s: usize,
        graph: &[BTreeSet<usize>],
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[s] = 1;
        path.push(s);
        for &n in &graph[s] {
            if state[n] == 1 {
                let start = path.iter().position(|&x| x == n).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(n);
                return Some(cycle);
            }
            if state[n] == 0
                && let Some(c) = visit(n, graph, state, path)
            {
                return Some(c);
            }
        }
        path.pop();
        state[s] = 2;
        None
    }
    (0..graph.len()).find_map(|s| {
        if state[s] == 0 {
            visit(s, graph, &mut state, &mut path)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_copies_listed_headers_then_sets_fixed_ones() {
        let mut inbound = HeaderSet::EMPTY;
        inbound.set(0, 10); // end-user
        inbound.set(1, 11); // x-other
        let spec = CallSpec {
            edge: 1,
            host: "ratings".to_owned(),
            path: "/".to_owned(),
            timeout: None,
            propagate: vec![0, 2],
            headers: vec![(3, 12)],
            ignore_errors: false,
        };
        let out = spec.outbound(&inbound);
        assert_eq!(out.get(0), Some(10));
        assert_eq!(out.get(1), None, "not listed: not forwarded");
        assert_eq!(out.get(2), None, "listed but absent inbound");
        assert_eq!(out.get(3), Some(12));
    }

    #[test]
    fn a_cycle_is_found_with_its_path() {
        let g = vec![
            BTreeSet::from([1]),
            BTreeSet::from([2]),
            BTreeSet::from([1]),
        ];
        assert_eq!(find_cycle(&g), Some(vec![1, 2, 1]));
        let dag = vec![BTreeSet::from([1, 2]), BTreeSet::from([2]), BTreeSet::new()];
        assert_eq!(find_cycle(&dag), None);
    }
}
