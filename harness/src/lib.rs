//! isoharness: build OpenStack guest images from installation ISOs, and validate them, against a real cloud or mockstack.
//!
//! The library computes and returns; it prints nothing. The `isoharness` binary (`src/main.rs`, its `cli` and
//! `commands` modules) parses the command line, prints reports and errors, and ends with an [`exit::ExitStatus`].

pub mod cloud;
pub mod domxml;
pub mod driver;
pub mod exit;
pub mod inspect;
pub mod matrix;
pub mod scenario;
pub mod target;
pub mod workflow;
