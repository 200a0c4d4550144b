//! Every route Herald serves, named once: the router registers each [`Route`]'s template, the
//! connection loop recognises the routes it serves without the router by it, the CORS check
//! asks it which routes browsers call across origins, and `/metrics` counts requests under its
//! template (so that no channel name ever becomes a label). docs/protocol.md describes them.

/// A route, by its template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the demo page.
    Demo,
    /// `GET /herald.js`: the TypeScript client's bundle.
    Client,
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `GET /metrics`.
    Metrics,
    /// `GET /admin`: the admin page.
    Admin,
    /// `GET /ws`: the WebSocket upgrade.
    Ws,
    /// `GET /sse?channel=…`.
    Sse,
    /// `GET /sse/{channel}`.
    SseChannel,
    /// `GET /poll`.
    Poll,
    /// `POST /publish`: a client's publish.
    Publish,
    /// `GET /history/{channel}`: a client's history read.
    History,
    /// `POST /api/publish`.
    ApiPublish,
    /// `POST /api/publish/{channel}`.
    ApiPublishTo,
    /// `POST /api/broadcast`.
    ApiBroadcast,
    /// `GET /api/channels`.
    ApiChannels,
    /// `GET /api/channels/{channel}/history`.
    ApiHistory,
    /// `GET /api/channels/{channel}/presence`.
    ApiPresence,
    /// `POST /api/channels/{channel}/streams`: starts a stream.
    ApiStreams,
    /// `POST /api/channels/{channel}/streams/{stream}`: appends to, finishes or aborts one.
    ApiStream,
    /// `POST /api/disconnect`.
    ApiDisconnect,
    /// `GET /api/info`.
    ApiInfo,
    /// Any other path.
    Other,
}

// === impl Route ===

impl Route {
    /// Every route but [`Route::Other`], in the order of their numbers.
    pub const ALL: [Route; 22] = [
        Route::Demo,
        Route::Client,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::Admin,
        Route::Ws,
        Route::Sse,
        Route::SseChannel,
        Route::Poll,
        Route::Publish,
        Route::History,
        Route::ApiPublish,
        Route::ApiPublishTo,
        Route::ApiBroadcast,
        Route::ApiChannels,
        Route::ApiHistory,
        Route::ApiPresence,
        Route::ApiStreams,
        Route::ApiStream,
        Route::ApiDisconnect,
        Route::ApiInfo,
    ];

    /// The template, as the router registers it and `/metrics` labels it (`other` for
    /// [`Route::Other`]).
    pub const fn template(self) -> &'static str {
        match self {
            Route::Demo => "/",
            Route::Client => "/herald.js",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::Admin => "/admin",
            Route::Ws => "/ws",
            Route::Sse => "/sse",
            Route::SseChannel => "/sse/{channel}",
            Route::Poll => "/poll",
            Route::Publish => "/publish",
            Route::History => "/history/{channel}",
            Route::ApiPublish => "/api/publish",
            Route::ApiPublishTo => "/api/publish/{channel}",
            Route::ApiBroadcast => "/api/broadcast",
            Route::ApiChannels => "/api/channels",
            Route::ApiHistory => "/api/channels/{channel}/history",
            Route::ApiPresence => "/api/channels/{channel}/presence",
            Route::ApiStreams => "/api/channels/{channel}/streams",
            Route::ApiStream => "/api/channels/{channel}/streams/{stream}",
            Route::ApiDisconnect => "/api/disconnect",
            Route::ApiInfo => "/api/info",
            Route::Other => "other",
        }
    }

    /// The route's number: its place in [`Route::ALL`], [`Route::ALL`]'s length for `Other`.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The route of a request's `path` (without its query).
    pub fn of(path: &str) -> Route {
        if let Some(rest) = path.strip_prefix("/api/") {
            return Self::of_api(rest);
        }
        match path {
            "/poll" => Route::Poll,
            "/ws" => Route::Ws,
            "/sse" => Route::Sse,
            "/publish" => Route::Publish,
            "/" => Route::Demo,
            "/herald.js" => Route::Client,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            "/admin" => Route::Admin,
            p if p.strip_prefix("/sse/").is_some_and(|c| !c.is_empty() && !c.contains('/')) => Route::SseChannel,
            p if p.strip_prefix("/history/").is_some_and(|c| !c.is_empty() && !c.contains('/')) => Route::History,
            _ => Route::Other,
        }
    }

    fn of_api(rest: &str) -> Route {
        match rest {
            "publish" => Route::ApiPublish,
            "broadcast" => Route::ApiBroadcast,
            "channels" => Route::ApiChannels,
            "disconnect" => Route::ApiDisconnect,
            "info" => Route::ApiInfo,
            r if r.strip_prefix("publish/").is_some_and(|c| !c.is_empty() && !c.contains('/')) => Route::ApiPublishTo,
            r => {
                let Some(rest) = r.strip_prefix("channels/") else { return Route::Other };
                let mut parts = rest.split('/');
                match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(""), ..) => Route::Other,
                    (Some(_), Some("history"), None, _) => Route::ApiHistory,
                    (Some(_), Some("presence"), None, _) => Route::ApiPresence,
                    (Some(_), Some("streams"), None, _) => Route::ApiStreams,
                    (Some(_), Some("streams"), Some(id), None) if !id.is_empty() => Route::ApiStream,
                    _ => Route::Other,
                }
            }
        }
    }

    /// Whether browsers call the route across origins (it answers CORS preflights and carries
    /// `Access-Control-Allow-Origin`): the client routes other than the WebSocket, which checks
    /// `Origin` itself.
    pub const fn is_cross_origin(self) -> bool {
        matches!(self, Route::Sse | Route::SseChannel | Route::Poll | Route::Publish | Route::History)
    }
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn every_route_is_recognised_by_a_path_of_its_template() {
        for route in Route::ALL {
            let path = route.template().replace("{channel}", "chat:room-1").replace("{stream}", "k3J9q");
            assert_eq!(Route::of(&path), route, "{path}");
            assert_eq!(Route::ALL[route.index()], route);
        }
        assert_eq!(Route::Other.index(), Route::ALL.len());
    }

    #[test]
    fn other_paths_are_other() {
        for path in [
            "/wp-login.php",
            "/sse/",
            "/sse/a/b",
            "/api/",
            "/api/channels/a/b/history",
            "/api/channels//history",
            "/api/channels/a/streams/",
            "/api/channels/a/streams/b/c",
            "/history/",
            "/polls",
        ] {
            assert_eq!(Route::of(path), Route::Other, "{path}");
        }
    }

    #[test]
    fn the_cross_origin_routes_are_the_client_routes_but_the_websocket() {
        let cross: Vec<_> = Route::ALL.into_iter().filter(|r| r.is_cross_origin()).map(Route::template).collect();
        assert_eq!(cross, ["/sse", "/sse/{channel}", "/poll", "/publish", "/history/{channel}"]);
    }
}
