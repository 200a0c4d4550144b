//! Comma-separated lists, as cursors, `?channel=a,b` and header values carry them.

/// The items of the comma-separated `list`, in order, empty ones included: what
/// `list.split(',')` yields. A byte search, since the lists here are a few dozen bytes and
/// `split(',')` costs more in setting up its searcher than in searching them (every long poll
/// splits two).
pub fn comma_items(list: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(list);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.bytes().position(|b| b == b',') {
            Some(at) => {
                rest = Some(&text[at + 1..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_as_str_split_does() {
        for list in ["", ",", "a", "a,b", "a,,b", ",a,", "jobs~k3j2~43,chat:room/1~A9~0", "é,ü"] {
            assert_eq!(comma_items(list).collect::<Vec<_>>(), list.split(',').collect::<Vec<_>>(), "{list:?}");
        }
    }
}
