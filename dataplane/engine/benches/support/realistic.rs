// Shared by the `decide` benchmark and the no-allocation test: a realistic
// mesh (5 services × 3 subsets × 2 pods = 30 endpoints; 5 VirtualServices
// with 10 http routes using header + prefix matches and 3 weighted subsets).

/// The mesh config; `lb` is the DestinationRules' `loadBalancer` table body.
pub(crate) fn realistic_config(lb: &str) -> String {
    let mut s = String::new();
    let services = ["reviews", "ratings", "details", "cart", "checkout"];
    for (i, name) in services.iter().enumerate() {
        s.push_str(&format!(
            "[[service]]\nname = \"{name}\"\nport = 9080\nendpoints = [\n"
        ));
        for (v, version) in ["v1", "v2", "v3"].iter().enumerate() {
            for pod in 0..2 {
                s.push_str(&format!(
                    "  {{ address = \"10.{i}.{v}.{pod}:9080\", labels = {{ version = \"{version}\" }} }},\n"
                ));
            }
        }
        s.push_str("]\n\n");
        s.push_str(&format!(
            "[[destinationRule]]\nname = \"{name}\"\nhost = \"{name}\"\nsubsets = [\n  {{ name = \"v1\", labels = {{ version = \"v1\" }} }},\n  {{ name = \"v2\", labels = {{ version = \"v2\" }} }},\n  {{ name = \"v3\", labels = {{ version = \"v3\" }} }},\n]\ntrafficPolicy = {{ loadBalancer = {{ {lb} }} }}\n\n"
        ));
        s.push_str(&format!(
            "[[virtualService]]\nname = \"{name}\"\nhosts = [\"{name}\"]\n\
             [[virtualService.http]]\nmatch = [{{ headers = {{ x-user = {{ prefix = \"beta-\" }} }}, uri = {{ prefix = \"/api/v2\" }} }}]\n\
             route = [{{ destination = {{ host = \"{name}\", subset = \"v3\" }} }}]\n\
             [[virtualService.http]]\nroute = [\n  {{ destination = {{ host = \"{name}\", subset = \"v1\" }}, weight = 70 }},\n  {{ destination = {{ host = \"{name}\", subset = \"v2\" }}, weight = 20 }},\n  {{ destination = {{ host = \"{name}\", subset = \"v3\" }}, weight = 10 }},\n]\n\n"
        ));
    }
    s
}

/// Headers of a typical request that misses the header route.
pub(crate) const HEADERS: [(&str, &str); 8] = [
    ("user-agent", "fortio.org/fortio-1.69.0"),
    ("accept", "*/*"),
    ("x-request-id", "4c0a5bd1-2d7c-4f5e-9b4e-3d2f1c0b9a87"),
    ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
    ("x-b3-spanid", "e457b5a2e4d86bd1"),
    ("x-b3-sampled", "1"),
    ("x-user", "user-1234"),
    ("content-length", "0"),
];
