//! Fuzz target: parser_oracles::nova_request (see that function for what it feeds and checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| parser_oracles::nova_request(data));
