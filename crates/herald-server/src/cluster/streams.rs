//! Token streams on the Redis engine: Redis holds every open stream of a channel (its text and
//! where each append ends), so any node can append to a stream another node started, and a
//! node that starts mirroring a channel mid-stream reads the text so far with its snapshot.
//!
//! Each operation is one script ([`super::scripts::STREAM`], [`super::scripts::FINISH`]) that checks the
//! limits, applies it and tells the nodes on the channel's feed, atomically; the nodes fold it
//! into their mirrors ([`Broker::mirror_stream`]) in feed order, so pieces keep their place
//! among the channel's messages. Finishing closes the stream and publishes its message in the
//! same script.
//!
//! [`Broker::mirror_stream`]: crate::broker::Broker::mirror_stream

use std::sync::Arc;

use herald_core::{ChannelName, ProtocolError, streams::StreamError};

use super::{Assigned, Cluster, pass_seen, unexpected};

// === impl Cluster: streams ===

impl Cluster {
    /// Opens a stream in `channel` for a message of `event` (of JSON items with `json`);
    /// returns its id.
    pub async fn stream_start(
        &self,
        channel: &ChannelName,
        event: Option<&str>,
        json: bool,
    ) -> Result<Arc<str>, ProtocolError> {
        let id = crate::broker::new_stream_id();
        let limit = self.config.max_streams_per_channel;
        let kind = if json { "j" } else { "t" };
        self.stream_op(channel, "s", &id, limit, [event.unwrap_or(""), kind, ""]).await?;
        Ok(id)
    }

    /// Appends a piece to stream `id` of `channel`, given as a text stream holds it (`text`)
    /// and as a JSON stream does (`json`), where it can be; returns the append's `seq`.
    pub async fn stream_append(
        &self,
        channel: &ChannelName,
        id: &str,
        text: Option<&str>,
        json: Option<&str>,
    ) -> Result<u64, ProtocolError> {
        let valid = match (text.is_some(), json.is_some()) {
            (true, true) => "tj",
            (true, false) => "t",
            (false, _) => "j",
        };
        let forms = [text.unwrap_or(""), json.unwrap_or(""), valid];
        self.stream_op(channel, "a", id, self.config.max_message_bytes, forms).await
    }

    /// Aborts stream `id` of `channel`.
    pub async fn stream_abort(&self, channel: &ChannelName, id: &str) -> Result<(), ProtocolError> {
        self.stream_op(channel, "x", id, 0, ["", "", ""]).await.map(drop)
    }

    /// Finishes stream `id` of `channel`: closes it and publishes its text as one message.
    pub async fn stream_finish(&self, channel: &ChannelName, id: &str) -> Result<Assigned, ProtocolError> {
        let mut invocation = self.finish.prepare_invoke();
        let [text, ends] = self.keys.stream(channel, id);
        invocation
            .key(self.keys.meta(channel))
            .key(self.keys.history(channel))
            .key(self.keys.stream_index(channel))
            .key(text)
            .key(ends);
        self.place_args(&mut invocation, channel).arg(id).arg(self.stream_idle_ms());
        pass_seen(&mut invocation, self.broker.mirrored(channel).as_ref());
        let reply: Vec<String> = self.timed(self.commands.invoke(&invocation)).await?;
        match reply.as_slice() {
            [ok, epoch, offset] if ok == "ok" => {
                self.broker.metrics().published.inc();
                let offset = offset.parse().map_err(|_| unexpected("a stream's finish"))?;
                Ok(Assigned { epoch: Arc::from(epoch.as_str()), offset })
            }
            [refused] => Err(self.refused(refused, id)),
            _ => Err(unexpected("a stream's finish")),
        }
    }

    /// Runs [`super::scripts::STREAM`]'s operation `op` on stream `id` of `channel`, with its
    /// `limit` and arguments; returns the stream's `seq` after it.
    async fn stream_op(
        &self,
        channel: &ChannelName,
        op: &str,
        id: &str,
        limit: usize,
        args: [&str; 3],
    ) -> Result<u64, ProtocolError> {
        let mut invocation = self.stream.prepare_invoke();
        let [text_key, ends] = self.keys.stream(channel, id);
        invocation
            .key(self.keys.stream_index(channel))
            .key(text_key)
            .key(ends)
            .arg(op)
            .arg(id)
            .arg(crate::now_ms())
            .arg(self.stream_idle_ms())
            .arg(self.keys.feed(channel))
            .arg(limit)
            .arg(args[0])
            .arg(args[1])
            .arg(args[2]);
        let reply: Vec<String> = self.timed(self.commands.invoke(&invocation)).await?;
        match reply.as_slice() {
            [ok, seq] if ok == "ok" => seq.parse().map_err(|_| unexpected("a stream operation")),
            [refused] => Err(self.refused(refused, id)),
            _ => Err(unexpected("a stream operation")),
        }
    }

    /// The error of an operation the script refused for `reason`.
    fn refused(&self, reason: &str, id: &str) -> ProtocolError {
        match reason {
            "too_many" => StreamError::TooMany(self.config.max_streams_per_channel).into(),
            "too_long" => StreamError::TooLong(self.config.max_message_bytes).into(),
            "kind_j" => StreamError::Kind(true).into(),
            "kind_t" => StreamError::Kind(false).into(),
            _ => StreamError::Unknown(Arc::from(id)).into(),
        }
    }
}
