//! Benchmark and torture programs for fleetdb (the `fleetdb-bench` binary is a thin shell
//! over these modules).
//!
//! Architecture invariant: benchmarks print figures; they never assert timings. Tests that use
//! these programs (the crash test) assert behaviour only.

pub mod agents_bench;
pub mod api_bench;
pub mod crash_writer;
pub mod fetch_bench;
pub mod h2client;
pub mod history_bench;
pub mod hosts;
pub mod inventory_bench;
pub mod replicas_bench;
pub mod rollout_bench;
pub mod schema_bench;
pub mod server_process;
pub mod stats;
pub mod store_bench;
pub mod ui_bench;
