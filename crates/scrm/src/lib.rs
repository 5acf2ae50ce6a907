//! scrm
