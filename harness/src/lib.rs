//! isoharness: build OpenStack guest images from installation ISOs, and validate them, against a real cloud or mockstack.

pub mod build_cmd;
pub mod check_xml_cmd;
pub mod cli;
pub mod cloud;
pub mod domxml;
pub mod driver;
pub mod inspect;
pub mod matrix;
pub mod matrix_cmd;
pub mod media_cmd;
pub mod mock_cmd;
pub mod scenario;
pub mod target;
pub mod workflow;
