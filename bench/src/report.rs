//! The results: a markdown table, `results.json`, and an SVG chart of latency
//! percentiles against load.

use crate::load::{ClusterStep, Deliveries, Joins, Step};
use crate::logins::LoginFlood;
use crate::transports::{TransportRun, Transports};
use crate::{Fanout, RedisVsMemory, ServerResults};
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub server_binary: String,
    pub lanchat_commit: String,
}

impl Machine {
    pub fn describe(server: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let commit = std::process::Command::new("git")
            .args([
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "rev-parse",
                "--short",
                "HEAD",
            ])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Machine {
            cpu,
            cores: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as usize,
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel,
            server_binary: server.display().to_string(),
            lanchat_commit: commit,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub quick: bool,
    pub clients: usize,
    pub lanchat: ServerResults,
    pub reference: ServerResults,
    pub seconds: f64,
}

/// One line per step, for the progress log.
pub fn step_line(s: &Step) -> String {
    format!(
        "offered {:>9.0}/s delivered {:>9.0}/s lost {} p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} ms, {} senders, dropped {}, errors {}, generator cpu {:.0}%{}",
        s.offered_per_s,
        s.deliveries.delivered_per_s,
        s.deliveries.lost,
        s.deliveries.p50_ms,
        s.deliveries.p90_ms,
        s.deliveries.p99_ms,
        s.deliveries.max_ms,
        s.senders,
        s.dropped_clients,
        s.errors,
        s.generator_cpu * 100.0,
        if s.passes() { "" } else { "  FAIL" }
    )
}

/// The cluster step, for the progress log.
pub fn cluster_line(s: &ClusterStep) -> String {
    let part = |d: &Deliveries| {
        format!(
            "{:.0}/s lost {} p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} ms",
            d.delivered_per_s, d.lost, d.p50_ms, d.p90_ms, d.p99_ms, d.max_ms
        )
    };
    format!(
        "offered {:.0}/s delivered {:.0}/s lost {}; same server {}; across servers {}; dropped {}, errors {}, generator cpu {:.0}%",
        s.offered_per_s,
        s.delivered_per_s,
        s.lost,
        part(&s.same_server),
        part(&s.across_servers),
        s.dropped_clients,
        s.errors,
        s.generator_cpu * 100.0
    )
}

/// A join measurement, for the progress log.
pub fn joins_line(j: &Joins) -> String {
    format!(
        "join, {}, {}: {} joins, {} messages in history, p50 {:.3} p90 {:.3} p99 {:.3} max {:.3} ms",
        j.store,
        join_kind(j),
        j.joins,
        j.history_messages,
        j.p50_ms,
        j.p90_ms,
        j.p99_ms,
        j.max_ms
    )
}

/// What kind of join `j` measured.
fn join_kind(j: &Joins) -> String {
    match j.after {
        None => "plain GET /ws".to_string(),
        Some(seq) => format!("after={seq}, {}", after_note(j)),
    }
}

/// What the SEQ of a join with `after` was.
fn after_note(j: &Joins) -> &'static str {
    if j.server_sends_seq {
        "the latest seq: nothing missed"
    } else {
        "the server sent no seq"
    }
}

/// The held polls, for the progress log.
pub fn polls_line(p: &crate::held::Polls) -> String {
    format!(
        "fixed load with {} long polls held ({} sessions): {}; held {} at start, {} at end, fewest {}; {} answered, {} failed; {} server threads",
        p.polls,
        p.sessions,
        step_line(&p.during_polls),
        p.held_at_start,
        p.held_at_end,
        p.held_min,
        p.answered,
        p.failed,
        p.server_threads
    )
}

/// How the downloaders read: their rate and where they ran.
pub fn downloaders_how(d: &crate::held::Downloads) -> String {
    format!(
        "{}, {}",
        if d.rate_per_downloader > 0.0 {
            format!("each ≤ {:.0} MB/s", d.rate_per_downloader / 1e6)
        } else {
            "unthrottled".to_string()
        },
        d.downloaders_on
    )
}

/// The downloads, for the progress log.
pub fn downloads_line(d: &crate::held::Downloads) -> String {
    format!(
        "fixed load during {} downloads of {} MiB ({}): {}; p99 without {:.2} ms; {} complete, {} failed, {:.0} MiB/s, downloaders' CPU {:.0} %; server CPU {:.0} % without, {:.0} % during; others on its core {:.0} % / {:.0} %; RSS {} KiB before, {} after upload, {} most during: growth {:.2} × the file",
        d.downloaders,
        d.file_bytes / (1024 * 1024),
        downloaders_how(d),
        step_line(&d.during_downloads),
        d.without_downloads.deliveries.p99_ms,
        d.complete,
        d.failed,
        d.mib_per_s,
        d.downloaders_cpu * 100.0,
        d.server_cpu_without * 100.0,
        d.server_cpu_during * 100.0,
        d.server_core_others_without * 100.0,
        d.server_core_others_during * 100.0,
        d.rss_before_kib,
        d.rss_after_upload_kib,
        d.rss_max_during_kib,
        d.growth_ratio
    )
}

/// One storm, for the progress log.
pub fn storm_line(r: &crate::storm::StormRun) -> String {
    let opt = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{x:.1} s"));
    format!(
        "{} people ({} per login; logins {:.1} s before): {} welcomed, {} failed{}, {} dropped, {} open after ({} of them missing messages; {:.1} s to settle); last connect at {:.2} s, all welcomed at {} ({} after the last connect); join p50 {} p90 {} p99 {} max {} ms, TCP connect p99 {} ms; messages during the storm: {} sent, {} delivered, {} lost, p50 {} p99 {} max {} ms; {} join and {} leave frames read, {} error frames, {:.0} MiB; RSS {} → {} KiB (most {}): {:.1} KiB per connection; threads {} → {} (most {}); {} fds; server CPU {:.0} %, generator CPU {:.0} %; others on the server's core {:.0} %, on the generator's {:.0} %{}",
        r.people,
        r.per_login,
        r.logins_s,
        r.welcomed,
        r.failed,
        if r.failures.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.failures.join("; "))
        },
        r.dropped,
        r.open_after,
        r.open_but_missing,
        r.settle_s,
        r.last_connect_s,
        opt(r.all_welcomed_s),
        opt(r.after_last_connect_s),
        ms(r.join_p50_ms),
        ms(r.join_p90_ms),
        ms(r.join_p99_ms),
        ms(r.join_max_ms),
        ms(r.connect_p99_ms),
        r.messages_sent,
        r.deliveries,
        r.deliveries_lost,
        ms(r.message_p50_ms),
        ms(r.message_p99_ms),
        ms(r.message_max_ms),
        r.join_frames,
        r.leave_frames,
        r.error_frames,
        r.bytes_read as f64 / (1024.0 * 1024.0),
        r.rss_before_kib,
        r.rss_after_kib,
        r.rss_max_kib,
        r.rss_per_connection_kib,
        r.threads_before,
        r.threads_after,
        r.threads_max,
        r.server_fds_after,
        r.server_cpu * 100.0,
        r.generator_cpu * 100.0,
        r.server_core_others * 100.0,
        r.generator_core_others * 100.0,
        if r.limits.is_empty() {
            String::new()
        } else {
            format!("; machine limits: {}", r.limits.join("; "))
        }
    )
}

