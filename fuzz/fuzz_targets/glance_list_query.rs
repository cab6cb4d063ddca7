//! Fuzz target: parser_oracles::glance_list_query (see that function for what it feeds and checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| parser_oracles::glance_list_query(data));
