//! The PostgreSQL outbox: the application inserts a row into the outbox table in the same
//! transaction as its own write; Herald reads the rows in id order, publishes them, and
//! deletes them once the publishes are durable (moving rows that cannot be published to
//! `<table>_dead` with the reason, in the same transaction).
//!
//! Herald creates the tables and an insert trigger that notifies it (`LISTEN`) when they are
//! missing (PostgreSQL 14 or newer); it reads at least every `poll_ms` without a notification.
//! A session holds an advisory lock on the table, so one Herald reads an outbox at a time.
//! The idempotency key of a row is its `idempotency_key`, or `<consumer>:<id>`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::{Incoming, Outcome, Source, SourceError, mapping};
use crate::config::ConsumerConfig;

/// An outbox session: the client, woken by the table's notifications.
pub struct Outbox {
    client: Client,
    config: ConsumerConfig,
    woken: Arc<Notify>,
    /// Whether rows may be waiting without a notification (the last read was full, or none
    /// was made yet).
    more: bool,
    last_read: Instant,
    connection: tokio::task::JoinHandle<()>,
    sql: Statements,
}

/// The statements of one table.
struct Statements {
    read: String,
    dead: String,
    delete: String,
    count: String,
}

/// A row's settlement: its id.
pub struct RowId(i64);

// === impl Outbox ===

impl Outbox {
    /// Connects, takes the table's advisory lock, creates what is missing and listens.
    pub async fn connect(config: &ConsumerConfig) -> Result<Self, SourceError> {
        let (client, mut connection) =
            tokio_postgres::connect(&config.url, NoTls).await.map_err(|e| SourceError::new("connecting", e))?;
        let woken = Arc::new(Notify::new());
        let wake = woken.clone();
        let connection = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(_) = message {
                    wake.notify_one();
                }
            }
        });
        let table = &config.table;
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&format!("herald-outbox:{table}")])
            .await
            .map_err(|e| SourceError::new("locking the outbox", e))?
            .get(0);
        if !locked {
            connection.abort();
            return Err(SourceError(format!("another session holds the outbox {table:?}")));
        }
        client.batch_execute(&setup_sql(table)).await.map_err(|e| SourceError::new("creating the outbox", e))?;
        Ok(Self {
            client,
            config: config.clone(),
            woken,
            more: true,
            last_read: Instant::now(),
            connection,
            sql: Statements {
                read: format!(
                    r#"SELECT id, channel, event, data::text, idempotency_key FROM "{table}" ORDER BY id LIMIT $1"#
                ),
                dead: format!(
                    r#"INSERT INTO "{table}_dead" (id, channel, event, data, idempotency_key, created_at, reason)
                       SELECT id, channel, event, data::text, idempotency_key, created_at, $2 FROM "{table}"
                       WHERE id = $1 ON CONFLICT (id) DO NOTHING"#
                ),
                delete: format!(r#"DELETE FROM "{table}" WHERE id = ANY($1)"#),
                count: format!(r#"SELECT count(*) FROM "{table}""#),
            },
        })
    }

    /// The row as a publish.
    fn map(&self, row: &tokio_postgres::Row) -> Result<mapping::Mapped, mapping::Unmappable> {
        let id: i64 = row.get(0);
        let channel: Option<String> = row.get(1);
        let event: Option<String> = row.get(2);
        let data: Option<String> = row.get(3);
        let key: Option<String> = row.get(4);
        let data = mapping::parse_data(data.as_deref().unwrap_or("null"))?;
        let key = key.unwrap_or_else(|| format!("{}:{id}", self.config.name));
        mapping::map_fields(&self.config, channel.as_deref(), event, data, Some(key))
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Closes the connection, which lets the advisory lock go.
        self.connection.abort();
    }
}

impl Source for Outbox {
    type Ticket = RowId;

    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<Incoming<RowId>>, SourceError> {
        let poll = Duration::from_millis(self.config.poll_ms);
        if !self.more {
            let due = poll.saturating_sub(self.last_read.elapsed());
            let woken = tokio::time::timeout(due.min(wait), self.woken.notified()).await.is_ok();
            if !woken && self.last_read.elapsed() < poll {
                return Ok(Vec::new());
            }
        }
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = self.client.query(&self.sql.read, &[&limit]).await.map_err(|e| SourceError::new("reading", e))?;
        self.last_read = Instant::now();
        self.more = rows.len() == max;
        Ok(rows.iter().map(|row| Incoming { mapped: self.map(row), ticket: RowId(row.get(0)) }).collect())
    }

    async fn settle(&mut self, settled: Vec<(RowId, Outcome)>) -> Result<(), SourceError> {
        let failed = |e| SourceError::new("deleting published rows", e);
        let transaction = self.client.transaction().await.map_err(failed)?;
        let mut ids = Vec::with_capacity(settled.len());
        for (RowId(id), outcome) in &settled {
            if let Outcome::Dead(reason) = outcome {
                transaction.execute(&self.sql.dead, &[id, reason]).await.map_err(failed)?;
            }
            ids.push(*id);
        }
        transaction.execute(&self.sql.delete, &[&ids]).await.map_err(failed)?;
        transaction.commit().await.map_err(failed)
    }

    async fn lag(&mut self) -> Option<u64> {
        let count: i64 = self.client.query_one(&self.sql.count, &[]).await.ok()?.get(0);
        u64::try_from(count).ok()
    }
}

/// Creates the outbox table, its dead-letter table and the notifying trigger when missing,
/// and listens for the notifications.
fn setup_sql(table: &str) -> String {
    format!(
        r#"
CREATE TABLE IF NOT EXISTS "{table}" (
  id bigserial PRIMARY KEY,
  channel text,
  event text,
  data jsonb NOT NULL,
  idempotency_key text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS "{table}_dead" (
  id bigint PRIMARY KEY,
  channel text,
  event text,
  data text,
  idempotency_key text,
  created_at timestamptz,
  reason text NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION "{table}_notify"() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_notify('{table}', ''); RETURN NULL; END $$;
CREATE OR REPLACE TRIGGER "{table}_notify" AFTER INSERT ON "{table}"
  FOR EACH STATEMENT EXECUTE FUNCTION "{table}_notify"();
LISTEN "{table}";
"#
    )
}