/// The storm table (markdown): one column per size, one row per number,
/// with the targets of issue 17. Also used in docs/PERFORMANCE.md.
pub fn storm_table(runs: &[crate::storm::StormRun]) -> String {
    use crate::storm::{JOIN_P99_TARGET_MS, MESSAGE_P99_TARGET_MS, RSS_TARGET_KIB};
    let mut t = String::new();
    let Some(first) = runs.first() else {
        return t;
    };
    let who = if first.per_login == 1 {
        "different people".to_string()
    } else {
        format!("connections, {} per login", first.per_login)
    };
    let _ = write!(t, "| storm: N {who} connect at once |");
    for r in runs {
        let _ = write!(t, " {} |", thousands(r.people as f64));
    }
    let _ = writeln!(t, " target |");
    let _ = writeln!(t, "|---|{}---|", "---|".repeat(runs.len()));
    type Cell = fn(&crate::storm::StormRun) -> String;
    let rows: [(&str, Cell, String); 9] = [
        (
            "welcomed / failed / closed by the server / open but missing messages at the end",
            |r| {
                format!(
                    "{} / {} / {} / {}",
                    thousands(r.welcomed as f64),
                    thousands(r.failed as f64),
                    thousands(r.dropped as f64),
                    thousands(r.open_but_missing as f64)
                )
            },
            "all, none dropped".into(),
        ),
        (
            "first connect → last welcome (last connect started at)",
            |r| {
                let last = r
                    .all_welcomed_s
                    .map_or("–".to_string(), |x| format!("{x:.1} s"));
                if r.welcomed < r.people {
                    format!(
                        "not all: the last of {} at {last} ({:.2} s)",
                        thousands(r.welcomed as f64),
                        r.last_connect_s
                    )
                } else {
                    format!("{last} ({:.2} s)", r.last_connect_s)
                }
            },
            "≤ 3 s after the last connect".into(),
        ),
        (
            "join p50 / p99 (connect → welcome)",
            |r| format!("{} / {} ms", ms(r.join_p50_ms), ms(r.join_p99_ms)),
            format!("p99 ≤ {:.0} s", JOIN_P99_TARGET_MS / 1000.0),
        ),
        (
            "room message p50 / p99 during the storm (lost)",
            |r| {
                format!(
                    "{} / {} ms ({})",
                    ms(r.message_p50_ms),
                    ms(r.message_p99_ms),
                    r.deliveries_lost
                )
            },
            format!("p99 ≤ {MESSAGE_P99_TARGET_MS:.0} ms"),
        ),
        (
            "RSS per connection after the storm",
            |r| {
                if r.open_after == r.people {
                    format!("{:.1} KiB", r.rss_per_connection_kib)
                } else if r.open_after > 0 {
                    format!(
                        "{:.1} KiB (of {} open)",
                        r.rss_per_connection_kib,
                        thousands(r.open_after as f64)
                    )
                } else {
                    "– (none open)".to_string()
                }
            },
            format!("≤ {RSS_TARGET_KIB:.0} KiB at 10,000"),
        ),
        (
            "server threads after (most)",
            |r| format!("{} ({})", r.threads_after, r.threads_max),
            String::new(),
        ),
        (
            "join frames read by the storm's connections",
            |r| thousands(r.join_frames as f64),
            String::new(),
        ),
        (
            "server CPU / generator CPU during the storm (others on their cores)",
            |r| {
                format!(
                    "{:.0} % / {:.0} % ({:.0} % / {:.0} %)",
                    r.server_cpu * 100.0,
                    r.generator_cpu * 100.0,
                    r.server_core_others * 100.0,
                    r.generator_core_others * 100.0
                )
            },
            String::new(),
        ),
        (
            "TCP connect p99",
            |r| format!("{} ms", ms(r.connect_p99_ms)),
            String::new(),
        ),
    ];
    for (name, cell, target) in rows {
        let _ = write!(t, "| {name} |");
        for r in runs {
            let _ = write!(t, " {} |", cell(r));
        }
        let _ = writeln!(t, " {target} |");
    }
    for r in runs {
        if !r.limits.is_empty() {
            let _ = writeln!(
                t,
                "
Machine limits at {}: {}.",
                thousands(r.people as f64),
                r.limits.join("; ")
            );
        }
        if !r.failures.is_empty() {
            let _ = writeln!(
                t,
                "
Failures at {}: {}.",
                thousands(r.people as f64),
                r.failures.join("; ")
            );
        }
    }
    t
}

