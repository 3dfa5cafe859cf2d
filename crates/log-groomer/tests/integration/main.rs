//! Integration tests: the real binary on real trees, with real signals.

mod util;

mod cap;
mod clean_logs;
mod layout;
mod races;
mod safety;
mod signals;
