//! The libvirt domain XML validator: its own parse of a domain into a device model, checked against an ISO-install layout (placeholder until it lands).
