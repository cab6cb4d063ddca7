//! The OpenStack cloud client: clouds.yaml and OS_* configuration, Keystone v3 auth, catalog, retries and typed Glance/Nova calls (placeholder until it lands).
