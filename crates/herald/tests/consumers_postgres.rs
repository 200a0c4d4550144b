//! A PostgreSQL outbox consumed into a channel, against a real server started by the test: order,
//! acknowledgements, a Herald killed mid-stream, the source restarted, a poison message, two
//! nodes on Redis (the scenarios are in `common/consumers.rs`).

mod common;

use common::{consumers, sources::Postgres};

#[tokio::test]
async fn messages_reach_subscribers_in_order_and_are_acknowledged() {
    consumers::delivers_in_order_and_acknowledges(&Postgres::start().await).await;
}

#[tokio::test]
async fn a_herald_killed_mid_stream_publishes_every_message_once_after_restart() {
    consumers::survives_a_killed_herald_exactly_once(&Postgres::start().await, "postgres").await;
}

#[tokio::test]
async fn a_restarted_source_is_reconnected_and_nothing_is_lost() {
    consumers::survives_a_restarted_source(&mut Postgres::start().await).await;
}

#[tokio::test]
async fn a_poison_message_goes_to_the_dead_letter_path_with_its_reason() {
    consumers::dead_letters_a_poison_message(&Postgres::start().await).await;
}

#[tokio::test]
async fn two_nodes_on_redis_publish_each_message_once() {
    consumers::two_nodes_publish_once(&Postgres::start().await).await;
}
