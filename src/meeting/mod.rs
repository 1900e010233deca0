//! Live meetings: one actor task per meeting owns its [`Room`](crate::room::Room); the registry
//! maps meeting ids to actor handles; the store writer persists what actors record.

pub mod actor;
pub mod registry;
pub mod store_writer;

pub use actor::{ActorMsg, CloseReason, ConnHandle, JoinFailure, Outbound};
pub use registry::{RoomHandle, Rooms};
