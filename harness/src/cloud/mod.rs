//! The OpenStack cloud client: clouds.yaml and OS_* configuration, Keystone v3 auth, catalog, retries and typed Glance/Nova calls.

pub mod config;
pub mod secret;

pub use config::{AuthMethod, CloudConfig, ConfigError, ConfigRequest};
pub use secret::Secret;
