//! `lanchat-bench`: lanchat's load generator and benchmark orchestrator.
//!
//! It starts the server under test itself, pinned to one core with
//! `taskset -c 0`, pins itself to another (core 1), raises its file-descriptor
//! limit (the server inherits it), and runs every scenario against lanchat
//! and against `fanout-reference`, the machine's limit:
//!
//! | scenario | what it measures | how |
//! |---|---|---|
//! | fixed load | latency at a chat's ordinary load | 1,000 clients, 10 senders × 2 msg/s (20,000 deliveries/s) for 10 s; every client's latency for every message (send stamp in the text), lost deliveries |
//! | saturation | the most deliveries/s the server keeps with p99 ≤ 100 ms | the same 1,000 clients; load steps of rising rate (1 s warm-up, 3 s window, each sender ≤ 15 msg/s, more senders as needed); a step passes with p99 ≤ 100 ms, ≤ 0.1 % lost and no client dropped; stops at the first failure; the result is the highest delivered rate of a passing step |
//! | fixed load and saturation with Redis | what storing in Redis costs | both of the above against lanchat `--redis` (a throwaway `redis-server` on the server core), next to the memory store's numbers, with the ratios (lanchat only) |
//! | login flood | whether password hashing slows the room | the fixed load on a fresh server, without then during 200 logins with passwords (argon2id), 64 in flight (lanchat only) |
//! | held polls | whether held long polls slow the room | the fixed load on a fresh server with 500 long polls held (50 sessions, one TCP connection each); polls held, server threads (lanchat only) |
//! | downloads | whether big downloads slow the room or grow memory | the fixed load on a fresh server without, then while 30 clients download a 10 MiB file over and over (on a thread of their own at nice 19, each ≤ 10 MB/s, so as not to slow the generator); server CPU in both; server RSS before / after the upload / most during (lanchat only) |
//! | idle capacity | memory and threads per open connection | a fresh server; RSS before, then with 1,000 and 10,000 connections open, every one a different person (`--shared-logins`: 100 per login, the old way, which spares the server 10,000² `join` frames), from /proc/PID/status |
//! | storm | a school at 8:00 | a fresh server per N (1,000, 5,000, 10,000): N different people (logged in before) open `/ws` at once while 2 speakers talk (10 msg/s each); time until all are welcomed, join p50/p99, dropped, a message's p99 to everyone during the storm, RSS per connection and threads after (lanchat only; see storm.rs) |
//! | join latency | time to enter the room | a fresh server whose history holds 100 messages; 200 joins one after another, from writing `GET /ws` to reading the `history` frame; then 200 joins with `?after=` the latest seq (nothing missed); memory store and Redis |
//! | cluster | deliveries and latency across servers | two lanchat servers on one Redis (both on the server core), 500 clients on each; 5 senders × 2 msg/s on each (20,000 deliveries/s) for 10 s; latency and lost split into "same server" and "across servers" (lanchat only) |
//! | transports | what short polling, long polling and WebSocket cost | 100 clients on a fresh server, a busy room (10 senders × 1 msg/s) and a quiet one (a message every 2 s), each transport in turn: latency, HTTP requests/s, bytes and server CPU per delivered message, server threads (lanchat only) |
//!
//! Output: a markdown table on stdout, `results.json` and `latency.svg` in
//! the output folder (default `target/bench` of the lanchat checkout).
//! Usage: `lanchat-bench [--server PATH] [--reference PATH] [--out DIR]
//! [--quick] [--only lanchat|reference]
//! [--scenarios fanout,fanout-redis,logins,polls,downloads,idle,storm,join,cluster,transports]
//! [--storm-sizes N,N] [--storm-in-flight K] [--shared-logins[=N]]
//! [--download-rate MB/s] [--downloads-inline]
//! [--server-wrapper 'perf record -g -o F --']`.

mod client;
mod held;
mod load;
mod logins;
mod procs;
mod report;
mod storm;
mod transports;

