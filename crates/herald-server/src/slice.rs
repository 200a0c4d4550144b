//! A walk over sharded tables cut into slices, so that no periodic walk touches everything
//! in one instant (see [`crate::housekeeping`], which runs the walks).

/// Ticks per heartbeat interval; each walks 1/`SLICES` of the shards.
pub const SLICES: usize = 64;

/// One slice of a walk: the `index`-th of [`SLICES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice(pub usize);

// === impl Slice ===

impl Slice {
    /// The shards of `total` this slice walks: those whose index is this slice's, modulo
    /// [`SLICES`] (every shard belongs to exactly one slice).
    pub fn shards(self, total: usize) -> impl Iterator<Item = usize> {
        (self.0..total).step_by(SLICES)
    }
}
