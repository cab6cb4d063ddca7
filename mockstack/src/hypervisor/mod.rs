//! The simulated libvirt compute host: disk mapping per layout, domain XML, disk files and the simulated installer (placeholder until the hypervisor module lands).
