//! Live meetings: one actor task per meeting owns its [`Room`](crate::room::Room); the registry
//! maps meeting ids to actor handles. What actors record goes to the journal (`crate::journal`).

pub mod actor;
pub mod conn;
pub mod registry;

pub use actor::{ActorMsg, CloseReason, ConnHandle, JoinFailure, Outbound};
pub use conn::{outbound_queue, OutboundRx, OutboundTx};
pub use registry::{RoomHandle, Rooms};