use load::{Clients, ClusterStep, Joins, Stats, Step};
use procs::{Redis, Server};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SERVER_CORE: usize = 0;
const CLIENT_CORE: usize = 1;

/// Offered loads of the saturation search, in deliveries/s at 1,000 clients.
/// Steps of ×1.4; the target (300,000) is one of them.
const SATURATION_LOADS: [f64; 17] = [
    20e3, 30e3, 40e3, 55e3, 80e3, 110e3, 150e3, 215e3, 300e3, 420e3, 600e3, 850e3, 1.2e6, 1.7e6,
    2.4e6, 3.4e6, 4.8e6,
];
/// No saturation step starts after this long in the search (all 17 steps
/// take about 80 s when every one passes).
const SATURATION_BUDGET: Duration = Duration::from_secs(150);

/// Every scenario, in the order they run (the default list).
const SCENARIOS: [&str; 10] = [
    "fanout",
    "fanout-redis",
    "logins",
    "polls",
    "downloads",
    "idle",
    "storm",
    "join",
    "cluster",
    "transports",
];

struct Options {
    server: PathBuf,
    reference: PathBuf,
    out: PathBuf,
    quick: bool,
    only: Option<String>,
    wrapper: Vec<String>,
    clients: usize,
    idle: Vec<usize>,
    scenarios: Vec<String>,
    /// Seconds to keep each idle level open after measuring (for profiling).
    hold: u64,
    /// Connections per login in `idle` and `storm`: 1 (every connection a
    /// different person) unless `--shared-logins`.
    per_login: usize,
    /// People in each storm, and joins in flight at once (0: no limit).
    storm_sizes: Vec<usize>,
    storm_in_flight: usize,
    /// Each downloader's read rate, bytes/s (0: as fast as it can), and
    /// whether the downloaders run on the generator's own thread (the old
    /// way) instead of their own thread at nice 19.
    download_rate: f64,
    downloads_inline: bool,
}

/// Connections per login with `--shared-logins` and no number: what `idle`
/// used before distinct people became the default.
const SHARED_LOGINS: usize = 100;

fn options() -> Options {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut o = Options {
        server: std::env::var_os("LANCHAT_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target/release/lanchat")),
        reference: exe_dir.join("fanout-reference"),
        out: repo.join("target/bench"),
        quick: false,
        only: None,
        wrapper: vec![],
        clients: 1000,
        idle: vec![1000, 10_000],
        scenarios: SCENARIOS.map(String::from).to_vec(),
        hold: 0,
        per_login: 1,
        storm_sizes: storm::SIZES.to_vec(),
        storm_in_flight: 0,
        download_rate: held::DOWNLOAD_RATE,
        downloads_inline: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--server" => o.server = value().into(),
            "--reference" => o.reference = value().into(),
            "--out" => o.out = value().into(),
            "--quick" => o.quick = true,
            "--only" => o.only = Some(value()),
            "--server-wrapper" => {
                o.wrapper = value().split_whitespace().map(String::from).collect()
            }
            "--clients" => o.clients = value().parse().unwrap_or_else(|_| usage("--clients N")),
            "--idle" => {
                o.idle = value()
                    .split(',')
                    .map(|n| n.parse().unwrap_or_else(|_| usage("--idle N,N")))
                    .collect()
            }
            "--scenarios" => {
                o.scenarios = value().split(',').map(String::from).collect();
                if let Some(bad) = o
                    .scenarios
                    .iter()
                    .find(|s| !SCENARIOS.contains(&s.as_str()))
                {
                    usage(&format!("unknown scenario {bad}"))
                }
            }
            "--hold" => o.hold = value().parse().unwrap_or_else(|_| usage("--hold SECS")),
            "--shared-logins" => o.per_login = SHARED_LOGINS,
            shared if shared.starts_with("--shared-logins=") => {
                o.per_login = shared["--shared-logins=".len()..]
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| usage("--shared-logins=N"))
            }
            "--storm-sizes" => {
                o.storm_sizes = value()
                    .split(',')
                    .map(|n| n.parse().unwrap_or_else(|_| usage("--storm-sizes N,N")))
                    .collect()
            }
            "--storm-in-flight" => {
                o.storm_in_flight = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--storm-in-flight K"))
            }
            "--download-rate" => {
                o.download_rate = value()
                    .parse::<f64>()
                    .map(|mb| mb * 1e6)
                    .unwrap_or_else(|_| usage("--download-rate MB/s"))
            }
            "--downloads-inline" => o.downloads_inline = true,
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    o
}

