//! Real sources for the consumer tests — a PostgreSQL server, a RabbitMQ node and a NATS
//! server with JetStream, each on 127.0.0.1 with its data in the test's temporary folder —
//! and each written to and read as an application would. Killed on drop.

use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use super::{FRESH_TRIES, WAIT, free_port};

/// The consumer name every test uses.
pub const CONSUMER: &str = "orders";

/// A source as the consumer scenarios drive it ([`super::consumers`]).
pub trait Source {
    /// Its `source` name in `[[consumers]]`.
    const KIND: &str;
    /// Bytes that a consumer's acknowledgement carries on the wire (and nothing else it sends
    /// in these tests does), for [`super::proxy::Proxy::drop_from`].
    const ACK: &[u8];
    /// Its port.
    fn port(&self) -> u16;
    /// Its URL, as reached on `port` (its own, or a [`super::proxy::Proxy`]'s).
    fn url_on(&self, port: u16) -> String;
    /// Writes envelopes (`{"channel","data",…}`) as the application would; a message's own
    /// key, where the source needs one for exactly once, is made from `data.n`.
    async fn send(&self, envelopes: &[Value]);
    /// Writes one message that cannot be published; returns a part of the reason expected.
    async fn send_poison(&self) -> &'static str;
    /// The dead letters: each message's body (or data) and reason.
    async fn dead(&self) -> Vec<(String, String)>;
    /// Messages the source still holds for the consumer (not acknowledged).
    async fn pending(&self) -> u64;
    /// Kills the source outright.
    fn kill(&mut self);
    /// Starts it on its port and data and waits until it answers; the reason, with the end of
    /// its log, if it exits first or does not answer in time.
    async fn boot(&mut self) -> Result<(), String>;
    /// Starts it again on the same port and data.
    async fn restart(&mut self) {
        self.kill();
        if let Err(why) = self.boot().await {
            panic!("{} did not come back: {why}", Self::KIND);
        }
    }
}

/// A new source from `fresh` (fresh ports and data each call), booted.
async fn boot_fresh<S: Source>(mut fresh: impl FnMut() -> S) -> S {
    for attempt in 1..=FRESH_TRIES {
        let mut source = fresh();
        match source.boot().await {
            Ok(()) => return source,
            Err(why) if attempt < FRESH_TRIES => eprintln!("{} did not come up ({why}); trying fresh ports", S::KIND),
            Err(why) => panic!("{} did not come up in {FRESH_TRIES} tries: {why}", S::KIND),
        }
    }
    unreachable!("the last try returns or panics")
}

// === impl Server ===

/// A source server's process: a child in its own process group, so that a kill reaches the
/// whole server (wrappers fork), with its output in `log`.
struct Server {
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    fn new(log: PathBuf) -> Self {
        Self { child: None, log }
    }

