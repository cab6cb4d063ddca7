#![no_main]
//! Fuzz target: parser_oracles::nova_query (see that function for what it feeds and checks).

libfuzzer_sys::fuzz_target!(|data: &[u8]| parser_oracles::nova_query(data));
