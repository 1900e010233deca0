//! Haven: a server for moderated online peer-support group meetings.
//!
//! The map of the code is in `ARCHITECTURE.md`. In short: [`room`] holds every meeting rule,
//! sans-IO; [`meeting`] runs one actor per live meeting; [`signal`] is the WebSocket edge;
//! [`api`] the HTTP API; [`auth`] programs and join tokens; [`store`] persistence.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod attendance;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod journal;
pub mod meeting;
pub mod metrics;
pub mod protocol;
pub mod room;
pub mod series;
pub mod sfu;
pub mod signal;
pub mod store;
pub mod turn;
pub mod web;
pub mod webhooks;

pub use app::Server;
pub use config::Config;
