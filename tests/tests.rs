//! Top-level integration tests of the `encrypt-repo` package (an index of test modules, as
//! ripgrep keeps it). The format crate has its own suites under `crates/format/tests/`.

mod cli;
mod clouds;
mod golden;
mod providers;
mod recover;
mod snapshot;
