//! Leases: one node at a time holds a named lease (a consumer's, [`crate::consumers`]), so
//! that a source is read by one node while several share Redis. A lease is a key holding the
//! holder's node id with an expiry; the holder renews it, and a node that dies without a word
//! loses it when it expires, so another takes over.
//!
//! Key: `<prefix>lease:<name>`.

use herald_core::ProtocolError;

use super::Cluster;

/// Takes the lease `KEYS[1]` for node `ARGV[1]` for `ARGV[2]` ms when it is free, or renews it
/// when the node holds it; with `ARGV[3] == 'release'`, lets it go if the node holds it.
/// Returns 1 when the node holds it afterwards.
const LEASE: &str = r"
local holder = redis.call('GET', KEYS[1])
if ARGV[3] == 'release' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

// === impl Cluster: leases ===

impl Cluster {
    /// Takes or renews the lease `name` for this node for `lease_ms`; whether the node holds
    /// it now.
    pub async fn hold_lease(&self, name: &str, lease_ms: u64) -> Result<bool, ProtocolError> {
        self.lease(name, lease_ms, "hold").await
    }

    /// Lets the lease `name` go, if this node holds it (another node may take it at once).
    pub async fn release_lease(&self, name: &str) -> Result<(), ProtocolError> {
        self.lease(name, 1, "release").await.map(drop)
    }

    async fn lease(&self, name: &str, lease_ms: u64, op: &str) -> Result<bool, ProtocolError> {
        let mut invocation = self.lease_script.prepare_invoke();
        invocation.key(format!("{}lease:{name}", self.keys.prefix())).arg(&*self.node).arg(lease_ms).arg(op);
        let held: i64 = self.timed(self.commands.invoke(&invocation)).await?;
        Ok(held == 1)
    }
}

/// The script of [`Cluster::hold_lease`].
pub(super) fn script() -> redis::Script {
    redis::Script::new(LEASE)
}
