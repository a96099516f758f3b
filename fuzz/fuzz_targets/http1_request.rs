#![no_main]
//! meshproxy's HTTP/1.1 codec: see `mesh_proxy::fuzz::request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mesh_proxy::fuzz::request(data));
