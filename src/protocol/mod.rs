//! The signaling protocol: JSON text frames on `/v1/signal`.
//!
//! These Rust types are the single source of the protocol: `proto/schema.json` is generated from
//! them (see [`schema`]) and the web client's types from that schema.

pub mod error;
pub mod format;
pub mod ids;
pub mod messages;
pub mod schema;

#[cfg(test)]
mod fuzz;

pub use error::{ErrorCode, ProtocolError};
pub use format::{AgendaItem, AgendaView, FormatSpec, GoAroundWho, Segment, SegmentRules, SegmentView, WhoMayUnmute};
pub use ids::ParticipantId;
pub use messages::*;
