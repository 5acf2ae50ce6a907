//! scrm-jobs on every backend `SCRM_TEST_DB` selects, with a manual clock: no test sleeps for
//! real except to wait (with a timeout) for the engine to react.

mod support;

mod control;
mod engine;
mod schedule;
mod wake;
