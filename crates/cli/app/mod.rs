//! The binary's modules: argument definitions, repository opening, commands, output and exit
//! codes. The library half of the package (crates/cli/lib.rs) holds what tests and other
//! programs can call: the provider registry and the snapshot (backup/restore) engine.

pub(crate) mod args;
pub(crate) mod audit;
pub(crate) mod bench;
pub(crate) mod commands;
pub(crate) mod exit;
pub(crate) mod listing;
pub(crate) mod open;
pub(crate) mod output;
pub(crate) mod source;
pub(crate) mod staging;
