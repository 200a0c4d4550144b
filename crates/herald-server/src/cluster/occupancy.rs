//! Who holds what across nodes, for webhooks ([`crate::webhooks`]): per subject one sorted set
//! of the nodes that hold it, each with a lease expiry, so that exactly one node sees the first
//! hold of a subject (and sends its up event) and exactly one the last release (its down).
//!
//! Key: `<prefix>{<tag>}<rest>` — the subject's hash tag keeps a channel's subjects on its
//! slot. A node renews its leases while it holds ([`Cluster::occupy`] with `Renew`); the
//! entry of a node that died without a word leaves with its lease, so the others still see
//! the last release of a subject they share with it.

use herald_core::ProtocolError;

use super::Cluster;

/// What a node tells Redis about a subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Occupy {
    /// It holds it from now on.
    Up,
    /// It still holds it (pushes its lease back).
    Renew,
    /// It let it go.
    Down,
}

/// Drops expired leases, then applies `ARGV[4]` (`up`, `renew`, `down`) for node `ARGV[1]` at
/// `ARGV[2]` (ms), its lease ending at `ARGV[3]`, the key living `ARGV[5]` ms. Returns 1 when
/// this was the subject's first hold (`up`) or last release (`down`) over all nodes.
const OCCUPY: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if ARGV[4] == 'down' then
  local removed = redis.call('ZREM', KEYS[1], ARGV[1])
  if removed == 1 and redis.call('ZCARD', KEYS[1]) == 0 then return 1 end
  return 0
end
local added = redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if ARGV[4] == 'up' and added == 1 and redis.call('ZCARD', KEYS[1]) == 1 then return 1 end
return 0
";

// === impl Cluster: occupancy ===

impl Cluster {
    /// Applies `op` for this node to the subject `tag` / `rest`, with a lease of `lease_ms`;
    /// whether it was the subject's first hold (`Up`) or last release (`Down`) over all nodes.
    pub async fn occupy(&self, tag: &str, rest: &str, op: Occupy, lease_ms: u64) -> Result<bool, ProtocolError> {
        let now = crate::now_ms();
        let mut invocation = self.occupy_script.prepare_invoke();
        invocation
            .key(format!("{}{{{tag}}}{rest}", self.keys.prefix()))
            .arg(&*self.node)
            .arg(now)
            .arg(now + lease_ms)
            .arg(match op {
                Occupy::Up => "up",
                Occupy::Renew => "renew",
                Occupy::Down => "down",
            })
            .arg(lease_ms);
        let first_or_last: i64 = self.timed(self.commands.invoke(&invocation)).await?;
        Ok(first_or_last == 1)
    }
}

/// The script of [`Cluster::occupy`].
pub(super) fn script() -> redis::Script {
    redis::Script::new(OCCUPY)
}
