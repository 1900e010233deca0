//! `haven-load`: load scenarios for the Haven signaling server.
//!
//! Every scenario takes a [`target::Target`] (an address, an API key and a program's HS256
//! secret), so the same code runs against the release binary that [`launch`] starts pinned to a
//! core, against a server someone else runs (`--target`), and against a server started
//! in-process by the smoke tests. [`reference`] is the simplest correct WebSocket broadcast
//! server, the yardstick for fan-out.

pub mod launch;
pub mod net;
pub mod procfs;
pub mod reference;
pub mod report;
pub mod scenarios;
pub mod stats;
pub mod target;
pub mod token;

pub use target::{Target, TargetKind};