/// The login flood, for the progress log.
pub fn logins_line(f: &LoginFlood) -> String {
    let others: Vec<String> = f
        .other_statuses
        .iter()
        .map(|(status, n)| format!("{n} × {status}"))
        .collect();
    format!(
        "fixed load during {} password logins ({} in flight, {:.1} s window): {}; logins: {} of {} got 303{}, each p50 {:.0} p99 {:.0} max {:.0} ms, all in {:.1} s; p99 without the flood {:.2} ms; others on the server's core {:.0} % without, {:.0} % during",
        f.logins,
        f.in_flight,
        f.flood_window_s,
        step_line(&f.during_flood),
        f.ok_303,
        f.logins,
        if others.is_empty() {
            String::new()
        } else {
            format!(" (others: {})", others.join(", "))
        },
        f.login_p50_ms,
        f.login_p99_ms,
        f.login_max_ms,
        f.all_logins_s,
        f.without_flood.deliveries.p99_ms,
        f.server_core_others_without * 100.0,
        f.server_core_others_during * 100.0
    )
}

/// One transport run, for the progress log.
pub fn transport_line(r: &TransportRun) -> String {
    let d = &r.deliveries;
    format!(
        "{} room, {}: delivered {}/{} lost {} p50 {:.2} p99 {:.2} max {:.2} ms; {:.1} HTTP requests/s; {:.0} bytes, {:.1} µs server CPU per delivery ({:.1} % of a core); threads {:.0} (max {}); generator CPU {:.0} %; others on the server's core {:.0} %; 429s {}, failed {}, refused {}",
        r.load,
        r.transport,
        d.delivered,
        d.expected,
        d.lost,
        d.p50_ms,
        d.p99_ms,
        d.max_ms,
        r.http_requests_per_s,
        r.bytes_per_delivery,
        r.server_cpu_us_per_delivery,
        r.server_cpu_share * 100.0,
        r.server_threads_mean,
        r.server_threads_max,
        r.generator_cpu * 100.0,
        r.server_core_others * 100.0,
        r.rate_limited,
        r.failed_requests,
        r.messages_refused
    )
}

/// The transports table (markdown), also used by docs/TRANSPORTS.md.
pub fn transports_table(t: &Transports) -> String {
    let mut s = String::new();
    if let Some(why) = &t.polling_skipped {
        let _ = writeln!(s, "Polling skipped: {why}.\n");
    }
    let _ = writeln!(
        s,
        "| room | transport | latency p50 / p99 (ms) | HTTP requests/s | bytes per delivered message | server CPU per delivered message | server CPU (share of a core) | server threads (mean / max) | delivered (lost) | others on the server's core |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for r in &t.runs {
        let d = &r.deliveries;
        let _ = writeln!(
            s,
            "| {} ({} msg/s) | {} | {} / {} | {:.0} | {} | {} µs | {:.1} % | {:.0} / {} | {} ({}){} | {:.0} % |",
            r.load,
            r.messages_per_s,
            r.transport,
            ms(d.p50_ms),
            ms(d.p99_ms),
            r.http_requests_per_s,
            thousands(r.bytes_per_delivery),
            if r.server_cpu_us_per_delivery >= 10.0 {
                format!("{:.0}", r.server_cpu_us_per_delivery)
            } else {
                format!("{:.1}", r.server_cpu_us_per_delivery)
            },
            r.server_cpu_share * 100.0,
            r.server_threads_mean,
            r.server_threads_max,
            thousands(d.delivered as f64),
            d.lost,
            if r.rate_limited + r.failed_requests + r.messages_refused > 0 {
                format!(
                    "; 429s {}, failed {}, refused {}",
                    r.rate_limited, r.failed_requests, r.messages_refused
                )
            } else {
                String::new()
            },
            r.server_core_others * 100.0
        );
    }
    s
}

