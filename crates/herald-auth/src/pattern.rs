//! Channel patterns: a channel name in which `*` stands for any run of characters
//! (`chat:*` grants every channel of the `chat` namespace, `*` grants all, `user:42` one).

use std::fmt;

/// A channel pattern. Matching is exact except for `*`, which matches any run of characters
/// (including none). The zero value matches nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pattern {
    /// The literal pieces between `*`s; empty: the pattern matches nothing.
    pieces: Vec<String>,
    /// Whether the pattern ends with `*` (a leading `*` is an empty first piece).
    open_end: bool,
}

// === impl Pattern ===

impl Pattern {
    /// Reads a pattern (any text; only `*` is special).
    pub fn new(text: &str) -> Self {
        if text.is_empty() {
            return Self::default();
        }
        Self { pieces: text.split('*').map(str::to_string).collect(), open_end: text.ends_with('*') }
    }

    /// Whether `channel` matches.
    pub fn matches(&self, channel: &str) -> bool {
        let Some((first, rest)) = self.pieces.split_first() else { return false };
        if rest.is_empty() {
            return first == channel;
        }
        let Some(mut remaining) = channel.strip_prefix(first.as_str()) else { return false };
        let (middle, last) = rest.split_at(rest.len() - 1);
        for piece in middle {
            match remaining.find(piece.as_str()) {
                Some(at) => remaining = &remaining[at + piece.len()..],
                None => return false,
            }
        }
        // The last piece is empty when the pattern ends with `*`: anything may follow.
        self.open_end || last.iter().all(|piece| remaining.ends_with(piece.as_str()))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pieces.join("*"))
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn star_matches_any_run_and_the_rest_is_exact() {
        let cases = [
            ("chat:*", "chat:lobby", true),
            ("chat:*", "chat:", true),
            ("chat:*", "chatroom", false),
            ("chat:*", "news:chat:x", false),
            ("*", "anything", true),
            ("user:42", "user:42", true),
            ("user:42", "user:421", false),
            ("*:private", "a:private", true),
            ("*:private", "a:private:no", false),
            ("a*b*c", "a-x-b-y-c", true),
            ("a*b*c", "a-x-c-y-b", false),
            ("a*bc", "abc", true),
            ("ab*bc", "abc", false),
            ("", "", false),
            ("", "x", false),
        ];
        for (pattern, channel, expected) in cases {
            assert_eq!(Pattern::new(pattern).matches(channel), expected, "{pattern} ~ {channel}");
        }
    }

    #[test]
    fn a_pattern_shows_as_written() {
        assert_eq!(Pattern::new("chat:*").to_string(), "chat:*");
    }
}
