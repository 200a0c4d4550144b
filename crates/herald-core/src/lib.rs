//! Herald's stream logic, with no I/O and no clock.
//!
//! This crate owns everything that decides *what* a client receives:
//!
//! - [`channel`]: channel names and namespaces (docs/protocol.md §1);
//! - [`stream`]: one channel's stream — epoch, gap-free offsets, the bounded history window and
//!   the recovery decision (docs/protocol.md §2);
//! - [`streams`]: a channel's open streams — messages written a piece at a time (token
//!   streams) before they become one message;
//! - [`mirror`]: a node's copy of a stream kept elsewhere (the Redis engine): merging what
//!   pub/sub delivers and catching up from snapshots, never with a silent gap;
//! - [`cursor`]: the opaque cursor that resumes every channel of an SSE or long-poll stream;
//! - [`forgotten`]: the positions of channels an engine forgot while they were quiet, so that
//!   a channel keeps its epoch and offsets when it comes back;
//! - [`occupancy`]: who is here — the moments a user comes online, a channel becomes occupied
//!   or a member joins, and when they leave after a grace delay (webhooks);
//! - [`list`]: comma-separated lists, as cursors and queries carry them;
//! - [`rate`]: token buckets for per-IP and per-connection rate limits;
//! - [`protocol`]: the wire vocabulary shared by every transport — WebSocket commands, error
//!   codes, disconnect codes and the JSON shapes of pushes.
//!
//! Time is always passed in as milliseconds since the Unix epoch, and randomness (new epochs)
//! is supplied by the caller, so every decision here is deterministic and tested as such.

pub mod channel;
pub mod cursor;
pub mod forgotten;
pub mod list;
pub mod mirror;
pub mod occupancy;
pub mod protocol;
pub mod rate;
pub mod stream;
pub mod streams;

pub use channel::{ChannelName, InvalidChannel};
pub use cursor::{Cursor, InvalidCursor};
pub use protocol::{Command, DisconnectCode, ErrorCode, ProtocolError, Request};
pub use rate::{RateLimit, TokenBucket};
pub use stream::{ChannelStream, HistoryLimits, HistoryQuery, Recovery, ResetReason, Start, StreamPosition};
