//! The on-disk record: one published message (or a position marker) framed with its length
//! and a CRC-32 of its payload, so that a torn or corrupted record is detected on replay.
//!
//! Frame: `len: u32 LE` · `crc32(payload): u32 LE` · payload. Payload, all integers LE:
//! `kind: u8` (1 message, 2 marker) · `lsn: u64` · `offset: u64` · `time_ms: u64` ·
//! `channel: u8 len + bytes` · `epoch: u8 len + bytes` · `event: u8 len + bytes` (0: none) ·
//! `idempotency key: u16 len + bytes` (0: none) · `data: u32 len + bytes` (markers: 0).
//!
//! Pure: encoding and decoding work on byte slices; the segment files are [`super`]'s.

/// Largest payload accepted when reading (a length beyond it is corruption, not a record).
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;
/// Bytes before the payload: length and checksum.
pub const FRAME_HEAD: usize = 8;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A published message with its data.
    Message = 1,
    /// A channel's position (and possibly an idempotency key) without the message's data: what
    /// compaction keeps of a message that left the history window.
    Marker = 2,
}

/// One record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Message or marker.
    pub kind: Kind,
    /// The log sequence number: the order of original appends, kept by compaction's copies.
    pub lsn: u64,
    /// The channel name.
    pub channel: String,
    /// The stream's epoch.
    pub epoch: String,
    /// The message's offset.
    pub offset: u64,
    /// When it was published, ms since the Unix epoch.
    pub time_ms: u64,
    /// The event name.
    pub event: Option<String>,
    /// The publish's `idempotency_key`.
    pub key: Option<String>,
    /// The message's `data` JSON (empty for a marker).
    pub data: Vec<u8>,
}

/// What reading a frame at some position found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A whole, valid record and the bytes it took.
    Record(Record, usize),
    /// The bytes end inside a frame (a torn write at the tail).
    Torn,
    /// The frame is whole but its checksum or contents are wrong.
    Corrupt(&'static str),
}

// === impl Record ===

impl Record {
    /// Appends this record's frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEAD]);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.lsn.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.time_ms.to_le_bytes());
        short(out, self.channel.as_bytes());
        short(out, self.epoch.as_bytes());
        short(out, self.event.as_deref().unwrap_or("").as_bytes());
        let key = self.key.as_deref().unwrap_or("").as_bytes();
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.data);
        let payload_len = (out.len() - start - FRAME_HEAD) as u32;
        let crc = crc32fast::hash(&out[start + FRAME_HEAD..]);
        out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// This record as a marker: the same position and key, without the data.
    pub fn to_marker(&self) -> Self {
        Self { kind: Kind::Marker, data: Vec::new(), ..self.clone() }
    }
}

/// Reads the frame at the start of `bytes`.
pub fn read(bytes: &[u8]) -> Read {
    if bytes.len() < FRAME_HEAD {
        return Read::Torn;
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len > MAX_PAYLOAD {
        return Read::Corrupt("record length out of range");
    }
    let Some(payload) = bytes.get(FRAME_HEAD..FRAME_HEAD + len) else { return Read::Torn };
    if crc32fast::hash(payload) != crc {
        return Read::Corrupt("checksum mismatch");
    }
    match decode(payload) {
        Some(record) => Read::Record(record, FRAME_HEAD + len),
        None => Read::Corrupt("malformed record"),
    }
}

fn short(out: &mut Vec<u8>, bytes: &[u8]) {
    // Channel names (≤ 255), epochs (≤ 32) and events (≤ 128) fit in a byte.
    out.push(bytes.len().min(255) as u8);
    out.extend_from_slice(&bytes[..bytes.len().min(255)]);
}

fn decode(payload: &[u8]) -> Option<Record> {
    let mut r = Reader(payload);
    let kind = match r.u8()? {
        1 => Kind::Message,
        2 => Kind::Marker,
        _ => return None,
    };
    let (lsn, offset, time_ms) = (r.u64()?, r.u64()?, r.u64()?);
    let channel = r.text(usize::from(r.u8_peek()?), 1)?;
    let epoch = r.text(usize::from(r.u8_peek()?), 1)?;
    let event = r.text(usize::from(r.u8_peek()?), 1)?;
    let key_len = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
    let key = r.text(usize::from(key_len), 0)?;
    let data_len = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
    let data = r.take(data_len)?.to_vec();
    if !r.0.is_empty() {
        return None;
    }
    let some = |s: String| (!s.is_empty()).then_some(s);
    Some(Record { kind, lsn, channel, epoch, offset, time_ms, event: some(event), key: some(key), data })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u8_peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// `skip` length bytes, then `len` bytes of UTF-8.
    fn text(&mut self, len: usize, skip: usize) -> Option<String> {
        self.take(skip)?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(lsn: u64) -> Record {
        Record {
            kind: Kind::Message,
            lsn,
            channel: "chat:room-1".into(),
            epoch: "k3j2".into(),
            offset: 41 + lsn,
            time_ms: 1_795_000_000_000,
            event: Some("new-job".into()),
            key: lsn.is_multiple_of(2).then(|| "retry-7".into()),
            data: br#"{"title":"Rust engineer"}"#.to_vec(),
        }
    }

    #[test]
    fn records_round_trip_back_to_back() {
        let mut bytes = Vec::new();
        for lsn in 1..=3 {
            record(lsn).encode(&mut bytes);
        }
        record(4).to_marker().encode(&mut bytes);
        let mut at = 0;
        let mut got = Vec::new();
        while at < bytes.len() {
            let Read::Record(r, used) = read(&bytes[at..]) else { panic!("a record at {at}") };
            got.push(r);
            at += used;
        }
        let mut want: Vec<Record> = (1..=3).map(record).collect();
        want.push(record(4).to_marker());
        assert_eq!(got, want);
    }

    #[test]
    fn a_cut_record_is_torn_and_a_flipped_bit_is_corrupt() {
        let mut bytes = Vec::new();
        record(1).encode(&mut bytes);
        for cut in [0, 3, FRAME_HEAD, bytes.len() - 1] {
            assert_eq!(read(&bytes[..cut]), Read::Torn, "cut at {cut}");
        }
        for at in [5, FRAME_HEAD + 3, bytes.len() - 2] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(matches!(read(&bad), Read::Corrupt(_)), "flipped at {at}");
        }
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(read(&huge), Read::Corrupt(_)));
    }
}
