//! What each subscriber received: losses, duplicates, reordering, and delivery latency.
//!
//! Every published payload carries `{"b":[channel,seq,sent_us]}`: the channel's index in the
//! run, its per-channel sequence number (0, 1, 2 …) and the publisher's wall clock in µs. The
//! marker is found in whatever bytes a transport delivers (a Herald envelope, an SSE `data:`
//! line, a poll batch, an Nchan raw message), so one counter serves every server and transport.
//! A piece of a token stream carries it as text, `~b[channel,seq,sent_us]`, which reads the
//! same inside any JSON string (an append, the text so far, the finished message).
//!
//! Latencies are kept per delivery and, per message, for its first and last delivery: a tail
//! then reads as a late start (the publish waited before anyone got it) or a long spread (the
//! server, or the reader, took long to reach everyone).

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
};

use hdrhistogram::Histogram;
use memchr::memmem::Finder;
use parking_lot::Mutex;

/// One payload found in delivered bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The channel's index in the run.
    pub channel: u32,
    /// The per-channel sequence number, from 0.
    pub seq: u64,
    /// When it was published, in µs since the Unix epoch.
    pub sent_us: u64,
}

/// The JSON payload for `marker`.
pub fn payload(marker: Marker) -> String {
    format!("{{\"b\":[{},{},{}]}}", marker.channel, marker.seq, marker.sent_us)
}

/// A job posting of about 1 KB of JSON (what a job board pushes) carrying `marker`: the
/// realistic payload of the `compression` scenario.
pub fn posting(marker: Marker) -> String {
    const POSTING: &str = include_str!("../../herald/tests/testdata/job_posting.json");
    format!("{{\"b\":[{},{},{}],\"posting\":{}}}", marker.channel, marker.seq, marker.sent_us, POSTING.trim_end())
}

/// The text of a stream piece carrying `marker`.
pub fn text_piece(marker: Marker) -> String {
    format!("~b[{},{},{}]", marker.channel, marker.seq, marker.sent_us)
}

/// Every marker in `bytes`: those of payloads, then those of stream pieces.
pub fn markers(bytes: &[u8]) -> impl Iterator<Item = Marker> + '_ {
    // Built once: building a searcher costs more than searching a message.
    static PAYLOAD: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"b\":["));
    static PIECE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"~b["));
    let payloads = PAYLOAD.find_iter(bytes).filter_map(move |at| parse_marker(&bytes[at + 5..]));
    let pieces = PIECE.find_iter(bytes).filter_map(move |at| parse_marker(&bytes[at + 3..]));
    payloads.chain(pieces)
}

fn parse_marker(rest: &[u8]) -> Option<Marker> {
    let mut numbers = [0u64; 3];
    let mut i = 0;
    for (n, slot) in numbers.iter_mut().enumerate() {
        let start = i;
        while i < rest.len() && rest[i].is_ascii_digit() {
            *slot = slot.checked_mul(10)?.checked_add(u64::from(rest[i] - b'0'))?;
            i += 1;
        }
        let end = if n == 2 { b']' } else { b',' };
        if i == start || rest.get(i) != Some(&end) {
            return None;
        }
        i += 1;
    }
    Some(Marker { channel: u32::try_from(numbers[0]).ok()?, seq: numbers[1], sent_us: numbers[2] })
}

/// How one delivery compared with what came before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receipt {
    /// A sequence number not seen before, above every earlier one.
    InOrder,
    /// Not seen before, but below one already received.
    Reordered,
    /// Already received.
    Duplicate,
}

/// The sequence numbers one subscriber received on its channel.
#[derive(Debug, Default)]
pub struct Receipts {
    seen: Vec<u64>,
    next: u64,
    distinct: u64,
    duplicates: u64,
    reordered: u64,
}

/// Totals over many subscribers for one phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Deliveries counted (distinct + duplicates).
    pub delivered: u64,
    /// Published messages a subscriber never received.
    pub lost: u64,
    /// Deliveries of a message the subscriber already had.
    pub duplicated: u64,
    /// Deliveries that arrived after a later message of the same channel.
    pub out_of_order: u64,
}

// === impl Receipts ===

