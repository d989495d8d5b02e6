//! p2p-simnet: N peers in one process, each running the real engine from
//! p2p-core, over an in-memory network on a virtual clock.
//!
//! One thread runs everything. Each peer has its own executor, polled in a
//! fixed order with `try_tick`; when no task can run, the clock jumps to
//! the next timer. Time, randomness, spawning and storage reach the engine
//! only through core's handles ([`clock::SimRuntime`], [`net::SimTransport`],
//! [`store::MemStore`]), so the same scenario and seed replay exactly.
//!
//! ```
//! let scenario = p2p_simnet::Scenario::parse(r#"(
//!     name: "two peers",
//!     peers: [(name: "a", files: [(name: "f.bin", size: "1MiB")]), (name: "b")],
//!     timeline: [(action: Download(by: "b", name: "f.bin", from: ["a"]), expect: Ok)],
//!     expect: [Eventually(within: "10s", check: SameFile(peer: "b", name: "f.bin", as: "a"))],
//! )"#, "inline").unwrap();
//! let run = p2p_simnet::run(&scenario, p2p_simnet::Options::default());
//! assert!(run.report.passed(), "{}", run.report.human());
//! ```

pub mod clock;
pub mod net;
pub mod pages;
pub mod report;
mod run;
pub mod scenario;
pub mod store;
mod tls;
pub mod units;

pub use report::Report;
pub use run::{Options, Run, describe, file_content, run};
pub use scenario::{Scenario, ScenarioError};
