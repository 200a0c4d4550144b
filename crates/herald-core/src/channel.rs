//! Channel names (docs/protocol.md §1): 1–255 bytes of `A-Z a-z 0-9 _ - . : @ / =`; the part before
//! the first `:` is the namespace.

use std::{fmt, sync::Arc};

/// The longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 255;

/// A validated channel name. Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

/// Why a string is not a channel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidChannel {
    /// The name is empty.
    #[error("channel name is empty")]
    Empty,
    /// The name is longer than [`MAX_CHANNEL_LEN`] bytes.
    #[error("channel name is {0} bytes long; the limit is 255")]
    TooLong(usize),
    /// The name holds a byte outside the allowed set.
    #[error("channel name contains {0:?}; allowed are A-Z a-z 0-9 _ - . : @ / =")]
    BadCharacter(char),
}

/// Whether `b` may appear in a channel name.
pub const fn is_channel_byte(b: u8) -> bool {
    matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b':' | b'@' | b'/' | b'=')
}

// === impl ChannelName ===

impl ChannelName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, InvalidChannel> {
        if name.is_empty() {
            return Err(InvalidChannel::Empty);
        }
        if name.len() > MAX_CHANNEL_LEN {
            return Err(InvalidChannel::TooLong(name.len()));
        }
        // Bytes, not chars: every allowed byte is ASCII, so a name of allowed bytes is valid
        // and any other byte (a UTF-8 lead or continuation byte too) makes it invalid.
        if !name.bytes().all(is_channel_byte) {
            let bad = name.chars().find(|c| !c.is_ascii() || !is_channel_byte(*c as u8));
            return Err(InvalidChannel::BadCharacter(bad.unwrap_or(char::REPLACEMENT_CHARACTER)));
        }
        Ok(Self(Arc::from(name)))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace: the part before the first `:`, or `""` when there is none.
    pub fn namespace(&self) -> &str {
        self.0.split_once(':').map_or("", |(ns, _)| ns)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for ChannelName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ChannelName {
    type Err = InvalidChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        let name = "AZaz09_-.:@/=";
        assert_eq!(ChannelName::new(name).map(|c| c.to_string()), Ok(name.to_string()));
        assert!(ChannelName::new(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_foreign_bytes() {
        assert_eq!(ChannelName::new(""), Err(InvalidChannel::Empty));
        assert_eq!(ChannelName::new(&"a".repeat(256)), Err(InvalidChannel::TooLong(256)));
        assert_eq!(ChannelName::new("a b"), Err(InvalidChannel::BadCharacter(' ')));
        assert_eq!(ChannelName::new("a,b"), Err(InvalidChannel::BadCharacter(',')));
        assert_eq!(ChannelName::new("jobsé"), Err(InvalidChannel::BadCharacter('é')));
        assert_eq!(ChannelName::new("a\nb"), Err(InvalidChannel::BadCharacter('\n')));
    }

    #[test]
    fn namespace_is_the_part_before_the_first_colon() {
        let ns = |s: &str| ChannelName::new(s).map(|c| c.namespace().to_string());
        assert_eq!(ns("chat:room:1"), Ok("chat".into()));
        assert_eq!(ns("jobs"), Ok(String::new()));
        assert_eq!(ns(":x"), Ok(String::new()));
    }
}
