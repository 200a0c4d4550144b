//! Reports: the table printed at the end, `bench.json`, `bench.md` and `bench.svg`.
//!
//! Every figure comes from a [`Row`]; nothing is rounded before it is written to JSON.

use std::{fmt::Write as _, path::Path};

use crate::{
    scenario::{Row, Scenario},
    target::{ServerKind, Transport},
};

/// Whether a lower or a higher value of a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Less is better (latency, memory, CPU, loss).
    Lower,
    /// More is better (throughput).
    Higher,
}

/// The figures shown in reports: key, label, and which way is better.
pub const FIGURES: &[(&str, &str, Better)] = &[
    ("rss_per_connection_kib", "server RSS per connection (KiB)", Better::Lower),
    ("idle_server_cpu_pct", "server CPU while idle (% of a core)", Better::Lower),
    ("idle_bytes_per_client_min", "bytes per idle client per minute", Better::Lower),
    ("latency_p50_ms", "latency p50 (ms)", Better::Lower),
    ("latency_p90_ms", "latency p90 (ms)", Better::Lower),
    ("latency_p99_ms", "latency p99 (ms)", Better::Lower),
    ("latency_p999_ms", "latency p99.9 (ms)", Better::Lower),
    ("latency_max_ms", "latency max (ms)", Better::Lower),
    ("first_delivery_p50_ms", "a message's first delivery, median (ms)", Better::Lower),
    ("last_delivery_p50_ms", "a message's last delivery, median (ms)", Better::Lower),
    ("server_cpu_pct", "server CPU (% of a core)", Better::Lower),
    ("server_cpu_us_per_delivery", "server CPU per delivery (µs)", Better::Lower),
    ("server_user_cpu_us_per_delivery", "server user-space CPU per delivery (µs)", Better::Lower),
    ("bytes_per_delivery", "bytes on the wire per delivery", Better::Lower),
    ("deliveries_per_sec", "deliveries per second", Better::Higher),
    ("lost", "lost", Better::Lower),
    ("duplicated", "duplicated", Better::Lower),
    ("out_of_order", "out of order", Better::Lower),
    ("publish_failures", "failed publishes", Better::Lower),
    ("max_sustained_rate", "highest sustained rate (msg/s)", Better::Higher),
    ("max_sustained_deliveries_per_sec", "highest sustained deliveries/s", Better::Higher),
    ("resubscribed_secs", "all resubscribed after (s)", Better::Lower),
    ("recovered_secs", "all recovered after (s)", Better::Lower),
    ("publishes_per_sec", "publishes per second", Better::Higher),
    ("broadcasts_per_sec", "broadcasts (10 channels) per second", Better::Higher),
    ("broadcast_messages_per_sec", "broadcast messages per second", Better::Higher),
    ("messages_latency_p50_ms", "as messages: latency p50 (ms)", Better::Lower),
    ("messages_latency_p99_ms", "as messages: latency p99 (ms)", Better::Lower),
    ("messages_server_cpu_us_per_delivery", "as messages: server CPU per delivery (µs)", Better::Lower),
    ("messages_bytes_per_delivery", "as messages: bytes on the wire per delivery", Better::Lower),
    ("messages_lost", "as messages: lost", Better::Lower),
    ("deflate_bytes_per_delivery", "deflate: bytes on the wire per delivery", Better::Lower),
    ("deflate_server_cpu_us_per_delivery", "deflate: server CPU per delivery (µs)", Better::Lower),
    ("deflate_latency_p99_ms", "deflate: latency p99 (ms)", Better::Lower),
    ("deflate_lost", "deflate: lost", Better::Lower),
    ("compact_bytes_per_delivery", "compact: bytes on the wire per delivery", Better::Lower),
    ("compact_server_cpu_us_per_delivery", "compact: server CPU per delivery (µs)", Better::Lower),
    ("compact_lost", "compact: lost", Better::Lower),
    ("compact_deflate_bytes_per_delivery", "compact + deflate: bytes on the wire per delivery", Better::Lower),
    ("compact_deflate_server_cpu_us_per_delivery", "compact + deflate: server CPU per delivery (µs)", Better::Lower),
    ("compact_deflate_lost", "compact + deflate: lost", Better::Lower),
    ("connect_p99_ms", "connect p99 (ms)", Better::Lower),
    ("connect_failures", "connect failures", Better::Lower),
    ("bench_cpu_pct", "bench CPU (% of a core)", Better::Lower),
];

