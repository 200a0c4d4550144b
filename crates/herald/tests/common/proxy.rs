//! A TCP forwarder on 127.0.0.1 that can start dropping what its clients send, from the first
//! write holding a given pattern (a source's acknowledgement on the wire), while still passing
//! what the server answers: Herald then publishes messages whose acknowledgements never reach
//! the source — the redelivery a crash between publish and ack makes, made on purpose. A
//! client that goes away closes its server connection, so the source sees it go.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A forwarder to one server; stops on drop.
pub struct Proxy {
    pub port: u16,
    cut: Arc<Cut>,
    task: tokio::task::JoinHandle<()>,
}

/// When clients' bytes stop reaching the server.
#[derive(Default)]
struct Cut {
    /// The pattern whose first appearance starts the drop.
    armed: Mutex<Option<Vec<u8>>>,
    /// Whether clients' bytes are dropped now.
    dropping: AtomicBool,
}

impl Proxy {
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(Cut::default());
        let shared = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else { continue };
                tokio::spawn(forward(client, server, shared.clone()));
            }
        });
        Self { port, cut, task }
    }

    /// From the first client write holding `pattern` on, drops what clients send (that write
    /// included).
    pub fn drop_from(&self, pattern: &[u8]) {
        *self.cut.armed.lock().unwrap() = Some(pattern.to_vec());
    }

    /// Whether the drop started.
    pub fn dropping(&self) -> bool {
        self.cut.dropping.load(Ordering::SeqCst)
    }

    /// Passes clients' bytes again (for new connections: one that lost bytes is of no use).
    pub fn pass(&self) {
        *self.cut.armed.lock().unwrap() = None;
        self.cut.dropping.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Cut {
    /// Whether `bytes` are to be dropped (starting the drop when they hold the pattern).
    fn drops(&self, bytes: &[u8]) -> bool {
        if self.dropping.load(Ordering::SeqCst) {
            return true;
        }
        let armed = self.armed.lock().unwrap();
        let hit = armed.as_ref().is_some_and(|p| bytes.windows(p.len()).any(|w| w == p.as_slice()));
        if hit {
            self.dropping.store(true, Ordering::SeqCst);
        }
        hit
    }
}

async fn forward(client: TcpStream, server: TcpStream, cut: Arc<Cut>) {
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = server.into_split();
    let answers = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_in, &mut client_out).await;
    });
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n) = client_in.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if cut.drops(&buf[..n]) {
            continue;
        }
        if server_out.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    answers.abort();
}
