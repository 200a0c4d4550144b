//! The three transports — [`ws`], [`sse`] and [`poll`] — and what they share: reading the
//! channel list and cursor of a stream request, and subscriptions that end with the connection.

pub mod poll;
pub mod sse;
pub mod ws;

use std::sync::Arc;

use herald_auth::{Action, Identity};
use herald_core::{ChannelName, Cursor, ErrorCode, Start, list::comma_items};

use crate::{
    broker::{Broker, Subscribed},
    frame::Frame,
    outbox::Outbox,
    presence::Member,
    reply::ApiError,
    state::AppState,
    webhooks::Subject,
};

/// The channels and starting positions of an SSE or long-poll request.
pub struct StreamRequest {
    /// The channels, deduplicated, in request order.
    pub channels: Vec<ChannelName>,
    /// The positions the client resumes from (may be empty).
    pub cursor: Cursor,
    /// The `timeout` parameter (long polling), in seconds.
    pub timeout_secs: Option<u64>,
    /// The `last` parameter: how many of the latest messages a channel with no position in
    /// `cursor` starts with (0: none, it starts live). `last=N` sets it for every channel,
    /// `last=<channel>:N` for one (see [`StreamRequest::last_for`]).
    pub last: usize,
    /// The channels given their own `last=<channel>:N`.
    pub last_by_channel: Vec<(ChannelName, usize)>,
    /// The `streams` parameter of a long poll (`<stream>.<seq>`, comma-separated): the open
    /// streams the client holds and how far. With it, a poll answers at once while a stream is
    /// ahead of the client, and carries only what it lacks; without it (`None`), each answer
    /// carries every open stream's text so far.
    pub held: Option<Box<[Held]>>,
    /// The `token` parameter. An `Authorization` header wins over it
    /// ([`crate::auth::bearer_token`]).
    pub token: Option<String>,
    /// Who the request's token names, once checked (a long poll keeps it for presence and
    /// webhooks). Boxed: most requests carry none, and the request lives in the exchange's
    /// future.
    pub identity: Option<Box<Identity>>,
}

/// An open stream a long-polling client holds, and the `seq` it holds it to.
pub type Held = (Box<str>, u64);

/// A connection's subscriptions; dropping it unsubscribes from all of them.
pub struct Subscriptions {
    broker: Arc<Broker>,
    outbox: Arc<Outbox>,
    channels: Vec<ChannelName>,
    /// How this connection appears in presence (where a namespace keeps it).
    member: Option<Arc<Member>>,
    /// What it tells webhooks, when they are configured. Boxed: most servers have none, and
    /// a WebSocket's task carries the slot.
    reported: Option<Box<Reported>>,
}

/// A connection's part in webhooks.
struct Reported {
    /// Where it reports who is here.
    activity: Arc<crate::webhooks::Activity>,
    /// The user it counts as online (set with the identity).
    online_as: Option<Arc<str>>,
}

// === impl StreamRequest ===

