//! Herald's connection tokens and channel permissions, with no I/O and no clock (callers pass
//! the time).
//!
//! - [`Verifier`] checks a JWT against the keys from configuration (HS256 secret, RS256 and
//!   ES256 public keys in PEM) and turns its claims into an [`Identity`];
//! - [`Pattern`] is a channel pattern from a token's `channels` / `publish` claims (`chat:*`);
//! - [`mint_hs256`] makes development tokens (`herald token`);
//! - [`NamespaceRules`] decides what a client (with or without a token) may do on a channel.
//!
//! Claims (the README, "Tokens, permissions and limits"): `sub` (user id, required), `exp`
//! (seconds since the Unix epoch, required), `channels` (patterns the user may subscribe to),
//! `publish` (patterns the user may publish to), `info` (public data shown in presence).

mod pattern;
mod policy;
mod token;

pub use pattern::Pattern;
pub use policy::{Action, Denied, NamespaceRules};
pub use token::{AuthError, Claims, Identity, KeyConfig, Verifier, mint_hs256};
