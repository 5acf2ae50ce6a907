//! scrm-jobs
