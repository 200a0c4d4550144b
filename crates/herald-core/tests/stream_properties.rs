//! Property tests of the stream logic: cursors round-trip, parsing never panics, and a client
//! that disconnects and comes back at any moment gets every message exactly once, in order,
//! or an explicit reset — never a gap, never a duplicate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use herald_core::{ChannelName, ChannelStream, Cursor, HistoryLimits, Recovery, Request, StreamPosition};
use proptest::prelude::*;

fn channel_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:@/=-]{1,40}"
}

fn position() -> impl Strategy<Value = StreamPosition> {
    ("[A-Za-z0-9]{1,32}", any::<u64>()).prop_map(|(epoch, offset)| StreamPosition { epoch: Arc::from(epoch), offset })
}

/// What happens next in a simulated session.
#[derive(Clone, Debug)]
enum Step {
    /// `n` messages are published, `ms` after the previous step.
    Publish { n: u8, ms: u16 },
    /// The client's connection drops.
    Drop,
    /// The client comes back with its position, receiving at most `limit` recovered messages
    /// per attempt (as a long poll does).
    Return { limit: u8 },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => (1u8..20, 0u16..400).prop_map(|(n, ms)| Step::Publish { n, ms }),
        1 => Just(Step::Drop),
        1 => (1u8..30).prop_map(|limit| Step::Return { limit }),
    ];
    proptest::collection::vec(step, 1..60)
}

proptest! {
    #[test]
    fn cursors_round_trip(entries in proptest::collection::vec((channel_name(), position()), 0..8)) {
        let mut cursor = Cursor::new();
        for (name, position) in &entries {
            cursor.set(&ChannelName::new(name).unwrap(), position.clone());
        }
        let text = cursor.to_string();
        // Knowing some of the names (and others) changes nothing.
        let known: Vec<ChannelName> =
            entries.iter().step_by(2).map(|(name, _)| ChannelName::new(name).unwrap()).chain([ChannelName::new("x").unwrap()]).collect();
        prop_assert_eq!(Cursor::parse_known(&text, &known), Ok(cursor.clone()));
        prop_assert_eq!(Cursor::parse(&text), Ok(cursor));
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = Cursor::parse(&text);
        let _ = Cursor::parse_known(&text, &[ChannelName::new("a").unwrap()]);
        let _ = Request::parse(&text);
        let _ = ChannelName::new(&text);
    }

    #[test]
    fn recovery_never_yields_a_gap_or_a_duplicate(
        steps in steps(),
        size in 0usize..40,
        ttl_ms in prop_oneof![Just(0u64), 100u64..3000],
    ) {
        let mut stream: ChannelStream<u64> = ChannelStream::new(Arc::from("e1"), HistoryLimits { size, ttl_ms });
        let mut now = 1_000_000u64;
        // What the client holds: its position and whether it is connected (receiving live).
        let mut seen = 0u64;
        let mut connected = true;
        for step in steps {
            match step {
                Step::Publish { n, ms } => {
                    now += u64::from(ms);
                    for _ in 0..n {
                        let before = stream.offset();
                        let offset = stream.append(now, |p| p.offset);
                        prop_assert_eq!(offset, before + 1, "offsets are given one after the other");
                        prop_assert_eq!(stream.offset(), offset, "the stream's position names its latest message");
                        if connected {
                            // A live subscriber gets each message as it is appended.
                            seen = offset;
                        }
                    }
                }
                Step::Drop => connected = false,
                Step::Return { limit } => {
                    // Come back, as often as the recovery limit requires.
                    loop {
                        let since = StreamPosition { epoch: Arc::from("e1"), offset: seen };
                        match stream.recover(Some(&since), now, usize::from(limit)) {
                            Recovery::Recovered { messages, truncated, position } => {
                                for m in messages {
                                    prop_assert_eq!(m, seen + 1, "recovered in order, no gap, no duplicate");
                                    seen = m;
                                }
                                if !truncated {
                                    prop_assert_eq!(seen, position.offset, "caught up with the stream");
                                    break;
                                }
                            }
                            Recovery::Reset { position, .. } => {
                                // Explicit: the client is told, and continues from the current position.
                                prop_assert!(position.offset > seen);
                                seen = position.offset;
                                break;
                            }
                            Recovery::Live { .. } => prop_assert!(false, "a position was given"),
                        }
                    }
                    connected = true;
                }
            }
        }
    }
}
