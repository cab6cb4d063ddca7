#![no_main]
//! Fuzz target: parser_oracles::scenario_toml (see that function for what it feeds and checks).

libfuzzer_sys::fuzz_target!(|data: &[u8]| parser_oracles::scenario_toml(data));
