//! A real `redis-server` for the Redis engine's black-box tests, and Herald nodes on it.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{FRESH_TRIES, TestServer, WAIT, free_port};

/// A `redis-server` on 127.0.0.1; killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    pub args: Vec<String>,
}

impl Redis {
    /// Starts a Redis that keeps nothing on disk: a restart loses every channel.
    pub fn start() -> Self {
        Self::with_args(&["--save", "", "--appendonly", "no"])
    }

    pub fn with_args(args: &[&str]) -> Self {
        // A new one on fresh ports if it exits while starting (see `FRESH_TRIES`).
        let mut why = String::new();
        for _ in 0..FRESH_TRIES {
            let mut redis = Self::on_fresh_port(args);
            match redis.try_spawn() {
                Ok(()) => return redis,
                Err(reason) => why = reason,
            }
        }
        panic!("redis-server did not start in {FRESH_TRIES} tries: {why}");
    }

    fn on_fresh_port(args: &[&str]) -> Self {
        let cluster = args.contains(&"--cluster-enabled");
        let port = loop {
            let port = free_port();
            // A cluster node also listens on its port + 10000 (the cluster bus).
            let bus_free = || port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok();
            if !cluster || bus_free() {
                break port;
            }
        };
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-{port}"));
        // Fresh: a cluster node's nodes.conf left by an earlier run on this port would make it
        // "not empty" to `redis-cli --cluster create`.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--dir".into(), dir.display().to_string()]);
        Self { child: None, port, args: all }
    }

    /// Starts it (again) on its port; panics if it does not listen within [`WAIT`].
    pub fn spawn(&mut self) {
        if let Err(why) = self.try_spawn() {
            panic!("redis-server did not start: {why}");
        }
    }

    /// Starts it on its port and waits until it listens; why not, if it exits first or
    /// [`WAIT`] passes.
    fn try_spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(&self.args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt install redis-server)");
        let child = self.child.insert(child);
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!("it exited ({status}) on port {}", self.port));
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!("it did not listen on port {} within {WAIT:?}", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command with `redis-cli`.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn node(redis: &Redis) -> TestServer {
    let engine = format!("engine=\"{}\"", redis.url());
    // Anonymous publishing on: one test publishes over a WebSocket. `room:` keeps presence.
    TestServer::with_tokens(&[
        engine.as_str(),
        "anonymous_publish=true",
        "namespaces={room={presence=true,join_leave=true}}",
    ])
}

pub async fn ready(node: &TestServer) -> bool {
    let r = node.http.get(format!("{}/readyz", node.base)).send().await.unwrap();
    r.status() == 200
}

/// Waits until every node reports `want` on `/readyz`.
pub async fn wait_ready(nodes: &[&TestServer], want: bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    for node in nodes {
        while ready(node).await != want {
            assert!(tokio::time::Instant::now() < deadline, "{} never became ready={want}", node.base);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