    /// Kills the server it runs, if any, and runs `command`.
    fn run(&mut self, command: &mut Command) {
        self.kill();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let stderr = log.try_clone().unwrap();
        let child = command.stdout(log).stderr(stderr).process_group(0).spawn();
        self.child = Some(child.expect("the source server starts"));
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
        }
    }

    /// Waits until `ready` says yes; the reason, with the end of the log, if the server exits
    /// first or `limit` passes.
    async fn up<F: Future<Output = bool>>(
        &mut self,
        limit: Duration,
        mut ready: impl FnMut() -> F,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if ready().await {
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten());
            let why = match exited {
                Some(status) => format!("it exited ({status})"),
                None if tokio::time::Instant::now() >= deadline => format!("no answer in {limit:?}"),
                None => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            return Err(format!("{why}; its log ends:\n{}", self.log_tail()));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// === PostgreSQL ===

/// A PostgreSQL server (Debian's `postgresql`), run as the `postgres` user.
pub struct Postgres {
    server: Server,
    pub port: u16,
    dir: PathBuf,
}

const URL_POSTGRES: &str = "postgres://herald@127.0.0.1:{port}/postgres";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The `postgres` user's id: PostgreSQL refuses to run as root.
fn postgres_uid() -> u32 {
    let out = Command::new("id").args(["-u", "postgres"]).output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a postgres user (apt install postgresql)")
}

impl Postgres {
    pub async fn start() -> Self {
        let port = free_port();
        let dir = fresh_dir(&format!("postgres-{port}"));
        Command::new("chown").args(["-R", "postgres", &dir.display().to_string()]).status().unwrap();
        let initdb = Command::new(format!("{PG_BIN}/initdb"))
            .uid(postgres_uid())
            .args(["-A", "trust", "-U", "herald", "--no-sync"])
            .arg("-D")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .status()
            .expect("initdb runs (apt install postgresql)");
        assert!(initdb.success());
        let mut port = Some(port);
        let fresh = || {
            let port = port.take().unwrap_or_else(free_port);
            Self { server: Server::new(dir.join("log")), port, dir: dir.clone() }
        };
        boot_fresh(fresh).await
    }

    pub fn url(&self) -> String {
        self.url_on(self.port)
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    async fn accepts(url: String) -> bool {
        match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client.simple_query("SELECT 1").await.is_ok()
            }
            Err(_) => false,
        }
    }
}

impl Source for Postgres {
    const KIND: &str = "postgres";
    // The statement that deletes published rows.
    const ACK: &[u8] = b"DELETE FROM";

    fn port(&self) -> u16 {
        self.port
    }

    fn url_on(&self, port: u16) -> String {
        URL_POSTGRES.replace("{port}", &port.to_string())
    }

    async fn send(&self, envelopes: &[Value]) {
        let client = self.client().await;
        let sql = "INSERT INTO herald_outbox (channel, data) SELECT e->>'channel', e->'data' FROM jsonb_array_elements($1::text::jsonb) e";
        for chunk in envelopes.chunks(500) {
            client.execute(sql, &[&Value::from(chunk.to_vec()).to_string()]).await.unwrap();
        }
    }

    async fn send_poison(&self) -> &'static str {
        let client = self.client().await;
        client
            .execute("INSERT INTO herald_outbox (channel, data) VALUES ('no spaces allowed', '1')", &[])
            .await
            .unwrap();
        "no spaces allowed"
    }

    async fn dead(&self) -> Vec<(String, String)> {
        let client = self.client().await;
        let rows = client.query("SELECT data, reason FROM herald_outbox_dead ORDER BY id", &[]).await.unwrap();
        rows.iter().map(|row| (row.get(0), row.get(1))).collect()
    }

    async fn pending(&self) -> u64 {
        let client = self.client().await;
        let count: i64 = client.query_one("SELECT count(*) FROM herald_outbox", &[]).await.unwrap().get(0);
        count as u64
    }

    fn kill(&mut self) {
        self.server.kill();
    }

    async fn boot(&mut self) -> Result<(), String> {
        let data = self.dir.join("data");
        self.server.run(
            // The server itself is the child (not a wrapper such as runuser), so that a kill
            // ends it and the wait reaps it: a postmaster left a zombie blocks the restart.
            Command::new(format!("{PG_BIN}/postgres"))
                .uid(postgres_uid())
                .args(["-p", &self.port.to_string()])
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(&self.dir)
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]),
        );
        let url = self.url();
        self.server.up(WAIT, || Self::accepts(url.clone())).await
    }
}

// === RabbitMQ ===

/// A RabbitMQ node (Debian's `rabbitmq-server`) of its own name, port and data.
pub struct RabbitMq {
    server: Server,
    pub port: u16,
    dist_port: u16,
    dir: PathBuf,
    /// Held while the node lives: an Erlang node takes seconds of CPU to boot, and five booting
    /// at once on two cores (one test binary's tests) took over a minute.
    _turn: Option<tokio::sync::SemaphorePermit<'static>>,
}

/// How many RabbitMQ nodes a test binary runs at once.
static RABBIT_TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

const URL_AMQP: &str = "amqp://guest:guest@127.0.0.1:{port}/%2f";

impl RabbitMq {
    pub async fn start() -> Self {
        let turn = RABBIT_TURNS.acquire().await.unwrap();
        let fresh = || {
            let port = free_port();
            let dir = fresh_dir(&format!("rabbitmq-{port}"));
            std::fs::write(dir.join("enabled_plugins"), "[].").unwrap();
            Self { server: Server::new(dir.join("out")), port, dist_port: free_port(), dir, _turn: None }
        };
        let mut rabbit = boot_fresh(fresh).await;
        rabbit._turn = Some(turn);
        rabbit
    }

    pub fn url(&self) -> String {
        self.url_on(self.port)
    }

    pub async fn channel(&self) -> (lapin::Connection, lapin::Channel) {
        let connection = lapin::Connection::connect(&self.url(), lapin::ConnectionProperties::default()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        (connection, channel)
    }

    async fn publish(&self, channel: &lapin::Channel, body: &[u8], id: Option<String>) {
        let mut properties = lapin::BasicProperties::default().with_delivery_mode(2);
        if let Some(id) = id {
            properties = properties.with_message_id(id.into());
        }
        let options = lapin::options::BasicPublishOptions::default();
        channel.basic_publish("".into(), "herald".into(), options, body, properties).await.unwrap().await.unwrap();
    }
}

impl Source for RabbitMq {
    const KIND: &str = "amqp";
    // basic.ack: class 60, method 80.
    const ACK: &[u8] = &[0, 60, 0, 80];

    fn port(&self) -> u16 {
        self.port
    }

    fn url_on(&self, port: u16) -> String {
        URL_AMQP.replace("{port}", &port.to_string())
    }

