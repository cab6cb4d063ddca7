//! The guest-OS matrix: every scenario against every layout, with expected outcomes derived from rules.

pub mod report;
pub mod run;
pub mod twin;

pub use report::{Cell, MatrixFormat, MatrixReport};
pub use run::MatrixMedia;