impl StreamRequest {
    /// Reads `channel=…` (repeated), `cursor`, `last_event_id`/`lastEventId`, `last` and
    /// `timeout` from a query string, plus `extra` (a channel from the path) and a `Last-Event-ID` header.
    pub fn parse(
        state: &AppState,
        query: Option<&str>,
        extra: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<Self, ApiError> {
        let limit = state.config.max_channels_per_connection;
        let mut channels: Vec<ChannelName> = Vec::with_capacity(1);
        let mut add = |name: &str| -> Result<(), ApiError> {
            let channel = ChannelName::new(name)?;
            if channels.contains(&channel) {
                return Ok(());
            }
            if channels.len() == limit {
                // Refused as soon as it is known: the check for duplicates grows with the list.
                state.guard.hit(crate::guard::Limit::ChannelsPerConnection, None, "a stream names too many channels");
                return Err(ApiError::new(ErrorCode::TooManyChannels, format!("at most {limit} channels per stream")));
            }
            channels.push(channel);
            Ok(())
        };
        if let Some(name) = extra {
            add(name)?;
        }
        let mut cursor_text = None;
        let mut timeout_secs = None;
        let mut last = 0;
        let mut last_by_channel = Vec::new();
        let mut held = None;
        let mut token = None;
        for (key, value) in herald_http1::query::pairs(query.unwrap_or("")) {
            match &*key {
                "channel" => comma_items(&value).filter(|s| !s.is_empty()).try_for_each(&mut add)?,
                "cursor" | "last_event_id" | "lastEventId" => cursor_text = Some(value),
                "token" if token.is_none() => token = Some(value.into_owned()),
                "timeout" => {
                    timeout_secs = Some(value.parse::<u64>().map_err(|_| {
                        ApiError::new(ErrorCode::BadRequest, "timeout must be a whole number of seconds")
                    })?);
                }
                "last" => {
                    let bad = || ApiError::new(ErrorCode::BadRequest, "last must be N or <channel>:N (messages)");
                    match value.parse::<usize>() {
                        Ok(n) => last = n,
                        Err(_) => {
                            let (name, n) = value.rsplit_once(':').ok_or_else(bad)?;
                            let n = n.parse::<usize>().map_err(|_| bad())?;
                            last_by_channel.push((ChannelName::new(name)?, n));
                        }
                    }
                }
                "streams" => held = Some(parse_held(&value)?),
                _ => {}
            }
        }
        // Browsers send the header on their own reconnects; it wins over the URL's value.
        if let Some(id) = last_event_id.filter(|id| !id.is_empty()) {
            cursor_text = Some(id.into());
        }
        // A cursor that does not parse is still a position the client holds: every channel of
        // the stream then starts live with a reset (`malformed_position`), never a 400, after
        // which a browser's EventSource would stop reconnecting.
        let cursor = Cursor::parse_known(cursor_text.as_deref().unwrap_or(""), &channels).unwrap_or_else(|_| {
            let mut unusable = Cursor::with_capacity(channels.len());
            for channel in &channels {
                unusable.set(channel, herald_core::StreamPosition::unusable());
            }
            unusable
        });
        Ok(Self { channels, cursor, timeout_secs, last, last_by_channel, held, token, identity: None })
    }
}

// === impl StreamRequest: last ===

impl StreamRequest {
    /// How many of its latest messages `channel` starts with when it has no position: its own
    /// `last=<channel>:N`, else `last=N`.
    pub fn last_for(&self, channel: &ChannelName) -> usize {
        self.last_by_channel.iter().find(|(c, _)| c == channel).map_or(self.last, |(_, n)| *n)
    }
}

/// Reads `<stream>.<seq>,…` (see [`StreamRequest::held`]).
fn parse_held(value: &str) -> Result<Box<[Held]>, ApiError> {
    let bad = || ApiError::new(ErrorCode::BadRequest, "streams must list <stream>.<seq>, comma-separated");
    comma_items(value)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (id, seq) = item.rsplit_once('.').ok_or_else(bad)?;
            Ok((Box::from(id), seq.parse::<u64>().map_err(|_| bad())?))
        })
        .collect()
}

/// The identity a stream request's `token` gives (`None`: anonymous), once every channel of
/// the request is allowed to it under its namespace's rules. The token's server-side
/// subscriptions (`subs`) join the request's channels first, so that a stream may name none
/// of its own.
pub fn authorize_stream(
    state: &AppState,
    token: Option<&str>,
    request: &mut StreamRequest,
) -> Result<Option<Identity>, ApiError> {
    let identity = token.map(|t| state.auth.verify(t)).transpose()?;
    add_server_side(state, identity.as_ref(), request)?;
    for channel in &request.channels {
        crate::auth::check(&state.config, identity.as_ref(), channel, Action::Subscribe)?;
    }
    Ok(identity)
}