    async fn send(&self, envelopes: &[Value]) {
        let (_connection, channel) = self.channel().await;
        channel.confirm_select(Default::default()).await.unwrap();
        for envelope in envelopes {
            let id = format!("msg-{}", envelope["data"]["n"]);
            self.publish(&channel, envelope.to_string().as_bytes(), Some(id)).await;
        }
    }

    async fn send_poison(&self) -> &'static str {
        let (_connection, channel) = self.channel().await;
        self.publish(&channel, b"not json at all", None).await;
        "not a publish envelope"
    }

    async fn dead(&self) -> Vec<(String, String)> {
        let (_connection, channel) = self.channel().await;
        let mut dead = Vec::new();
        let options = lapin::options::BasicGetOptions { no_ack: true };
        while let Some(message) = channel.basic_get("herald.dead".into(), options).await.unwrap() {
            let reason = message.properties.headers().as_ref().and_then(|h| h.inner().get("x-herald-reason").cloned());
            let reason = match reason {
                Some(lapin::types::AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                other => format!("{other:?}"),
            };
            dead.push((String::from_utf8_lossy(&message.data).into_owned(), reason));
        }
        dead
    }

    async fn pending(&self) -> u64 {
        let (_connection, channel) = self.channel().await;
        let options = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        let queue = channel.queue_declare("herald".into(), options, Default::default()).await.unwrap();
        u64::from(queue.message_count())
    }

    fn kill(&mut self) {
        self.server.kill();
    }

    async fn boot(&mut self) -> Result<(), String> {
        let dir = &self.dir;
        self.server.run(
            Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
                .env("HOME", dir)
                .env("RABBITMQ_NODENAME", format!("herald-test-{}@localhost", self.port))
                .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
                .env("RABBITMQ_NODE_PORT", self.port.to_string())
                .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
                .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
                .env("RABBITMQ_LOG_BASE", dir.join("log"))
                .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
                .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
                // A node killed outright writes a crash dump: into its folder, not the crate's.
                .env("ERL_CRASH_DUMP", dir.join("erl_crash.dump"))
                .current_dir(dir),
        );
        let url = self.url();
        let connects = || {
            let url = url.clone();
            async move { lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await.is_ok() }
        };
        self.server.up(Duration::from_secs(120), connects).await
    }
}

// === NATS ===

/// A NATS server with JetStream (Debian's `nats-server`).
pub struct Nats {
    server: Server,
    pub port: u16,
    dir: PathBuf,
}

const URL_NATS: &str = "nats://127.0.0.1:{port}";

impl Nats {
    pub async fn start() -> Self {
        let fresh = || {
            let port = free_port();
            let dir = fresh_dir(&format!("nats-{port}"));
            Self { server: Server::new(dir.join("log")), port, dir }
        };
        boot_fresh(fresh).await
    }

    pub fn url(&self) -> String {
        self.url_on(self.port)
    }

    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(async_nats::connect(self.url()).await.unwrap())
    }
}

impl Source for Nats {
    const KIND: &str = "nats";
    // An ack is a publish to the message's `$JS.ACK.…` reply subject.
    const ACK: &[u8] = b"$JS.ACK";

    fn port(&self) -> u16 {
        self.port
    }

    fn url_on(&self, port: u16) -> String {
        URL_NATS.replace("{port}", &port.to_string())
    }

    async fn send(&self, envelopes: &[Value]) {
        let jetstream = self.jetstream().await;
        for envelope in envelopes {
            let sent = jetstream.publish("herald.orders", envelope.to_string().into()).await.unwrap();
            sent.await.unwrap();
        }
    }

    async fn send_poison(&self) -> &'static str {
        let jetstream = self.jetstream().await;
        jetstream.publish("herald.orders", "{\"data\":1}".into()).await.unwrap().await.unwrap();
        "no channel"
    }

    async fn dead(&self) -> Vec<(String, String)> {
        let jetstream = self.jetstream().await;
        let mut stream = jetstream.get_stream("HERALD_DEAD").await.unwrap();
        let count = stream.info().await.unwrap().state.messages;
        let mut dead = Vec::new();
        for seq in 1..=count {
            let message = stream.get_raw_message(seq).await.unwrap();
            let reason = message.headers.get("Herald-Reason").map(|v| v.as_str().to_owned()).unwrap_or_default();
            dead.push((String::from_utf8_lossy(&message.payload).into_owned(), reason));
        }
        dead
    }

    async fn pending(&self) -> u64 {
        let jetstream = self.jetstream().await;
        let stream = jetstream.get_stream("HERALD").await.unwrap();
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer(CONSUMER).await.unwrap();
        let info = consumer.info().await.unwrap();
        info.num_pending + info.num_ack_pending as u64
    }

    fn kill(&mut self) {
        self.server.kill();
    }

    async fn boot(&mut self) -> Result<(), String> {
        self.server.run(
            Command::new("nats-server")
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
                .arg(&self.dir),
        );
        let port = self.port;
        self.server.up(WAIT, || async move { tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() }).await
    }
}