fn usage(why: &str) -> ! {
    eprintln!(
        "{why}\nusage: lanchat-bench [--server PATH (env LANCHAT_BIN)] [--reference PATH] [--out DIR]\n       [--quick] [--only lanchat|reference] [--clients N] [--idle N,N]\n       [--scenarios fanout,fanout-redis,logins,polls,downloads,idle,storm,join,cluster,transports]\n       [--storm-sizes 1000,5000,10000] [--storm-in-flight K (0: no limit)]\n       [--shared-logins[=N] (N connections per login in idle and storm; 100 without =N)]\n       [--download-rate MB/s (each downloader; 0: unthrottled)] [--downloads-inline]\n       [--hold SECS] [--server-wrapper 'perf record -g -o FILE --']"
    );
    std::process::exit(2)
}

/// Everything one server got, as written to results.json.
#[derive(Debug, Default, Serialize)]
pub struct ServerResults {
    /// Fixed load and saturation (memory store for lanchat); its fields sit
    /// at the top level of the JSON object (`fixed`, `saturation`, ...).
    #[serde(flatten)]
    pub fanout: Fanout,
    /// The same with `--redis` (lanchat only).
    pub fanout_redis: Option<Fanout>,
    /// Redis against the memory store, from the two above.
    pub redis_vs_memory: Option<RedisVsMemory>,
    pub idle: Vec<Idle>,
    /// Why an idle level could not be reached (e.g. out of threads or fds).
    pub idle_error: Option<String>,
    /// One storm per size (lanchat only).
    pub storm: Vec<storm::StormRun>,
    pub joins: Vec<Joins>,
    /// Two servers sharing one Redis (lanchat only).
    pub cluster: Option<ClusterStep>,
    /// The fixed load during a flood of password logins (lanchat only).
    pub logins: Option<logins::LoginFlood>,
    /// The fixed load with 500 long polls held (lanchat only).
    pub polls: Option<held::Polls>,
    /// The fixed load during 30 downloads of a 10 MiB file (lanchat only).
    pub downloads: Option<held::Downloads>,
    /// Short polling, long polling and WebSocket (lanchat only).
    pub transports: Option<transports::Transports>,
}

/// The fixed load, then the saturation search, on one server.
#[derive(Debug, Default, Serialize)]
pub struct Fanout {
    pub fixed: Option<Step>,
    pub saturation_steps: Vec<Step>,
    /// Highest delivered rate of a passing step.
    pub saturation: Option<f64>,
    /// Whether the load generator's core was ~full at the last step.
    pub generator_limited: bool,
}

/// Lanchat with Redis against lanchat with the memory store, same run.
#[derive(Debug, Clone, Serialize)]
pub struct RedisVsMemory {
    /// Fixed-load p99 with Redis / with the memory store.
    pub fixed_p99_ratio: Option<f64>,
    /// Target: ratio ≤ [`Self::FIXED_P99_RATIO`] and Redis p99 ≤ 10 ms.
    pub fixed_p99_met: Option<bool>,
    /// Saturation with Redis / with the memory store.
    pub saturation_ratio: Option<f64>,
    /// Target: ratio ≥ [`Self::SATURATION_RATIO`].
    pub saturation_met: Option<bool>,
}