/// [`authorize_stream`], asking the backend's hooks first when some are configured
/// ([`crate::hooks`]): the connect hook decides who the stream is, and the subscribe hook
/// whether it may have each channel (its allow stands in for the namespace's rules).
pub async fn admit_stream(
    state: &AppState,
    transport: crate::frame::Transport,
    ip: std::net::IpAddr,
    headers: &(impl herald_http1::RequestHeaders + Sync),
    token: Option<&str>,
    request: &mut StreamRequest,
) -> Result<Option<Identity>, ApiError> {
    let Some(hooks) = state.hooks.clone() else { return authorize_stream(state, token, request) };
    let identity = token.map(|t| state.auth.verify(t)).transpose()?;
    let admitted = hooks.connect(transport.name(), ip, headers, identity).await?;
    add_server_side(state, admitted.identity.as_ref(), request)?;
    for channel in &request.channels {
        if hooks.subscribe(transport.name(), admitted.key, admitted.identity.as_ref(), channel).await? != Some(true) {
            crate::auth::check(&state.config, admitted.identity.as_ref(), channel, Action::Subscribe)?;
        }
    }
    Ok(admitted.identity)
}

/// Adds `identity`'s server-side subscriptions to `request`'s channels; refuses a request
/// that then names none.
fn add_server_side(state: &AppState, identity: Option<&Identity>, request: &mut StreamRequest) -> Result<(), ApiError> {
    for name in identity.map(Identity::subs).unwrap_or_default() {
        let channel = ChannelName::new(name)?;
        if !request.channels.contains(&channel) {
            let limit = state.config.max_channels_per_connection;
            if request.channels.len() == limit {
                return Err(ApiError::new(ErrorCode::TooManyChannels, format!("at most {limit} channels per stream")));
            }
            request.channels.push(channel);
        }
    }
    if request.channels.is_empty() {
        return Err(ApiError::new(ErrorCode::BadRequest, "name at least one channel: ?channel=name"));
    }
    Ok(())
}

/// With the Redis engine, has the node mirror every channel of `request` in line with its
/// cursor before the stream subscribes (at once otherwise).
pub async fn prepare_stream(state: &AppState, request: &StreamRequest) -> Result<(), ApiError> {
    if !state.engine.mirrors() {
        return Ok(());
    }
    let wanted: Vec<_> =
        request.channels.iter().map(|channel| (channel.clone(), request.cursor.get(channel).cloned())).collect();
    Ok(state.engine.prepare(wanted).get().await?)
}

// === impl Subscriptions ===

impl Subscriptions {
    /// No subscriptions yet for `outbox`, on `state`'s broker (reporting to its webhooks).
    pub fn new(state: &AppState, outbox: Arc<Outbox>) -> Self {
        let reported =
            state.webhooks.as_ref().map(|w| Box::new(Reported { activity: w.activity().clone(), online_as: None }));
        Self { broker: state.broker.clone(), outbox, channels: Vec::new(), member: None, reported }
    }

    /// Lists the connection in presence as `identity` in channels subscribed from now on
    /// (without it, the connection is listed as anonymous), and counts it as the user's
    /// connection for webhooks.
    pub fn set_identity(&mut self, identity: &Identity) {
        self.member = Some(Arc::new(Member::new(self.outbox.id(), Some(identity))));
        if let Some(reported) = &mut self.reported
            && !identity.user.is_empty()
            && reported.online_as.as_deref() != Some(identity.user.as_str())
        {
            let user: Arc<str> = Arc::from(identity.user.as_str());
            reported.activity.enter(&Subject::User(Arc::clone(&user)), None);
            if let Some(before) = reported.online_as.replace(user) {
                reported.activity.leave(&Subject::User(before));
            }
        }
    }

