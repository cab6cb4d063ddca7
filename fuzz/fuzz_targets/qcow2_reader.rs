//! Fuzz target: parser_oracles::qcow2_reader (see that function for what it feeds and checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| parser_oracles::qcow2_reader(data));
