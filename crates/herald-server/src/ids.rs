//! Identifiers: maps keyed by connection id, and the random ids the server makes (epochs,
//! stream ids, node ids, generated API keys).

/// A map keyed by connection id, hashed cheaply (ids are sequential numbers the server
/// assigns, not input an attacker chooses).
pub type ById<V> = std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Hashes a connection id with one multiplication (Fibonacci hashing), which spreads
/// sequential ids over the high bits hashbrown uses.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// `len` random ASCII letters and digits: safe in URLs, JSON, HTTP headers and Redis keys.
pub fn random_id(len: usize) -> String {
    use rand::{Rng as _, distr::Alphanumeric};
    rand::rng().sample_iter(Alphanumeric).take(len).map(char::from).collect()
}
