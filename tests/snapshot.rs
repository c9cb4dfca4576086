//! Snapshot engine tests (being written).
