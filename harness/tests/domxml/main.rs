//! Integration tests of the domain XML validator: the case table, report snapshots, the `check-xml` CLI, properties, and libvirt's schema.

mod cases;
mod cli;
mod props;
mod schema;
mod snapshots;
mod support;