/// A latency in ms, with precision where it matters.
fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Redis against the memory store, for the log and under the table.
pub fn ratios_line(r: &RedisVsMemory) -> String {
    format!(
        "Redis / memory store: fixed-load p99 {} (target ≤ {}× and ≤ {} ms: {}), saturation {} (target ≥ {:.0} %: {})",
        r.fixed_p99_ratio
            .map_or("–".to_string(), |x| format!("{x:.2}×")),
        RedisVsMemory::FIXED_P99_RATIO,
        RedisVsMemory::FIXED_P99_MS,
        mark(r.fixed_p99_met),
        r.saturation_ratio
            .map_or("–".to_string(), |x| format!("{:.0} %", x * 100.0)),
        RedisVsMemory::SATURATION_RATIO * 100.0,
        mark(r.saturation_met)
    )
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mark(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "n/a",
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let (l, r) = (&self.lanchat, &self.reference);
        let mut t = String::new();
        let m = &self.machine;
        let _ = writeln!(
            t,
            "Machine: {} ({} cores, {} GiB), Linux {}; checkout {}, server binary {}; server on core 0, load generator on core 1{}.\n",
            m.cpu,
            m.cores,
            m.memory_gib,
            m.kernel,
            m.lanchat_commit,
            m.server_binary,
            if self.quick {
                "; QUICK run (short windows)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            t,
            "| {} clients | lanchat | reference (machine limit) | lanchat / reference | target | met |",
            self.clients
        );
        let _ = writeln!(t, "|---|---|---|---|---|---|");
        let pcts = |s: Option<&Step>| {
            s.map_or("–".to_string(), |s| {
                let d = &s.deliveries;
                format!(
                    "{:.2} / {:.2} / {:.2} / {:.2}",
                    d.p50_ms, d.p90_ms, d.p99_ms, d.max_ms
                )
            })
        };
        let rate = |s: Option<&Step>| {
            s.map_or("–".to_string(), |s| {
                let d = &s.deliveries;
                format!("{} ({} lost)", thousands(d.delivered_per_s), d.lost)
            })
        };
        let lr = l.fanout_redis.as_ref();
        let ratios = l.redis_vs_memory.as_ref();
        let _ = writeln!(
            t,
            "| fixed load (10 senders × 2 msg/s), memory store: deliveries/s | {} | {} | | | |",
            rate(l.fanout.fixed.as_ref()),
            rate(r.fanout.fixed.as_ref())
        );
        let p99_ok = l.fanout.fixed.as_ref().map(|s| s.deliveries.p99_ms <= 10.0);
        let _ = writeln!(
            t,
            "| fixed load, memory store: p50 / p90 / p99 / max (ms) | {} | {} | | p99 ≤ 10 ms | {} |",
            pcts(l.fanout.fixed.as_ref()),
            pcts(r.fanout.fixed.as_ref()),
            mark(p99_ok)
        );
        if let Some(lr) = lr {
            let _ = writeln!(
                t,
                "| fixed load, Redis store: deliveries/s | {} | n/a (no Redis) | | | |",
                rate(lr.fixed.as_ref())
            );
            let ratio = ratios
                .and_then(|x| x.fixed_p99_ratio)
                .map_or(String::new(), |x| format!(" (p99 {x:.2}× memory)"));
            let met = match ratios {
                Some(x) => x.fixed_p99_met,
                None => lr.fixed.as_ref().map(|s| s.deliveries.p99_ms <= 10.0),
            };
            let _ = writeln!(
                t,
                "| fixed load, Redis store: p50 / p90 / p99 / max (ms) | {}{} | n/a | | p99 ≤ {}× memory's and ≤ {} ms | {} |",
                pcts(lr.fixed.as_ref()),
                ratio,
                RedisVsMemory::FIXED_P99_RATIO,
                RedisVsMemory::FIXED_P99_MS,
                mark(met)
            );
        }
        let sat = |s: &Fanout| {
            s.saturation.map_or("–".to_string(), |x| {
                format!(
                    "{}{}",
                    thousands(x),
                    if s.generator_limited {
                        " (load generator limit: ≥)"
                    } else {
                        ""
                    }
                )
            })
        };
        let fraction = match (l.fanout.saturation, r.fanout.saturation) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let sat_ok = l
            .fanout
            .saturation
            .map(|x| x >= 300_000.0 && fraction.is_none_or(|f| f >= 0.35));
        let _ = writeln!(
            t,
            "| saturation, memory store: deliveries/s with p99 ≤ 100 ms | {} | {} | {} | ≥ 300,000 and ≥ 35 % | {} |",
            sat(&l.fanout),
            sat(&r.fanout),
            fraction.map_or("–".to_string(), |f| format!("{:.0} %", f * 100.0)),
            mark(sat_ok)
        );
        if let Some(lr) = lr {
            let ratio = ratios
                .and_then(|x| x.saturation_ratio)
                .map_or(String::new(), |x| {
                    format!(" ({:.0} % of memory)", x * 100.0)
                });
            let _ = writeln!(
                t,
                "| saturation, Redis store: deliveries/s with p99 ≤ 100 ms | {}{} | n/a | | ≥ {:.0} % of memory's | {} |",
                sat(lr),
                ratio,
                RedisVsMemory::SATURATION_RATIO * 100.0,
                mark(ratios.and_then(|x| x.saturation_met))
            );
        }
        if let Some(f) = &l.logins {
            let _ = writeln!(
                t,
                "| fixed load during {} password logins ({} in flight): p50 / p90 / p99 / max (ms) | {} (p99 without the logins: {:.2}) | n/a | | p99 ≤ {} ms | {} |",
                f.logins,
                f.in_flight,
                pcts(Some(&f.during_flood)),
                f.without_flood.deliveries.p99_ms,
                crate::logins::P99_TARGET_MS,
                mark(Some(f.p99_met))
            );
            let _ = writeln!(
                t,
                "| the {} logins: answered 303; each p50 / p99 / max (ms); all | {} of {}; {:.0} / {:.0} / {:.0}; {:.1} s | n/a | | all 303 | {} |",
                f.logins,
                f.ok_303,
                f.logins,
                f.login_p50_ms,
                f.login_p99_ms,
                f.login_max_ms,
                f.all_logins_s,
                mark(Some(f.ok_303 == f.logins))
            );
        }
        if let Some(p) = &l.polls {
            let fanout = l.fanout.fixed.as_ref().map_or(String::new(), |f| {
                format!(" (p99 of `fanout`: {:.2})", f.deliveries.p99_ms)
            });
            let _ = writeln!(
                t,
                "| fixed load with {} long polls held: p50 / p90 / p99 / max (ms) | {}{} | n/a | | p99 ≤ {} ms | {} |",
                p.polls,
                pcts(Some(&p.during_polls)),
                fanout,
                crate::held::P99_TARGET_MS,
                mark(Some(p.p99_met))
            );
            let _ = writeln!(
                t,
                "| the {} long polls: held at start / end / fewest; answered, failed; server threads | {} / {} / {}; {}, {}; {} | n/a | | all held | {} |",
                p.polls,
                p.held_at_start,
                p.held_at_end,
                p.held_min,
                p.answered,
                p.failed,
                p.server_threads,
                mark(Some(p.held_min >= p.polls && p.failed == 0))
            );
        }
        if let Some(d) = &l.downloads {
            let _ = writeln!(
                t,
                "| fixed load during {} downloads of a {} MiB file ({}): p50 / p90 / p99 / max (ms) | {} (without: {}) | n/a | | p99 ≤ {} ms | {} |",
                d.downloaders,
                d.file_bytes / (1024 * 1024),
                downloaders_how(d),
                pcts(Some(&d.during_downloads)),
                pcts(Some(&d.without_downloads)),
                crate::held::P99_TARGET_MS,
                mark(Some(d.p99_met))
            );
            let _ = writeln!(
                t,
                "| the downloads: complete, failed, MiB/s; server CPU without / during; server RSS before / after upload / most during (MiB); growth ÷ file size | {}, {}, {:.0}; {:.0} % / {:.0} %; {:.1} / {:.1} / {:.1}; {:.2} | n/a | | growth ≤ 1 × the file | {} |",
                d.complete,
                d.failed,
                d.mib_per_s,
                d.server_cpu_without * 100.0,
                d.server_cpu_during * 100.0,
                d.rss_before_kib as f64 / 1024.0,
                d.rss_after_upload_kib as f64 / 1024.0,
                d.rss_max_during_kib as f64 / 1024.0,
                d.growth_ratio,
                mark(Some(d.growth_met))
            );
        }
        fn idle_at(s: &ServerResults, n: usize) -> Option<&crate::Idle> {
            s.idle.iter().find(|i| i.connections == n)
        }
        let mut sizes: Vec<usize> = l
            .idle
            .iter()
            .chain(&r.idle)
            .map(|i| i.connections)
            .collect();
        sizes.sort();
        sizes.dedup();
        for n in sizes {
            let cell = |s: &ServerResults| match (idle_at(s, n), &s.idle_error) {
                (Some(i), _) => format!(
                    "{:.1} KiB, {} threads{}{}",
                    i.rss_per_connection_kib,
                    i.threads,
                    if i.per_login > 1 {
                        format!(" ({} per login)", i.per_login)
                    } else {
                        String::new()
                    },
                    if i.dropped > 0 {
                        format!(", {} closed by the server", i.dropped)
                    } else {
                        String::new()
                    }
                ),
                (None, Some(e)) => format!("failed: {e}"),
                (None, None) => "–".to_string(),
            };
            let ok = (n >= 10_000)
                .then(|| {
                    idle_at(l, n)
                        .map(|i| i.rss_per_connection_kib <= 24.0)
                        .or(l.idle_error.as_ref().map(|_| false))
                })
                .flatten();
            let _ = writeln!(
                t,
                "| idle {}: server RSS per connection, threads | {} | {} | | {} | {} |",
                thousands(n as f64),
                cell(l),
                cell(r),
                if n >= 10_000 { "≤ 24 KiB" } else { "" },
                if n >= 10_000 { mark(ok) } else { "" }
            );
        }
        for j in &l.joins {
            let (what, target, ok) = match j.after {
                None => (
                    format!("join with {} messages of history", j.history_messages),
                    "p99 < 5 ms",
                    j.p99_ms < 5.0,
                ),
                Some(seq) => (
                    format!(
                        "join with after={seq} ({}; {} messages in history)",
                        after_note(j),
                        j.history_messages
                    ),
                    "p99 ≤ 1 ms",
                    j.p99_ms <= 1.0,
                ),
            };
            let _ = writeln!(
                t,
                "| {what}, {}: p50 / p90 / p99 / max (ms) | {:.2} / {:.2} / {:.2} / {:.2} | | | {target} | {} |",
                j.store,
                j.p50_ms,
                j.p90_ms,
                j.p99_ms,
                j.max_ms,
                mark(Some(ok))
            );
        }
        if let Some(c) = &l.cluster {
            let _ = writeln!(
                t,
                "| cluster, {} servers on one Redis: deliveries/s; p99 same server / across servers (ms) | {} ({} lost); {:.2} / {:.2} | n/a (no Redis) | | | |",
                c.servers,
                thousands(c.delivered_per_s),
                c.lost,
                c.same_server.p99_ms,
                c.across_servers.p99_ms
            );
            let _ = writeln!(
                t,
                "\nCluster: {} lanchat servers and their Redis on core 0, {} clients split between them, {} senders × {:.0} msg/s on each server ({} deliveries/s offered), 1 s warm-up, measured window; generator CPU {:.0} %, clients dropped {}, errors {}:\n",
                c.servers,
                thousands(c.clients as f64),
                c.senders_per_server,
                c.messages_per_s / (c.servers * c.senders_per_server) as f64,
                thousands(c.offered_per_s),
                c.generator_cpu * 100.0,
                c.dropped_clients,
                c.errors
            );
            let _ = writeln!(
                t,
                "| deliveries | delivered/s | lost | p50 ms | p90 ms | p99 ms | max ms |"
            );
            let _ = writeln!(t, "|---|---|---|---|---|---|---|");
            for (name, d) in [
                ("same server", &c.same_server),
                ("across servers", &c.across_servers),
            ] {
                let _ = writeln!(
                    t,
                    "| {name} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                    thousands(d.delivered_per_s),
                    d.lost,
                    d.p50_ms,
                    d.p90_ms,
                    d.p99_ms,
                    d.max_ms
                );
            }
        }
        if let Some(x) = ratios {
            let _ = writeln!(t, "\n{}.", ratios_line(x));
        }
        if !l.storm.is_empty() {
            let _ = writeln!(
                t,
                "\nStorm: a fresh server per N (memory store); N logins first, then N `GET /ws` started at once while {} speakers send {} msg/s each; a join is timed from its connect to its `welcome`:\n",
                crate::storm::SPEAKERS,
                crate::storm::SPEAKER_RATE
            );
            t.push_str(&storm_table(&l.storm));
        }
        if let Some(tr) = &l.transports {
            let _ = writeln!(
                t,
                "\nTransports: {} clients on one server (core 0), each transport in turn; {} of them send; warm-up, then a measured window; bytes are what the clients wrote and read (HTTP heads and WebSocket frame headers included, not TCP/IP); server CPU is its process CPU time in the window:\n",
                crate::transports::CLIENTS,
                crate::transports::SENDERS
            );
            t.push_str(&transports_table(tr));
        }
        let _ = writeln!(
            t,
            "\nSaturation steps (1 s warm-up, measured window, each sender ≤ 15 msg/s):\n"
        );
        let _ = writeln!(
            t,
            "| server | offered/s | delivered/s | lost | p50 ms | p99 ms | max ms | senders | generator CPU | pass |"
        );
        let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|---|");
        let series = [
            ("lanchat", Some(&l.fanout)),
            ("lanchat (Redis)", l.fanout_redis.as_ref()),
            ("reference", Some(&r.fanout)),
        ];
        for (name, s) in series {
            let Some(s) = s else { continue };
            for step in &s.saturation_steps {
                let _ = writeln!(
                    t,
                    "| {name} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {:.0} % | {} |",
                    thousands(step.offered_per_s),
                    thousands(step.deliveries.delivered_per_s),
                    step.deliveries.lost,
                    step.deliveries.p50_ms,
                    step.deliveries.p99_ms,
                    step.deliveries.max_ms,
                    step.senders,
                    step.generator_cpu * 100.0,
                    if step.passes() { "yes" } else { "no" }
                );
            }
        }
        t
    }

    /// The transports side by side: four panels (latency p99, HTTP
    /// requests/s, bytes and server CPU per delivered message), log scales,
    /// one group of bars per room. `None` when the scenario did not run.
    pub fn transports_svg(&self) -> Option<String> {
        let t = self.lanchat.transports.as_ref()?;
        if t.runs.is_empty() {
            return None;
        }
        let mut rooms: Vec<(&str, f64)> = Vec::new();
        for r in &t.runs {
            if !rooms.iter().any(|(name, _)| *name == r.load) {
                rooms.push((&r.load, r.messages_per_s));
            }
        }
        let kinds = [
            ("short polling", "#ff7f0e"),
            ("long polling", "#2ca02c"),
            ("WebSocket", "#1f77b4"),
        ];
        type Metric = (&'static str, fn(&TransportRun) -> f64);
        let metrics: [Metric; 4] = [
            ("delivery latency, ms (bar: p99, line: p50)", |r| {
                r.deliveries.p99_ms
            }),
            ("HTTP requests per second", |r| r.http_requests_per_s),
            ("bytes on the wire per delivered message", |r| {
                r.bytes_per_delivery
            }),
            ("server CPU per delivered message, µs", |r| {
                r.server_cpu_us_per_delivery
            }),
        ];
        let (w, h) = (760.0, 600.0);
        let (pw, ph) = (w / 2.0, (h - 60.0) / 2.0);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="18" font-size="14" text-anchor="middle">Three transports, one chat: {} clients, server on 1 core (log scales)</text>"#,
            w / 2.0,
            crate::transports::CLIENTS
        );
        let mut lx = w / 2.0 - 190.0;
        for (name, color) in kinds {
            let _ = writeln!(
                s,
                r#"<rect x="{lx}" y="30" width="12" height="12" fill="{color}"/><text x="{}" y="40">{name}</text>"#,
                lx + 16.0
            );
            lx += 130.0;
        }
        let fmt = |v: f64| {
            if v == 0.0 {
                "0".to_string()
            } else if v >= 10_000.0 {
                format!("{:.0}k", v / 1000.0)
            } else if v >= 1000.0 {
                format!("{:.1}k", v / 1000.0)
            } else if v >= 10.0 {
                format!("{v:.0}")
            } else if v >= 1.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.2}")
            }
        };
        for (m, (title, get)) in metrics.iter().enumerate() {
            let (x0, y0) = ((m % 2) as f64 * pw, 60.0 + (m / 2) as f64 * ph);
            let (left, right, top, bottom) = (x0 + 50.0, x0 + pw - 15.0, y0 + 28.0, y0 + ph - 40.0);
            let values: Vec<f64> = t.runs.iter().map(get).filter(|v| v.is_finite()).collect();
            let positive = values.iter().copied().filter(|v| *v > 0.0);
            let lo = positive.clone().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(0.0, f64::max);
            if !lo.is_finite() || hi <= 0.0 {
                continue;
            }
            // Room above the tallest bar for its label.
            let (d0, mut d1) = (lo.log10().floor(), (hi * 2.5).log10().ceil());
            if d1 <= d0 {
                d1 = d0 + 1.0;
            }
            let py = |v: f64| bottom - (v.log10() - d0) / (d1 - d0) * (bottom - top);
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" font-size="13" text-anchor="middle">{title}</text>"#,
                (left + right) / 2.0,
                y0 + 16.0
            );
            for d in d0 as i32..=d1 as i32 {
                let v = 10f64.powi(d);
                let _ = writeln!(
                    s,
                    r##"<line x1="{left}" y1="{0:.1}" x2="{right}" y2="{0:.1}" stroke="#ddd"/><text x="{1}" y="{2:.1}" text-anchor="end">{3}</text>"##,
                    py(v),
                    left - 6.0,
                    py(v) + 4.0,
                    fmt(v)
                );
            }
            let gw = (right - left) / rooms.len() as f64;
            let bw = gw / (kinds.len() as f64 + 1.0);
            for (g, (room, rate)) in rooms.iter().enumerate() {
                let gx = left + g as f64 * gw;
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{}" text-anchor="middle">{room} room ({rate} msg/s)</text>"#,
                    gx + gw / 2.0,
                    bottom + 18.0
                );
                for (k, (kind, color)) in kinds.iter().enumerate() {
                    let Some(run) = t
                        .runs
                        .iter()
                        .find(|r| r.load == *room && r.transport.starts_with(kind))
                    else {
                        continue;
                    };
                    let v = get(run);
                    let x = gx + bw / 2.0 + k as f64 * bw;
                    if v.is_finite() && v >= 10f64.powf(d0) {
                        let y = py(v);
                        let _ = writeln!(
                            s,
                            r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}"/>"#,
                            x + 2.0,
                            bw - 4.0,
                            bottom - y
                        );
                    }
                    let p50 = run.deliveries.p50_ms;
                    if m == 0 && p50.is_finite() && p50 >= 10f64.powf(d0) {
                        let _ = writeln!(
                            s,
                            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{2:.1}" y2="{1:.1}" stroke="#222" stroke-width="2"/>"##,
                            x + 2.0,
                            py(p50),
                            x + bw - 2.0
                        );
                    }
                    let label = if v.is_finite() { fmt(v) } else { "–".into() };
                    let ly = if v.is_finite() && v >= 10f64.powf(d0) {
                        py(v) - 4.0
                    } else {
                        bottom - 4.0
                    };
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{ly:.1}" font-size="11" text-anchor="middle">{label}</text>"#,
                        x + bw / 2.0
                    );
                }
            }
            let _ = writeln!(
                s,
                r##"<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#888"/>"##
            );
        }
        s.push_str("</svg>\n");
        Some(s)
    }

    /// Latency percentiles (log) against offered deliveries/s (log).
    pub fn svg(&self) -> String {
        let (w, h) = (760.0, 460.0);
        let (left, right, top, bottom) = (70.0, 190.0, 30.0, 50.0);
        let (x0, x1) = (1e4f64.log10(), 5e6f64.log10());
        let (y0, y1) = (0.1f64.log10(), 10_000f64.log10());
        let px = |x: f64| left + (x.max(1.0).log10() - x0) / (x1 - x0) * (w - left - right);
        let py = |y: f64| {
            let y = y.clamp(0.1, 10_000.0).log10();
            h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="18" font-size="14" text-anchor="middle">Delivery latency vs load ({} clients, server on 1 core)</text>"#,
            (w - right + left) / 2.0,
            self.clients
        );
        for x in [1e4, 3e4, 1e5, 3e5, 1e6, 3e6] {
            let _ = writeln!(
                s,
                r##"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#ddd"/><text x="{0}" y="{3}" text-anchor="middle">{4}</text>"##,
                px(x),
                top,
                h - bottom,
                h - bottom + 16.0,
                if x >= 1e6 {
                    format!("{}M", x / 1e6)
                } else {
                    format!("{}k", x / 1e3)
                }
            );
        }
        for y in [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0] {
            let _ = writeln!(
                s,
                r##"<line x1="{left}" y1="{0}" x2="{1}" y2="{0}" stroke="{2}"/><text x="{3}" y="{4}" text-anchor="end">{y}</text>"##,
                py(y),
                w - right,
                if y == 100.0 { "#c00" } else { "#ddd" },
                left - 6.0,
                py(y) + 4.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">offered deliveries/s (log)</text>"#,
            (w - right + left) / 2.0,
            h - 12.0
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(18,{}) rotate(-90)" text-anchor="middle">latency, ms (log); red: 100 ms</text>"#,
            (h - bottom + top) / 2.0
        );
        let mut legend_y = top + 10.0;
        let series = [
            ("lanchat", Some(&self.lanchat.fanout), "#1f77b4"),
            (
                "lanchat Redis",
                self.lanchat.fanout_redis.as_ref(),
                "#2ca02c",
            ),
            ("reference", Some(&self.reference.fanout), "#ff7f0e"),
        ];
        for (name, results, color) in series {
            let Some(results) = results else { continue };
            let steps: Vec<&Step> = results
                .fixed
                .iter()
                .chain(&results.saturation_steps)
                .collect();
            let mut steps = steps;
            steps.sort_by(|a, b| a.offered_per_s.total_cmp(&b.offered_per_s));
            for (label, dash, get) in [
                (
                    "p50",
                    "4 3",
                    (|s: &Step| s.deliveries.p50_ms) as fn(&Step) -> f64,
                ),
                ("p90", "1 3", |s: &Step| s.deliveries.p90_ms),
                ("p99", "", |s: &Step| s.deliveries.p99_ms),
            ] {
                let points: Vec<String> = steps
                    .iter()
                    .filter(|s| get(s).is_finite())
                    .map(|s| format!("{:.1},{:.1}", px(s.offered_per_s), py(get(s))))
                    .collect();
                if points.is_empty() {
                    continue;
                }
                let _ = writeln!(
                    s,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}" points="{}"/>"#,
                    points.join(" ")
                );
                for p in &points {
                    let (x, y) = p.split_once(',').unwrap();
                    let _ = writeln!(s, r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>"#);
                }
                let lx = w - right + 12.0;
                let _ = writeln!(
                    s,
                    r#"<line x1="{lx}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}">{name} {label}</text>"#,
                    lx + 28.0,
                    lx + 34.0,
                    legend_y + 4.0
                );
                legend_y += 18.0;
            }
        }
        s.push_str("</svg>\n");
        s
    }
}
