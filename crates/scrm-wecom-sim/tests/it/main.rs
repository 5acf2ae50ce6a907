//! Integration tests: raw HTTP against a simulator on port 0, checking WeCom's shapes,
//! cursors, errcodes, limits, faults, mass sends, deliveries and callbacks.

mod helpers;

mod callbacks;
mod contacts;
mod external;
mod faults;
mod mass_send;
mod misc;
mod scale;
mod tags_groups;
mod tokens;