impl Receipts {
    /// Records `seq`.
    pub fn record(&mut self, seq: u64) -> Receipt {
        let (word, bit) = (usize::try_from(seq / 64).unwrap_or(usize::MAX), seq % 64);
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return Receipt::Duplicate;
        }
        self.seen[word] |= 1 << bit;
        self.distinct += 1;
        if seq < self.next {
            self.reordered += 1;
            return Receipt::Reordered;
        }
        self.next = seq + 1;
        Receipt::InOrder
    }

    /// Whether every sequence number below `published` was received.
    pub fn has_all_below(&self, published: u64) -> bool {
        self.missing_below(published) == 0
    }

    /// How many sequence numbers below `published` were not received.
    pub fn missing_below(&self, published: u64) -> u64 {
        let full_words = usize::try_from(published / 64).unwrap_or(usize::MAX);
        let mut have: u64 = self.seen.iter().take(full_words).map(|w| u64::from(w.count_ones())).sum();
        let rest = published % 64;
        if rest > 0
            && let Some(w) = self.seen.get(full_words)
        {
            have += u64::from((w & ((1u64 << rest) - 1)).count_ones());
        }
        published - have
    }

    /// The highest sequence number received plus one (0 before any).
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Adds this subscriber's counts to `tally`, given how many messages its channel published.
    pub fn add_to(&self, tally: &mut Tally, published: u64) {
        tally.delivered += self.distinct + self.duplicates;
        tally.lost += self.missing_below(published);
        tally.duplicated += self.duplicates;
        tally.out_of_order += self.reordered;
    }
}

/// Delivery latencies, striped so that thousands of subscriber tasks rarely share a lock:
/// every delivery's, and each message's first and last.
pub struct Latencies {
    stripes: Vec<Mutex<Stripe>>,
}

/// One stripe of [`Latencies`].
struct Stripe {
    /// Every delivery's latency.
    deliveries: Histogram<u64>,
    /// Per message (channel, seq): its first and last delivery's latency in this stripe.
    messages: HashMap<(u32, u64), (u64, u64)>,
}

/// Latency percentiles in µs.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Percentiles {
    /// How many deliveries.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// The slowest.
    pub max: u64,
    /// Over the messages, the median of each one's first delivery: how long a publish takes to
    /// reach anyone.
    pub first_p50: u64,
    /// Over the messages, the median of each one's last delivery: how long a publish takes to
    /// reach every subscriber of its channel.
    pub last_p50: u64,
}

/// Highest latency the histograms resolve: 10 minutes in µs (slower saturates at this value).
const MAX_LATENCY_US: u64 = 600_000_000;

// === impl Latencies ===

impl Latencies {
    /// Empty histograms.
    pub fn new() -> Arc<Self> {
        let stripes =
            (0..32).map(|_| Mutex::new(Stripe { deliveries: new_histogram(), messages: HashMap::new() })).collect();
        Arc::new(Self { stripes })
    }

    /// Records, for subscriber `who`, the delivery of `message` (channel, seq) after
    /// `latency_us`.
    pub fn record(&self, who: usize, message: (u32, u64), latency_us: u64) {
        let latency_us = latency_us.min(MAX_LATENCY_US);
        let mut stripe = self.stripes[who % self.stripes.len()].lock();
        stripe.deliveries.saturating_record(latency_us);
        widen(stripe.messages.entry(message).or_insert((latency_us, latency_us)), (latency_us, latency_us));
    }

    /// The percentiles since the last take, then starts over.
    pub fn take(&self) -> Percentiles {
        let mut all = new_histogram();
        let mut messages: HashMap<(u32, u64), (u64, u64)> = HashMap::new();
        for stripe in &self.stripes {
            let mut stripe = stripe.lock();
            let _ = all.add(&stripe.deliveries);
            stripe.deliveries.reset();
            for (message, span) in stripe.messages.drain() {
                widen(messages.entry(message).or_insert(span), span);
            }
        }
        Percentiles {
            count: all.len(),
            p50: all.value_at_quantile(0.5),
            p90: all.value_at_quantile(0.9),
            p99: all.value_at_quantile(0.99),
            p999: all.value_at_quantile(0.999),
            max: all.max(),
            first_p50: median_us(messages.values().map(|span| span.0)),
            last_p50: median_us(messages.values().map(|span| span.1)),
        }
    }
}

