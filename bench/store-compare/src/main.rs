//! Herald's durable log against fjall, on the writes Herald makes: records of ~100 bytes of
//! data for 100 channels, appended by 32 publishers at a time, each batch synced before its
//! publishers are answered (`durability = "fsync"`); then a restart's replay; then the bytes
//! on disk. Run: `cargo run --release --manifest-path bench/store-compare/Cargo.toml [records]`.

use std::{path::Path, time::Instant};

use herald_server::store::{Durability, Kind, Record, Store, StoreOptions};

const BATCH: usize = 32;

fn record(i: u64) -> Record {
    Record {
        kind: Kind::Message,
        lsn: i + 1,
        channel: format!("chat:room-{}", i % 100),
        epoch: "k3j2x8Kq".into(),
        offset: i / 100 + 1,
        time_ms: 1_795_000_000_000 + i,
        event: Some("message".into()),
        key: None,
        data: format!(r#"{{"text":"message number {i} with a little padding to be realistic","n":{i}}}"#).into_bytes(),
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() { dir_bytes(&p) } else { e.metadata().map_or(0, |m| m.len()) }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let records: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let root = std::env::temp_dir().join(format!("herald-store-compare-{}", std::process::id()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");

    // Herald's log.
    let log_dir = root.join("log");
    let options = || StoreOptions {
        dir: log_dir.clone(),
        durability: Durability::Fsync,
        group_commit: std::time::Duration::from_millis(5),
        segment_bytes: 16 * 1024 * 1024,
    };
    let (store, _) = Store::open(options()).expect("open the log");
    let started = Instant::now();
    for batch in 0..records / BATCH as u64 {
        let mut last = 0;
        for i in 0..BATCH as u64 {
            last = store.append(&record(batch * BATCH as u64 + i));
        }
        runtime.block_on(store.wait_durable(last)).expect("durable");
    }
    let log_write = started.elapsed();
    store.close();
    drop(store);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let started = Instant::now();
    let (store, replayed) = Store::open(options()).expect("reopen the log");
    let log_replay = started.elapsed();
    assert_eq!(replayed.len() as u64, records / BATCH as u64 * BATCH as u64);
    store.close();
    let log_bytes = dir_bytes(&log_dir);

    // fjall: one partition, key = channel + offset, the same record bytes as the value.
    let fjall_dir = root.join("fjall");
    let keyspace = fjall::Config::new(&fjall_dir).open().expect("open fjall");
    let partition = keyspace.open_partition("history", fjall::PartitionCreateOptions::default()).expect("partition");
    let started = Instant::now();
    for batch in 0..records / BATCH as u64 {
        for i in 0..BATCH as u64 {
            let r = record(batch * BATCH as u64 + i);
            let mut key = r.channel.clone().into_bytes();
            key.extend_from_slice(&r.offset.to_be_bytes());
            let mut value = Vec::new();
            r.encode(&mut value);
            partition.insert(key, value).expect("insert");
        }
        keyspace.persist(fjall::PersistMode::SyncData).expect("persist");
    }
    let fjall_write = started.elapsed();
    drop(partition);
    drop(keyspace);
    let started = Instant::now();
    let keyspace = fjall::Config::new(&fjall_dir).open().expect("reopen fjall");
    let partition = keyspace.open_partition("history", fjall::PartitionCreateOptions::default()).expect("partition");
    let scanned = partition.iter().filter_map(Result::ok).count();
    let fjall_replay = started.elapsed();
    assert_eq!(scanned as u64, records / BATCH as u64 * BATCH as u64);
    drop(partition);
    drop(keyspace);
    let fjall_bytes = dir_bytes(&fjall_dir);

    let per_sec = |d: std::time::Duration| records as f64 / d.as_secs_f64();
    println!("{records} records, {BATCH} per synced batch");
    println!("| store | records/s written (a sync per batch) | replay at start (ms) | bytes on disk |");
    println!("|---|---:|---:|---:|");
    println!("| Herald log | {:.0} | {:.0} | {log_bytes} |", per_sec(log_write), log_replay.as_secs_f64() * 1000.0);
    println!("| fjall 2 | {:.0} | {:.0} | {fjall_bytes} |", per_sec(fjall_write), fjall_replay.as_secs_f64() * 1000.0);
    let _ = std::fs::remove_dir_all(&root);
}
