//! Query strings (`application/x-www-form-urlencoded`): the pairs of a request target's query.
//!
//! Every long poll and SSE stream reads its query once (channels, cursor and token together),
//! and other routes look up their `token`, so this is on the hot path. Parts without `%` or `+` — nearly all of them: channel names, cursors,
//! numbers and JWTs need no escaping — are borrowed as they are, with no copy; escaped parts
//! are decoded as `form_urlencoded::parse` decodes them (`+` is a space, invalid UTF-8 becomes
//! U+FFFD).

use std::borrow::Cow;

/// The `key=value` pairs of `query`, in order, decoded; empty pairs are skipped and a pair
/// without `=` has an empty value.
pub fn pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    raw_pairs(query).map(|(key, value)| (key.decode(), value.decode()))
}

/// The value of the first `key` pair in `query`. Only that value is decoded.
pub fn find<'q>(query: &'q str, key: &str) -> Option<Cow<'q, str>> {
    raw_pairs(query)
        .find(|(raw, _)| if raw.plain { raw.text == key } else { raw.decode() == key })
        .map(|(_, v)| v.decode())
}

/// A key or a value as it is written, and whether it reads the same decoded.
struct Part<'q> {
    text: &'q str,
    /// Without `%` or `+`.
    plain: bool,
}

impl<'q> Part<'q> {
    fn decode(&self) -> Cow<'q, str> {
        if self.plain {
            return Cow::Borrowed(self.text);
        }
        let spaced = self.text.replace('+', " ");
        Cow::Owned(percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned())
    }
}

/// The pairs of `query` as they are written, in one pass over its bytes. (A byte loop: queries
/// are short, and `str::split` costs more in setting up its searcher than in searching them.)
fn raw_pairs(query: &str) -> impl Iterator<Item = (Part<'_>, Part<'_>)> {
    let mut rest = query;
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let (mut equals, mut end) = (None, rest.len());
            let (mut key_plain, mut value_plain) = (true, true);
            for (i, b) in rest.bytes().enumerate() {
                match b {
                    b'&' => {
                        end = i;
                        break;
                    }
                    b'=' if equals.is_none() => equals = Some(i),
                    b'%' | b'+' if equals.is_none() => key_plain = false,
                    b'%' | b'+' => value_plain = false,
                    _ => {}
                }
            }
            let pair = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or("");
            if !pair.is_empty() {
                let (key, value) = match equals {
                    Some(at) => (&pair[..at], &pair[at + 1..]),
                    None => (pair, ""),
                };
                return Some((Part { text: key, plain: key_plain }, Part { text: value, plain: value_plain }));
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_as_form_urlencoded_does() {
        for query in [
            "",
            "channel=a&channel=b,c&cursor=a~e1~4&timeout=5",
            "&&channel=a&&",
            "token=eyJh.eyJz.c2ln&x",
            "a=b=c&=v&k=",
            "name=hello+world&q=%E2%9C%93%2B%26&bad=%ff%zz%",
            "key%3D=v%20w&plus+key=1",
        ] {
            let ours: Vec<(String, String)> = pairs(query).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            let theirs: Vec<(String, String)> =
                form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            assert_eq!(ours, theirs, "{query}");
        }
    }

    #[test]
    fn unescaped_parts_are_borrowed() {
        let (key, value) = pairs("cursor=a~e1~4").next().expect("a pair");
        assert!(matches!(key, Cow::Borrowed("cursor")));
        assert!(matches!(value, Cow::Borrowed("a~e1~4")));
        assert_eq!(find("a=1&token=t%2B&token=2", "token").as_deref(), Some("t+"));
        assert_eq!(find("a=1", "token"), None);
    }
}
