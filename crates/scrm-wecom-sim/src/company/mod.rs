//! The simulated company: its data model ([`model`]), how it is generated from a seed
//! ([`generate`]) and the deterministic names and ids ([`names`]).

pub mod generate;
pub mod model;
pub mod names;

pub use generate::{GEN_EPOCH, generate};
pub use model::*;