impl RedisVsMemory {
    pub const FIXED_P99_RATIO: f64 = 1.5;
    pub const FIXED_P99_MS: f64 = 10.0;
    pub const SATURATION_RATIO: f64 = 0.5;

    fn new(memory: &Fanout, redis: &Fanout) -> RedisVsMemory {
        let p99 = |f: &Fanout| {
            f.fixed
                .as_ref()
                .map(|s| s.deliveries.p99_ms)
                .filter(|p| p.is_finite())
        };
        let fixed_p99_ratio = match (p99(redis), p99(memory)) {
            (Some(r), Some(m)) if m > 0.0 => Some(r / m),
            _ => None,
        };
        let saturation_ratio = match (redis.saturation, memory.saturation) {
            (r, Some(m)) if m > 0.0 => Some(r.unwrap_or(0.0) / m),
            _ => None,
        };
        RedisVsMemory {
            fixed_p99_ratio,
            fixed_p99_met: fixed_p99_ratio
                .zip(p99(redis))
                .map(|(ratio, p)| ratio <= Self::FIXED_P99_RATIO && p <= Self::FIXED_P99_MS),
            saturation_ratio,
            saturation_met: saturation_ratio.map(|r| r >= Self::SATURATION_RATIO),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Idle {
    pub connections: usize,
    /// Connections per login (1: every connection a different person).
    pub per_login: usize,
    /// Connections the server had closed by the time of the measurement.
    pub dropped: u64,
    pub rss_kib: u64,
    pub baseline_rss_kib: u64,
    pub rss_per_connection_kib: f64,
    pub threads: u64,
}

fn main() {
    let o = options();
    if let Err(e) = procs::pin_self(CLIENT_CORE) {
        eprintln!("cannot pin the load generator to core {CLIENT_CORE}: {e}");
    }
    let fds = procs::raise_fd_limit().unwrap_or(0);
    procs::raise_thread_limit();
    let needed = o
        .idle
        .iter()
        .chain(&o.storm_sizes)
        .max()
        .copied()
        .unwrap_or(0)
        .max(o.clients)
        + 200;
    if (fds as usize) < needed {
        eprintln!("warning: fd limit {fds} is below the {needed} connections asked for");
    }
    std::fs::create_dir_all(&o.out).expect("output folder");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let started = Instant::now();
    let results = local.block_on(&runtime, run_all(&o));
    let machine = report::Machine::describe(&o.server);
    let report = report::Report {
        machine,
        quick: o.quick,
        clients: o.clients,
        lanchat: results.0,
        reference: results.1,
        seconds: started.elapsed().as_secs_f64(),
    };
    let table = report.markdown();
    println!("{table}");
    let json = serde_json::to_string_pretty(&report).expect("json");
    std::fs::write(o.out.join("results.json"), json).expect("results.json");
    std::fs::write(o.out.join("latency.svg"), report.svg()).expect("latency.svg");
    std::fs::write(o.out.join("results.md"), table).expect("results.md");
    if let Some(svg) = report.transports_svg() {
        std::fs::write(o.out.join("transports.svg"), svg).expect("transports.svg");
    }
    eprintln!(
        "wrote {0}/results.json, {0}/latency.svg, {0}/results.md ({1:.0} s)",
        o.out.display(),
        started.elapsed().as_secs_f64()
    );
}

async fn run_all(o: &Options) -> (ServerResults, ServerResults) {
    let epoch = Instant::now();
    let want = |name: &str| o.only.as_deref().is_none_or(|only| only == name);
    let scenario = |name: &str| o.scenarios.iter().any(|s| s == name);
    // Every bench client comes from 127.0.0.1: lift the per-address limits
    // (open connections, new sessions a minute) of a server that has them.
    let per_address = supports_flag(&o.server, "--max-per-address");
    let lanchat_args = |extra: &[String]| {
        let mut args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--log-level",
            "warn",
            "--max-connections",
            "30000",
        ]
        .map(String::from)
        .to_vec();
        if per_address {
            args.extend(["--max-per-address".to_string(), "0".to_string()]);
        }
        args.extend_from_slice(extra);
        args
    };
    let reference_args = || vec!["--port".to_string(), "0".to_string()];
    let mut lanchat = ServerResults::default();
    let mut reference = ServerResults::default();
    if want("lanchat") {
        let start = || start_server(o, "lanchat", &o.server, &lanchat_args(&[]), &o.wrapper);
        if scenario("fanout")
            && let Some(server) = start()
        {
            lanchat.fanout = fan_out(o, server, epoch).await;
        }
        // The same with Redis, right after: the two are compared.
        if scenario("fanout-redis") {
            match Redis::start(SERVER_CORE, &o.out.join("redis-fanout.log")) {
                Ok(redis) => {
                    let args = lanchat_args(&["--redis".to_string(), redis.url()]);
                    if let Some(server) =
                        start_server(o, "lanchat-redis", &o.server, &args, &o.wrapper)
                    {
                        lanchat.fanout_redis = Some(fan_out(o, server, epoch).await);
                    }
                    redis.stop();
                }
                Err(e) => log(&format!("no Redis, skipping fanout-redis: {e}")),
            }
            if let Some(redis) = &lanchat.fanout_redis
                && scenario("fanout")
            {
                let ratios = RedisVsMemory::new(&lanchat.fanout, redis);
                log(&report::ratios_line(&ratios));
                lanchat.redis_vs_memory = Some(ratios);
            }
        }
        if scenario("logins")
            && let Some(server) = start()
        {
            lanchat.logins = login_flood(o, server, epoch).await;
        }
        if scenario("polls")
            && let Some(server) = start()
        {
            lanchat.polls = with_fixed_clients(o, server, epoch, "polls", async |s, c, w| {
                let polls = held::polls(s, c, w).await;
                if let Some(p) = &polls {
                    log(&format!("polls: {}", report::polls_line(p)));
                }
                polls
            })
            .await;
        }
        if scenario("downloads")
            && let Some(server) = start()
        {
            lanchat.downloads =
                with_fixed_clients(o, server, epoch, "downloads", async |s, c, w| {
                    let downloads =
                        held::downloads(s, c, w, o.download_rate, o.downloads_inline).await;
                    if let Some(d) = &downloads {
                        log(&format!("downloads: {}", report::downloads_line(d)));
                    }
                    downloads
                })
                .await;
        }
        if scenario("idle") {
            idle(o, start, &mut lanchat, epoch).await;
        }
        if scenario("storm") {
            for &people in &o.storm_sizes {
                let Some(server) = start() else { break };
                log(&format!(
                    "storm: {people} {} connect at once ({}), {} speakers talking",
                    if o.per_login == 1 {
                        "different people".to_string()
                    } else {
                        format!("connections ({} per login)", o.per_login)
                    },
                    server.label,
                    storm::SPEAKERS
                ));
                let run =
                    storm::storm(&server, people, o.per_login, o.storm_in_flight, epoch).await;
                server.stop();
                log(&format!("storm: {}", report::storm_line(&run)));
                lanchat.storm.push(run);
            }
        }
        // Join latency, memory store then Redis.
        if scenario("join") {
            if let Some(server) = start() {
                log(&format!("join latency, memory store ({})", server.label));
                match load::join_latency(server.addr, "memory", 110, 200, epoch).await {
                    Ok((plain, after)) => {
                        log(&report::joins_line(&plain));
                        log(&report::joins_line(&after));
                        lanchat.joins.extend([plain, after]);
                    }
                    Err(e) => log(&format!("join latency (memory) failed: {e}")),
                }
                server.stop();
            }
            match Redis::start(SERVER_CORE, &o.out.join("redis.log")) {
                Ok(redis) => {
                    let args = lanchat_args(&["--redis".to_string(), redis.url()]);
                    if let Some(server) = start_server(o, "lanchat", &o.server, &args, &o.wrapper) {
                        log("join latency, Redis store");
                        match load::join_latency(server.addr, "redis", 110, 200, epoch).await {
                            Ok((plain, after)) => {
                                log(&report::joins_line(&plain));
                                log(&report::joins_line(&after));
                                lanchat.joins.extend([plain, after]);
                            }
                            Err(e) => log(&format!("join latency (redis) failed: {e}")),
                        }
                        server.stop();
                    }
                    redis.stop();
                }
                Err(e) => log(&format!("no Redis, skipping its join latency: {e}")),
            }
        }
        if scenario("cluster") {
            cluster(o, &lanchat_args, &mut lanchat, epoch).await;
        }
        if scenario("transports")
            && let Some(server) = start()
        {
            log(&format!(
                "transports: {} clients, short polling, long polling, WebSocket",
                transports::CLIENTS
            ));
            let results = transports::transports(&server, o.quick, epoch).await;
            server.stop();
            lanchat.transports = Some(results);
        }
    }
    if want("reference") {
        let start = || start_server(o, "reference", &o.reference, &reference_args(), &[]);
        if scenario("fanout")
            && let Some(server) = start()
        {
            reference.fanout = fan_out(o, server, epoch).await;
        }
        if scenario("idle") {
            idle(o, start, &mut reference, epoch).await;
        }
    }
    (lanchat, reference)
}

/// Whether `bin --help` names `flag` (older servers refuse flags they do
/// not know).
fn supports_flag(bin: &Path, flag: &str) -> bool {
    std::process::Command::new(bin)
        .arg("--help")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains(flag))
        .unwrap_or(false)
}

fn log(line: &str) {
    eprintln!("[bench] {line}");
}

fn start_server(
    o: &Options,
    label: &str,
    bin: &Path,
    args: &[String],
    wrapper: &[String],
) -> Option<Server> {
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log_file = o.out.join(format!("{label}-{n}.log"));
    match Server::start(label, bin, args, SERVER_CORE, wrapper, &log_file) {
        Ok(server) => Some(server),
        Err(e) => {
            log(&format!("{e}"));
            None
        }
    }
}

/// Fixed load, then the saturation search, on one server and one set of
/// clients; stops the server.
async fn fan_out(o: &Options, server: Server, epoch: Instant) -> Fanout {
    with_fixed_clients(
        o,
        server,
        epoch,
        "fan-out",
        async |server, clients, window| {
            Some(fixed_then_saturation(o, server, clients, window).await)
        },
    )
    .await
    .unwrap_or_default()
}

/// [`fan_out`]'s two parts, on clients already open.
async fn fixed_then_saturation(
    o: &Options,
    server: &Server,
    clients: &Clients,
    window: Duration,
) -> Fanout {
    let mut results = Fanout::default();
    let fixed = load::run_step(clients, 20.0, 10, Duration::from_secs(1), window).await;
    log(&format!(
        "{}: fixed load: {}",
        server.label,
        report::step_line(&fixed)
    ));
    results.fixed = Some(fixed);
    clients
        .stats
        .wait_quiet(Duration::from_millis(300), Duration::from_secs(5))
        .await;

    let window = Duration::from_secs(if o.quick { 2 } else { 3 });
    let search = Instant::now();
    for offered in SATURATION_LOADS {
        if search.elapsed() > SATURATION_BUDGET {
            log(&format!(
                "{}: saturation search stopped after {} s",
                server.label,
                SATURATION_BUDGET.as_secs()
            ));
            break;
        }
        let rate = offered / clients.len() as f64;
        let senders = load::senders_for(rate, 10);
        if senders > clients.len() {
            break;
        }
        let mut step = load::run_step(clients, rate, senders, Duration::from_secs(1), window).await;
        log(&format!("{}: {}", server.label, report::step_line(&step)));
        if !step.passes() && step.dropped_clients == 0 {
            // These machines are noisy: a failed step gets one more try.
            clients
                .stats
                .wait_quiet(Duration::from_millis(300), Duration::from_secs(5))
                .await;
            step = load::run_step(clients, rate, senders, Duration::from_secs(1), window).await;
            log(&format!(
                "{}: again: {}",
                server.label,
                report::step_line(&step)
            ));
        }
        let passed = step.passes();
        results.generator_limited = step.generator_cpu >= 0.9;
        if passed {
            results.saturation = Some(
                results
                    .saturation
                    .unwrap_or(0.0)
                    .max(step.deliveries.delivered_per_s),
            );
        }
        results.saturation_steps.push(step);
        if !passed {
            break;
        }
        clients
            .stats
            .wait_quiet(Duration::from_millis(300), Duration::from_secs(5))
            .await;
    }
    results
}

/// The fixed load without, then during, a flood of password logins, on a
/// fresh server; stops it.
async fn login_flood(o: &Options, server: Server, epoch: Instant) -> Option<logins::LoginFlood> {
    with_fixed_clients(
        o,
        server,
        epoch,
        "logins",
        async |server, clients, window| {
            let flood = logins::login_flood(server, clients, window).await;
            log(&format!("logins: {}", report::logins_line(&flood)));
            Some(flood)
        },
    )
    .await
}

/// Opens the fixed load's clients on `server`, runs `run` with them and the
/// fixed load's window, then closes them and stops the server.
async fn with_fixed_clients<T>(
    o: &Options,
    server: Server,
    epoch: Instant,
    name: &str,
    run: impl AsyncFnOnce(&Server, &Clients, Duration) -> Option<T>,
) -> Option<T> {
    log(&format!(
        "{}: {name}: opening {} clients",
        server.label, o.clients
    ));
    let stats = Stats::new(epoch);
    let clients = match Clients::open(
        server.addr,
        o.clients,
        1,
        "c",
        stats,
        Duration::from_secs(60),
    )
    .await
    {
        Ok(clients) => clients,
        Err(e) => {
            log(&format!("{}: cannot open the clients: {e}", server.label));
            server.stop();
            return None;
        }
    };
    clients
        .stats
        .wait_quiet(Duration::from_millis(300), Duration::from_secs(10))
        .await;
    let window = Duration::from_secs(if o.quick { 3 } else { 10 });
    let out = run(&server, &clients, window).await;
    clients.close();
    server.stop();
    out
}

/// RSS and threads of a fresh server with each of `o.idle` connections open.
async fn idle(
    o: &Options,
    start: impl Fn() -> Option<Server>,
    results: &mut ServerResults,
    epoch: Instant,
) {
    let Some(server) = start() else { return };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (baseline, _) = server.rss_and_threads();
    let mut open: Vec<Clients> = Vec::new();
    let mut total = 0;
    for (round, &target) in o.idle.iter().enumerate() {
        let more = target.saturating_sub(total);
        log(&format!(
            "{}: idle, opening {more} more connections",
            server.label
        ));
        let stats = Stats::new(epoch);
        let prefix = format!("i{round}-");
        match Clients::open(
            server.addr,
            more,
            o.per_login,
            &prefix,
            stats,
            Duration::from_secs(120),
        )
        .await
        {
            Ok(clients) => {
                total += clients.len();
                open.push(clients);
            }
            Err(e) => {
                log(&format!("{}: idle at {target}: {e}", server.label));
                results.idle_error = Some(format!("{target} connections: {e}"));
                break;
            }
        }
        for c in &open {
            c.stats
                .wait_quiet(Duration::from_millis(300), Duration::from_secs(10))
                .await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss, threads) = server.rss_and_threads();
        let dropped = open.iter().map(|c| c.stats.closed()).sum::<u64>();
        let idle = Idle {
            connections: total,
            per_login: o.per_login,
            dropped,
            rss_kib: rss,
            baseline_rss_kib: baseline,
            rss_per_connection_kib: rss.saturating_sub(baseline) as f64 / total as f64,
            threads,
        };
        log(&format!(
            "{}: {} connections ({} per login, {} closed by the server): RSS {} KiB ({:.1} KiB each), {} threads",
            server.label, total, o.per_login, dropped, rss, idle.rss_per_connection_kib, threads
        ));
        results.idle.push(idle);
        if o.hold > 0 {
            log(&format!("holding for {} s (pid {})", o.hold, server.pid()));
            tokio::time::sleep(Duration::from_secs(o.hold.min(600))).await;
        }
    }
    for c in open {
        c.close();
    }
    server.stop();
}

/// Two lanchat servers sharing a fresh Redis, half the clients on each,
/// senders on both: deliveries to the sender's own server and across servers.
async fn cluster(
    o: &Options,
    lanchat_args: impl Fn(&[String]) -> Vec<String>,
    results: &mut ServerResults,
    epoch: Instant,
) {
    const SERVERS: usize = 2;
    const SENDERS_PER_SERVER: usize = 5;
    if o.clients < SERVERS * SENDERS_PER_SERVER {
        let least = SERVERS * SENDERS_PER_SERVER;
        log(&format!("cluster: needs at least {least} clients, skipped"));
        return;
    }
    let redis = match Redis::start(SERVER_CORE, &o.out.join("redis-cluster.log")) {
        Ok(redis) => redis,
        Err(e) => {
            log(&format!("no Redis, skipping the cluster scenario: {e}"));
            return;
        }
    };
    let args = lanchat_args(&["--redis".to_string(), redis.url()]);
    let servers: Vec<Server> = (0..SERVERS)
        .map_while(|_| start_server(o, "lanchat", &o.server, &args, &o.wrapper))
        .collect();
    let mut groups: Vec<Clients> = Vec::new();
    if servers.len() == SERVERS {
        log(&format!(
            "cluster: opening {} clients on {SERVERS} servers",
            o.clients
        ));
        for (i, server) in servers.iter().enumerate() {
            // Server i gets clients i, i + SERVERS, ... of o.clients.
            let count = (o.clients + SERVERS - 1 - i) / SERVERS;
            let stats = Stats::on_server(epoch, i);
            let prefix = format!("s{i}-");
            match Clients::open(
                server.addr,
                count,
                1,
                &prefix,
                stats,
                Duration::from_secs(60),
            )
            .await
            {
                Ok(clients) => groups.push(clients),
                Err(e) => {
                    log(&format!(
                        "cluster: cannot open the clients of server {i}: {e}"
                    ));
                    break;
                }
            }
        }
    }
    if groups.len() == SERVERS {
        // Every client must know every other before the load starts: each
        // pair of clients gives at least one `join` frame (to the one that
        // connected first), across servers after a pub/sub hop.
        let n = groups.iter().map(|c| c.len() as u64).sum::<u64>();
        let all_joins = n * (n - 1) / 2;
        let joins = || groups.iter().map(|c| c.stats.joins()).sum::<u64>();
        let deadline = Instant::now() + Duration::from_secs(20);
        while joins() < all_joins && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if joins() < all_joins {
            log(&format!(
                "cluster: only {} of {} joins seen after 20 s",
                joins(),
                all_joins
            ));
        }
        for c in &groups {
            c.stats
                .wait_quiet(Duration::from_millis(300), Duration::from_secs(10))
                .await;
        }
        let window = Duration::from_secs(if o.quick { 3 } else { 10 });
        let step = load::run_cluster_step(
            &groups,
            20.0,
            SENDERS_PER_SERVER,
            Duration::from_secs(1),
            window,
        )
        .await;
        log(&format!("cluster: {}", report::cluster_line(&step)));
        results.cluster = Some(step);
    }
    for c in groups {
        c.close();
    }
    for server in servers {
        server.stop();
    }
    redis.stop();
}
