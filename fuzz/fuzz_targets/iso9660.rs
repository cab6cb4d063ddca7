//! Fuzz target: parser_oracles::iso9660 (see that function for what it feeds and checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| parser_oracles::iso9660(data));