    /// Tells webhooks that this connection holds (`entered`) or let go of `channel`: its
    /// occupancy, and its presence as a user where the namespace keeps presence.
    fn report(&self, channel: &ChannelName, entered: bool) {
        let Some(Reported { activity, .. }) = self.reported.as_deref() else { return };
        let member = self
            .member
            .as_ref()
            .filter(|m| !m.user.is_empty() && self.broker.keeps_presence(channel))
            .map(|m| (Subject::Member(channel.clone(), Arc::from(m.user.as_str())), m.info.as_ref()));
        let occupied = Subject::Channel(channel.clone());
        if entered {
            activity.enter(&occupied, None);
            if let Some((subject, info)) = member {
                activity.enter(&subject, info);
            }
        } else {
            activity.leave(&occupied);
            if let Some((subject, _)) = member {
                activity.leave(&subject);
            }
        }
    }

    /// Subscribes to `channel` from `start` (see [`Broker::subscribe`]).
    pub fn add(
        &mut self,
        channel: &ChannelName,
        start: Start<'_>,
        limit: usize,
        lead: impl FnOnce(&Subscribed) -> Option<Frame>,
    ) -> Subscribed {
        if self.member.is_none() && self.broker.keeps_presence(channel) {
            // Built on first need: most connections never enter a presence namespace.
            self.member = Some(Arc::new(Member::new(self.outbox.id(), None)));
        }
        let subscribed = self.broker.subscribe(channel, &self.outbox, start, limit, self.member.as_ref(), lead);
        if subscribed.live && !self.channels.contains(channel) {
            self.channels.push(channel.clone());
            self.report(channel, true);
        }
        subscribed
    }

    /// Unsubscribes from `channel`; false if it was not subscribed.
    pub fn remove(&mut self, channel: &ChannelName) -> bool {
        let Some(i) = self.channels.iter().position(|c| c == channel) else { return false };
        self.channels.swap_remove(i);
        self.broker.unsubscribe(channel, self.outbox.id());
        self.report(channel, false);
        true
    }

    /// Unsubscribes from every channel.
    pub fn clear(&mut self) {
        for channel in std::mem::take(&mut self.channels) {
            self.broker.unsubscribe(&channel, self.outbox.id());
            self.report(&channel, false);
        }
    }

    /// What a long poll's answer carries of the subscribed channels' open streams, for a
    /// client that holds `held` (see [`Broker::stream_snapshots`]).
    pub fn stream_snapshots(&self, held: Option<&[Held]>) -> Vec<bytes::Bytes> {
        self.broker.stream_snapshots(&self.channels, held)
    }

    /// The subscribed channels, in the order they were subscribed.
    pub fn channels(&self) -> &[ChannelName] {
        &self.channels
    }

    /// Whether `channel` is subscribed.
    pub fn contains(&self, channel: &ChannelName) -> bool {
        self.channels.contains(channel)
    }

    /// How many channels are subscribed.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether nothing is subscribed.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Subscribes to every channel of `request` — from the cursor's position where it has one,
    /// else from its latest messages ([`StreamRequest::last_for`]) — queuing at most `limit` messages per
    /// channel, and returns the cursor the stream starts at (see [`Subscribed::start`]; a
    /// reset frame, already queued, says when it is not the client's position).
    pub fn add_stream(&mut self, request: &StreamRequest, limit: usize) -> Cursor {
        let mut cursor = Cursor::with_capacity(request.channels.len());
        self.channels.reserve(request.channels.len());
        for channel in &request.channels {
            let start = Start::new(request.cursor.get(channel), request.last_for(channel));
            cursor.set(channel, self.add(channel, start, limit, |_| None).start);
        }
        cursor
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        self.clear();
        if let Some(reported) = &mut self.reported
            && let Some(user) = reported.online_as.take()
        {
            reported.activity.leave(&Subject::User(user));
        }
    }
}

/// Moves `cursor` past `frame` (a delivered message or a reset).
pub fn advance_cursor(cursor: &mut Cursor, frame: &Frame) {
    match frame {
        Frame::Message(m) => cursor.advance(&m.channel, m.offset),
        Frame::Reset { channel, position, .. } => cursor.set(channel, position.clone()),
        Frame::Text(_) | Frame::Stream { .. } | Frame::Heartbeat => {}
    }
}
