//! The registry: services and their endpoints (ServiceEntries included),
//! gateways and listeners.

use super::*;

impl Validator {
    pub(super) fn services(&mut self, src: &t::MeshConfig) -> Vec<Service> {
        let mut out: Vec<Service> = Vec::new();
        let mut seen: BTreeMap<String, FieldPath> = BTreeMap::new();
        for (i, s) in src.service.iter().enumerate() {
            let path = FieldPath::root().key("service").named(i, &s.name);
            let namespace = ns(&s.namespace);
            if !valid_dns_label(&s.name) {
                self.err(
                    path.key("name"),
                    format!(
                        "expected a DNS label (lowercase letters, digits, '-'), found \"{}\"",
                        s.name
                    ),
                );
            }
            let host = fqdn(&s.name, &namespace);
            if let Some(first) = seen.get(&host) {
                self.err(path.key("name"), format!("duplicate service \"{host}\": already defined at {first}; give each service one [[service]] table"));
                continue;
            }
            seen.insert(host.clone(), path.clone());
            let mut endpoints = Vec::with_capacity(s.endpoints.len());
            let mut addresses = BTreeSet::new();
            for (j, e) in s.endpoints.iter().enumerate() {
                let ep = path.key("endpoints").index(j);
                if e.address.parse::<SocketAddr>().is_err() {
                    self.err(ep.key("address"), format!("expected an \"ip:port\" address such as \"10.0.0.1:9080\", found \"{}\"", e.address));
                }
                if !addresses.insert(e.address.clone()) {
                    self.err(
                        ep.key("address"),
                        format!(
                            "duplicate endpoint address \"{}\" in service \"{}\"",
                            e.address, s.name
                        ),
                    );
                }
                let weight = e.weight.unwrap_or(1);
                if weight == 0 {
                    self.err(
                        ep.key("weight"),
                        "expected an endpoint weight of at least 1 (omit it for 1)",
                    );
                }
                endpoints.push(Endpoint {
                    address: e.address.clone(),
                    labels: e.labels.clone(),
                    weight: weight.max(1),
                });
            }
            out.push(Service {
                host,
                namespace,
                port: s.port,
                endpoints,
                external: false,
                http2: false,
            });
        }
        for (i, se) in src.service_entry.iter().enumerate() {
            let path = FieldPath::root().key("serviceEntry").named(i, &se.name);
            let namespace = ns(&se.namespace);
            let external = match se.location.as_deref() {
                None | Some("MESH_EXTERNAL") => true,
                Some("MESH_INTERNAL") => false,
                Some(other) => {
                    self.err(
                        path.key("location"),
                        format!("expected MESH_EXTERNAL or MESH_INTERNAL, found \"{other}\""),
                    );
                    true
                }
            };
            if let Some(r) = se.resolution.as_deref()
                && !matches!(r, "NONE" | "STATIC" | "DNS" | "DNS_ROUND_ROBIN")
            {
                self.err(
                    path.key("resolution"),
                    format!("expected NONE, STATIC, DNS or DNS_ROUND_ROBIN, found \"{r}\""),
                );
            }
            let Some(port) = se.ports.first() else {
                self.err(path.key("ports"), "expected at least one port, e.g. ports = [{ number = 443, name = \"https\", protocol = \"TLS\" }]");
                continue;
            };
            if se.hosts.is_empty() {
                self.err(path.key("hosts"), "expected at least one host");
            }
            // Istio's `protocol.Parse` (case-insensitive) and `IsHTTP2`.
            let http2 = port.protocol.as_deref().is_some_and(|p| {
                ["HTTP2", "GRPC", "GRPC-WEB"]
                    .iter()
                    .any(|h| p.eq_ignore_ascii_case(h))
            });
            for (h, host) in se.hosts.iter().enumerate() {
                let host = fqdn(host, &namespace);
                if let Some(first) = seen.get(&host) {
                    self.err(
                        path.key("hosts").index(h),
                        format!("duplicate host \"{host}\": already defined at {first}"),
                    );
                    continue;
                }
                seen.insert(host.clone(), path.clone());
                let endpoints = se
                    .endpoints
                    .iter()
                    .map(|e| {
                        let p = port.name.as_ref().and_then(|n| e.ports.get(n)).copied();
                        let p = p.or(port.target_port).unwrap_or(port.number);
                        Endpoint {
                            address: if e.address.contains(':') && !e.address.contains('.') {
                                format!("[{}]:{p}", e.address)
                            } else {
                                format!("{}:{p}", e.address)
                            },
                            labels: e.labels.clone(),
                            weight: e.weight.unwrap_or(1).max(1),
                        }
                    })
                    .collect();
                out.push(Service {
                    host,
                    namespace: namespace.clone(),
                    port: port.number,
                    endpoints,
                    external,
                    http2,
                });
            }
        }
        out
    }

    pub(super) fn gateways(&mut self, src: &t::MeshConfig) -> Vec<String> {
        let mut out = Vec::new();
        for (i, g) in src.gateway.iter().enumerate() {
            let path = FieldPath::root().key("gateway").named(i, &g.name);
            let name = format!("{}/{}", ns(&g.namespace), g.name);
            if out.contains(&name) {
                self.err(path.key("name"), format!("duplicate gateway \"{name}\""));
            }
            if g.servers.is_empty() {
                self.err(path.key("servers"), "expected at least one server");
            }
            for (j, s) in g.servers.iter().enumerate() {
                if s.hosts.is_empty() {
                    self.err(
                        path.key("servers").index(j).key("hosts"),
                        "expected at least one host (\"*\" for any)",
                    );
                }
            }
            out.push(name);
        }
        out
    }

    /// `meshproxy` listeners: an `ip:port` each, no address twice, and a
    /// gateway that exists.
    pub(super) fn listeners(&mut self, src: &t::MeshConfig, gateways: &[String]) {
        let mut seen = BTreeSet::new();
        for (i, l) in src.listener.iter().enumerate() {
            let path = FieldPath::root().key("listener").index(i);
            match l.address.parse::<std::net::SocketAddr>() {
                Ok(a) if a.port() != 0 && !seen.insert(a) => self.err(
                    path.key("address"),
                    format!("duplicate listener address \"{}\"", l.address),
                ),
                Ok(_) => {}
                Err(_) => self.err(
                    path.key("address"),
                    format!(
                        "expected an ip:port such as \"127.0.0.1:8080\", found \"{}\"",
                        l.address
                    ),
                ),
            }
            if let Some(g) = &l.gateway {
                let name = if g.contains('/') {
                    g.clone()
                } else {
                    format!("{}/{g}", ns(&l.namespace))
                };
                if !gateways.contains(&name) {
                    self.err(
                        path.key("gateway"),
                        format!(
                            "no [[gateway]] named \"{name}\"; declare it, or drop `gateway` to act as the mesh sidecar"
                        ),
                    );
                }
            }
        }
    }
}
