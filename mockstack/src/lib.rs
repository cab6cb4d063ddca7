//! mockstack: an in-process, stateful mock of Keystone v3, Glance v2 and Nova v2.1 with a simulated libvirt driver.
//!
//! A library first: tests call [`MockStack::start`] on `127.0.0.1:0` and get its URL back;
//! `isoharness mock` serves the same router on a fixed port.

pub mod admin;
pub mod auth;
pub mod clock;
pub mod error;
pub mod faults;
pub mod glance;
pub mod identity;
pub mod journal;
pub mod keystone;
pub mod nova;
mod python;
mod query;
pub mod server;
pub mod state;
pub mod webob;

pub use clock::{Clock, ClockMode};
pub use guestsim::Layout;
pub use identity::IdentitySet;
pub use server::{MockStack, router};
pub use state::{AppState, Config};
