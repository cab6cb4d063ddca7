//! Fuzz target: parser_oracles::fat_floppy (see that function for what it feeds and checks).
#![no_main]
//!
//! libFuzzer's panic hook aborts on every panic, before any unwinding. `FloppyImage::from_bytes` deliberately catches
//! the panics of the fatfs crate (its unchecked cluster arithmetic on corrupt images) and turns them into errors, so
//! here a panic raised inside fatfs is left to unwind into that catch; a panic anywhere else still aborts.

use std::panic::{self, PanicHookInfo};

fn raised_in_fatfs(info: &PanicHookInfo<'_>) -> bool {
    info.location().is_some_and(|at| at.file().contains("/fatfs-"))
}

libfuzzer_sys::fuzz_target!(
    init: {
        let abort_on_panic = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !raised_in_fatfs(info) {
                abort_on_panic(info);
            }
        }));
    },
    |data: &[u8]| parser_oracles::fat_floppy(data)
);