fn label(row: &Row) -> String {
    let server = match row.server {
        ServerKind::Herald => "Herald",
        ServerKind::Nchan => "Nchan",
    };
    match row.transport {
        Some(t) => format!("{server} {}", t.name()),
        None => server.to_string(),
    }
}

fn value(rows: &[Row], scenario: Scenario, server: ServerKind, transport: Option<Transport>, key: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.scenario == scenario && r.server == server && r.transport == transport)
        .and_then(|r| r.figures.get(key).copied())
}

fn format_value(v: f64) -> String {
    if v == 0.0 || v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The summary in the shape of the table that circulates in transport comparisons.
pub fn summary(rows: &[Row]) -> String {
    let lines: &[(&str, Scenario, &str)] = &[
        ("RSS per idle connection (KiB)", Scenario::Idle, "rss_per_connection_kib"),
        ("CPU with idle connections (%)", Scenario::Idle, "idle_server_cpu_pct"),
        ("bytes per idle client per minute", Scenario::Idle, "idle_bytes_per_client_min"),
        ("seed latency p50 (ms)", Scenario::Seed, "latency_p50_ms"),
        ("seed latency p99 (ms)", Scenario::Seed, "latency_p99_ms"),
        ("seed latency p99.9 (ms)", Scenario::Seed, "latency_p999_ms"),
        ("seed server CPU (%)", Scenario::Seed, "server_cpu_pct"),
        ("seed lost", Scenario::Seed, "lost"),
        ("fanout CPU per delivery (µs)", Scenario::Fanout, "server_cpu_us_per_delivery"),
        ("fanout user-space CPU per delivery (µs)", Scenario::Fanout, "server_user_cpu_us_per_delivery"),
        ("fanout latency p99 (ms)", Scenario::Fanout, "latency_p99_ms"),
        ("fanout latency p99.9 (ms)", Scenario::Fanout, "latency_p999_ms"),
        ("fanout: a message's first delivery (ms)", Scenario::Fanout, "first_delivery_p50_ms"),
        ("fanout: a message's last delivery (ms)", Scenario::Fanout, "last_delivery_p50_ms"),
        ("fanout lost", Scenario::Fanout, "lost"),
        ("ramp: highest sustained msg/s", Scenario::Ramp, "max_sustained_rate"),
        ("reconnect: all recovered after (s)", Scenario::Reconnect, "recovered_secs"),
        ("reconnect lost", Scenario::Reconnect, "lost"),
        ("1 KB posting: bytes per delivery, plain", Scenario::Compression, "bytes_per_delivery"),
        ("1 KB posting: bytes per delivery, deflate", Scenario::Compression, "deflate_bytes_per_delivery"),
        ("1 KB posting: CPU per delivery, deflate (µs)", Scenario::Compression, "deflate_server_cpu_us_per_delivery"),
    ];
    let servers: Vec<ServerKind> =
        [ServerKind::Herald, ServerKind::Nchan].into_iter().filter(|s| rows.iter().any(|r| r.server == *s)).collect();
    let transports = [Transport::Ws, Transport::Sse, Transport::Poll];
    let mut out = String::from("| figure |");
    for server in &servers {
        for t in transports {
            let _ = write!(out, " {} {} |", if *server == ServerKind::Herald { "Herald" } else { "Nchan" }, t.name());
        }
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(servers.len() * 3));
    out.push('\n');
    for (name, scenario, key) in lines {
        if !rows.iter().any(|r| r.scenario == *scenario && r.figures.contains_key(*key)) {
            continue;
        }
        let _ = write!(out, "| {name} |");
        for server in &servers {
            for t in transports {
                let cell = value(rows, *scenario, *server, Some(t), key).map_or("–".into(), format_value);
                let _ = write!(out, " {cell} |");
            }
        }
        out.push('\n');
    }
    for server in &servers {
        if let Some(v) = value(rows, Scenario::Publish, *server, None, "publishes_per_sec") {
            let name = if *server == ServerKind::Herald { "Herald" } else { "Nchan" };
            let _ = writeln!(out, "\n{name}: {} API publishes per second.", format_value(v));
        }
    }
    out
}

/// One Markdown table per scenario: a row per server and transport, a column per figure, and
/// where both servers ran, Herald's value as a ratio of Nchan's.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut scenarios: Vec<Scenario> = rows.iter().map(|r| r.scenario).collect();
    scenarios.sort();
    scenarios.dedup();
    for scenario in scenarios {
        let these: Vec<&Row> = rows.iter().filter(|r| r.scenario == scenario).collect();
        let keys: Vec<&(&str, &str, Better)> =
            FIGURES.iter().filter(|(k, _, _)| these.iter().any(|r| r.figures.contains_key(*k))).collect();
        let _ = writeln!(out, "### {}\n", serde_json::to_string(&scenario).unwrap_or_default().trim_matches('"'));
        out.push_str("| |");
        for (_, name, _) in &keys {
            let _ = write!(out, " {name} |");
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(keys.len()));
        out.push('\n');
        for row in &these {
            let _ = write!(out, "| {} |", label(row));
            for (key, _, _) in &keys {
                let cell = row.figures.get(*key).map_or("–".into(), |v| format_value(*v));
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
            if row.server == ServerKind::Nchan {
                continue;
            }
            if let Some(peer) = these.iter().find(|r| r.server == ServerKind::Nchan && r.transport == row.transport) {
                let _ = write!(out, "| Herald ÷ Nchan |");
                for (key, _, _) in &keys {
                    let cell = match (row.figures.get(*key), peer.figures.get(*key)) {
                        (Some(h), Some(n)) if *n != 0.0 => format!("{:.2}×", h / n),
                        _ => "–".into(),
                    };
                    let _ = write!(out, " {cell} |");
                }
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out
}

/// A chart of the key figures: one panel per figure, bars per transport for each server.
pub fn svg(rows: &[Row]) -> String {
    let panels: &[(&str, Scenario, &str)] = &[
        ("idle: RSS per connection (KiB)", Scenario::Idle, "rss_per_connection_kib"),
        ("seed: p99 latency (ms)", Scenario::Seed, "latency_p99_ms"),
        ("seed: server CPU (% of a core)", Scenario::Seed, "server_cpu_pct"),
        ("fanout: server CPU per delivery (µs)", Scenario::Fanout, "server_cpu_us_per_delivery"),
        ("fanout: p99 latency (ms)", Scenario::Fanout, "latency_p99_ms"),
    ];
    let transports = [Transport::Ws, Transport::Sse, Transport::Poll];
    let servers = [(ServerKind::Herald, "#2b7bb9", "Herald"), (ServerKind::Nchan, "#d9822b", "Nchan")];
    let (panel_w, panel_h, bar_w) = (300.0, 220.0, 28.0);
    let width = panel_w * panels.len() as f64;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" font-family="sans-serif" font-size="11">"#,
        h = panel_h + 40.0
    );
    let _ = write!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (p, (title, scenario, key)) in panels.iter().enumerate() {
        let x0 = p as f64 * panel_w + 20.0;
        let _ = write!(out, r#"<text x="{x0}" y="16" font-weight="bold">{title}</text>"#);
        let values: Vec<Option<f64>> = transports
            .iter()
            .flat_map(|t| servers.iter().map(move |(s, _, _)| value(rows, *scenario, *s, Some(*t), key)))
            .collect();
        let max = values.iter().flatten().fold(0.0f64, |a, b| a.max(*b)).max(f64::MIN_POSITIVE);
        let base_y = panel_h - 10.0;
        for (ti, t) in transports.iter().enumerate() {
            let gx = x0 + ti as f64 * (2.0 * bar_w + 20.0);
            for (si, (server, color, _)) in servers.iter().enumerate() {
                let Some(v) = value(rows, *scenario, *server, Some(*t), key) else { continue };
                let h = (v / max) * (panel_h - 60.0);
                let x = gx + si as f64 * bar_w;
                let _ = write!(
                    out,
                    r#"<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{color}"/><text x="{tx}" y="{ty}" text-anchor="middle">{v}</text>"#,
                    y = base_y - h,
                    w = bar_w - 2.0,
                    tx = x + bar_w / 2.0 - 1.0,
                    ty = base_y - h - 3.0,
                    v = format_value(v),
                );
            }
            let _ = write!(
                out,
                r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                gx + bar_w,
                base_y + 14.0,
                t.name()
            );
        }
    }
    for (i, (_, color, name)) in servers.iter().enumerate() {
        let x = 20.0 + i as f64 * 90.0;
        let y = panel_h + 22.0;
        let _ = write!(out, r#"<rect x="{x}" y="{}" width="12" height="12" fill="{color}"/>"#, y - 10.0);
        let _ = write!(out, r#"<text x="{}" y="{y}">{name}</text>"#, x + 16.0);
    }
    out.push_str("</svg>\n");
    out
}

/// What a publishing window of `duration_secs` holds of the server's heartbeats: a
/// heartbeat's cost shows in the latency figures only if the window spans heartbeat rounds.
/// `heartbeat_secs`: the local Herald's (`None`: a remote server, whose setting the bench
/// cannot know). `repeated`: the `--repeat` count when a repeated scenario ran (see
/// [`Scenario::is_repeated`]); more than one run is said, with how the figures combine them.
pub fn window_note(duration_secs: u64, heartbeat_secs: Option<u64>, repeated: Option<u32>) -> String {
    let mut note = match heartbeat_secs {
        None => format!(
            "Windows: {duration_secs} s of publishing; the remote server's heartbeat interval is unknown: make the window at least two of them."
        ),
        Some(heartbeat) if duration_secs >= 2 * heartbeat => format!(
            "Windows: {duration_secs} s of publishing with `heartbeat_secs` = {heartbeat}: each window spans {} heartbeat rounds, so their cost is in the figures.",
            duration_secs / heartbeat
        ),
        Some(heartbeat) => format!(
            "Windows: {duration_secs} s of publishing with `heartbeat_secs` = {heartbeat}: shorter than two heartbeat rounds, so the figures may miss their cost (use --duration {} or more).",
            2 * heartbeat
        ),
    };
    if let Some(runs) = repeated.filter(|&runs| runs > 1) {
        note.push_str(&format!(
            " Seed and fanout: {runs} runs per server, the servers in turn; each figure is the median of the runs, the counts of losses and failures the highest (bench.json keeps every run)."
        ));
    }
    note
}

/// Writes `bench.json`, `bench.md` and `bench.svg` into `dir`; `windows` says what the
/// measured windows hold (see [`window_note`]).
pub fn write(dir: &Path, rows: &[Row], command: &str, windows: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::json!({ "command": command, "windows": windows, "rows": rows });
    std::fs::write(dir.join("bench.json"), serde_json::to_vec_pretty(&json)?)?;
    let md = format!(
        "Command: `{command}`\n\n{windows}\n\n## Summary\n\n{}\n## By scenario\n\n{}",
        summary(rows),
        markdown(rows)
    );
    std::fs::write(dir.join("bench.md"), md)?;
    std::fs::write(dir.join("bench.svg"), svg(rows))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::window_note;

    #[test]
    fn the_window_note_says_whether_heartbeats_are_in_the_window() {
        assert!(window_note(30, Some(15), None).contains("spans 2 heartbeat rounds"));
        assert!(window_note(10, Some(15), None).contains("use --duration 30 or more"));
        assert!(window_note(30, None, None).contains("unknown"));
    }

    #[test]
    fn the_window_note_says_how_repeated_runs_combine() {
        assert!(window_note(30, Some(15), Some(3)).contains("3 runs per server"));
        assert!(!window_note(30, Some(15), Some(1)).contains("runs per server"), "one run is no repeat");
        assert!(!window_note(30, Some(15), None).contains("runs per server"));
    }
}