/// Widens a message's (first, last) delivery latency to take in `other`'s.
fn widen(span: &mut (u64, u64), other: (u64, u64)) {
    span.0 = span.0.min(other.0);
    span.1 = span.1.max(other.1);
}

/// The median of `values` (of an even number, the mean of the middle two); `None` when empty.
/// Sorts `values`.
pub fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// [`median`] of µs counts (0 when empty).
fn median_us(values: impl Iterator<Item = u64>) -> u64 {
    let mut values: Vec<f64> = values.map(|v| v as f64).collect();
    median(&mut values).map_or(0, |m| m as u64)
}

/// An empty histogram of µs from 1 to 10 minutes, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_markers_in_any_wrapping() {
        let m = Marker { channel: 7, seq: 42, sent_us: 1_700_000_000_000_000 };
        let envelope = format!(r#"{{"type":"message","channel":"c","offset":43,"data":{},"time":1}}"#, payload(m));
        assert_eq!(markers(envelope.as_bytes()).collect::<Vec<_>>(), [m]);
        let batch = format!("id: x\ndata: {}\n\ndata: {}\n\n", payload(m), payload(Marker { seq: 43, ..m }));
        assert_eq!(markers(batch.as_bytes()).map(|m| m.seq).collect::<Vec<_>>(), [42, 43]);
        assert_eq!(markers(br#"{"b":[1,2]}{"b":[x,1,2]}{"b":[1,2,3"#).count(), 0, "malformed markers are skipped");
    }

    #[test]
    fn finds_the_markers_of_stream_pieces_merged_or_not() {
        let piece = |seq| text_piece(Marker { channel: 3, seq, sent_us: 99 });
        let append = format!(
            r#"{{"type":"append","channel":"c","stream":"s","text":"{}{}","seq":2,"pieces":2}}"#,
            piece(0),
            piece(1)
        );
        assert_eq!(markers(append.as_bytes()).map(|m| (m.channel, m.seq)).collect::<Vec<_>>(), [(3, 0), (3, 1)]);
    }

    #[test]
    fn counts_loss_duplicates_and_reordering() {
        let mut r = Receipts::default();
        assert_eq!(r.record(0), Receipt::InOrder);
        assert_eq!(r.record(2), Receipt::InOrder);
        assert_eq!(r.record(1), Receipt::Reordered);
        assert_eq!(r.record(2), Receipt::Duplicate);
        assert_eq!(r.record(70), Receipt::InOrder);
        assert!(r.has_all_below(3) && !r.has_all_below(4));
        let mut tally = Tally::default();
        r.add_to(&mut tally, 72);
        assert_eq!(tally, Tally { delivered: 5, lost: 72 - 4, duplicated: 1, out_of_order: 1 });
    }

    #[test]
    fn latency_percentiles_merge_stripes() {
        let l = Latencies::new();
        for i in 0..1000 {
            l.record(i as usize, (0, i), i + 1);
        }
        let p = l.take();
        assert_eq!(p.count, 1000);
        assert!((495..=505).contains(&p.p50), "{p:?}");
        assert_eq!(l.take().count, 0, "take starts over");
    }

    /// Each message's first and last delivery are found across the subscribers' stripes, so a
    /// late start and a long spread read apart.
    #[test]
    fn each_message_has_its_first_and_last_delivery() {
        let l = Latencies::new();
        // Three messages to 100 subscribers each: message s reaches subscriber i after
        // 1,000 * (s + 1) + 10 * i µs (a start that grows, a spread of 990 µs).
        for seq in 0..3u64 {
            for who in 0..100u64 {
                l.record(who as usize, (7, seq), 1_000 * (seq + 1) + 10 * who);
            }
        }
        // The same sequence numbers on another channel are other messages.
        l.record(5, (8, 0), 50_000);
        l.record(6, (8, 1), 60_000);
        let p = l.take();
        assert_eq!((p.first_p50, p.last_p50), (3_000, 3_990), "{p:?}");
        let p = l.take();
        assert_eq!((p.count, p.first_p50, p.last_p50), (0, 0, 0), "take starts over");
    }
}
