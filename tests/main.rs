//! End-to-end tests of the real `p2p` binary: servers are real processes
//! on 127.0.0.1 with ephemeral ports, driven the way a user would.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub, dead_code)]

#[macro_use]
mod common;

mod commands;
mod failures;
mod hostile_index;
mod index;
mod integrity;
mod local;
mod lockout;
mod serve;
mod shell;
mod swarm;
mod tls;
mod usage;
