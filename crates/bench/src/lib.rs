//! Benchmark and torture programs for fleetdb (the `fleetdb-bench` binary is a thin shell
//! over these modules).
//!
//! Architecture invariant: benchmarks print figures; they never assert timings. Tests that use
//! these programs (the crash test) assert behaviour only.

pub mod crash_writer;
pub mod fetch_bench;
pub mod inventory_bench;
pub mod stats;
pub mod store_bench;
