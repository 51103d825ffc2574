//! The processes around a run: the server under test (pinned with
//! `taskset`), Redis, and this process's own pinning, fd limit and CPU time.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Pins the calling thread (and the threads it starts later) to `core`.
pub fn pin_self(core: usize) -> io::Result<()> {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Raises `RLIMIT_NOFILE`: the hard limit to [`WANTED_FDS`] when allowed
/// (root), the soft limit to the hard one. Children (the server) inherit it.
pub fn raise_fd_limit() -> io::Result<u64> {
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_max < WANTED_FDS {
            let raised = libc::rlimit {
                rlim_cur: WANTED_FDS,
                rlim_max: WANTED_FDS,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Ok(WANTED_FDS);
            }
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(limit.rlim_cur)
    }
}

/// File descriptors wanted: lanchat's first design held 3 per WebSocket
/// (the socket and two `try_clone`s), so 10,000 connections needed more
/// than 30,000; it holds 1 now (see the storm's `server_fds_after`).
pub const WANTED_FDS: u64 = 65_536;

/// CPU time (user + system) the calling thread has used, for "was the
/// load generator the limit?": the generator is the main thread (one
/// current-thread runtime); the downloaders' thread, when there is one, is
/// not counted.
pub fn own_cpu_time() -> Duration {
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
        t(usage.ru_utime) + t(usage.ru_stime)
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A server process under test, pinned to one core.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub label: String,
    wrapped: bool,
}

impl Server {
    /// Starts `taskset -c CORE [wrapper...] BIN ARGS...` and waits for its
    /// `listening on http://HOST:PORT` line (at most 10 s). Its stderr goes
    /// to `log`.
    pub fn start(
        label: &str,
        bin: &Path,
        args: &[String],
        core: usize,
        wrapper: &[String],
        log: &Path,
    ) -> io::Result<Server> {
        let mut command = Command::new("taskset");
        command.arg("-c").arg(core.to_string());
        // `{n}` in the wrapper: a number per server started (one perf file each).
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        command.args(wrapper.iter().map(|w| w.replace("{n}", &n.to_string())));
        command.arg(bin).args(args);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?);
        let mut child = command
            .spawn()
            .map_err(|e| io::Error::other(format!("cannot start {}: {e}", bin.display())))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            let mut sent = false;
            // Keep reading until EOF so the server never gets EPIPE.
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                if !sent && let Some(at) = line.find("listening on http://") {
                    let addr = line[at + "listening on http://".len()..].trim().to_string();
                    let _ = tx.send(addr);
                    sent = true;
                }
                line.clear();
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "{label}: no 'listening on' line (see {})",
                    log.display()
                )));
            }
        };
        let addr = addr
            .parse()
            .map_err(|e| io::Error::other(format!("{label}: bad address {addr:?}: {e}")))?;
        Ok(Server {
            child,
            addr,
            label: label.to_string(),
            wrapped: !wrapper.is_empty(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's own pid: under a wrapper (`perf record ... --`) the
    /// process we started is the wrapper, and the server is its child.
    fn server_pid(&self) -> u32 {
        if !self.wrapped {
            return self.pid();
        }
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid()))
            .unwrap_or_default();
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(self.pid())
    }

    /// `VmRSS` (KiB) and `Threads` of the server process, from /proc.
    pub fn rss_and_threads(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server_pid()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("Threads:"))
    }

    /// File descriptors the server process holds now (entries of
    /// /proc/PID/fd).
    pub fn fds(&self) -> u64 {
        std::fs::read_dir(format!("/proc/{}/fd", self.server_pid()))
            .map(|d| d.count() as u64)
            .unwrap_or(0)
    }

    /// Threads of the server process now (`Threads:` of /proc/PID/status).
    pub fn threads(&self) -> u64 {
        self.rss_and_threads().1
    }

    /// CPU time (user + system, every thread, the ended ones included) the
    /// server process has used so far: its process CPU clock
    /// (`clock_getcpuclockid`, nanoseconds), else utime + stime from
    /// /proc/PID/stat (clock ticks, usually 10 ms).
    pub fn cpu_time(&self) -> Duration {
        let pid = self.server_pid() as libc::pid_t;
        unsafe {
            let mut clock: libc::clockid_t = 0;
            let mut ts: libc::timespec = std::mem::zeroed();
            if libc::clock_getcpuclockid(pid, &mut clock) == 0
                && libc::clock_gettime(clock, &mut ts) == 0
            {
                return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
            }
        }
        proc_stat_cpu_time(pid as u32).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub fn stop(mut self) {
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Time core `core` has spent busy (user, nice, system, irq, softirq, and
/// steal: the hypervisor running something else), from /proc/stat.
pub fn core_busy(core: usize) -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let label = format!("cpu{core} ");
    let line = stat.lines().find(|l| l.starts_with(&label))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?;
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(Duration::from_secs_f64(busy as f64 / per_s))
}

/// utime + stime of process `pid`, from /proc/PID/stat.
fn proc_stat_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (in parentheses, which may hold spaces):
    // state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(Duration::from_secs_f64(ticks as f64 / per_s))
}

/// A throwaway `redis-server` (no persistence) on a free port, pinned to the
/// server's core: it is part of the server side.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start(core: usize, log: &Path) -> io::Result<Redis> {
        let port = free_port()?;
        let child = Command::new("taskset")
            .args([
                "-c",
                &core.to_string(),
                "redis-server",
                "--port",
                &port.to_string(),
            ])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log)?)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::other(format!("cannot start redis-server: {e}")))?;
        let redis = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis.ping() {
                return Ok(redis);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        redis.stop();
        Err(io::Error::other(
            "redis-server did not answer PING within 10 s",
        ))
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok()
            && s.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises this process's `RLIMIT_NPROC` (threads of this user, the server's
/// included: it inherits the limit) to its hard limit. Root is not held to
/// it anyway.
pub fn raise_thread_limit() {
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NPROC, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NPROC, &limit);
        }
    }
}

/// The machine's limits that `connections` WebSockets to lanchat (a thread,
/// a file descriptor and about 2 memory mappings each; the load generator
/// needs a descriptor each too, under the same limit) would run into, one
/// sentence each; empty when none is in the way. The bench raises its own
/// fd and thread limits (see [`raise_fd_limit`], [`raise_thread_limit`]);
/// these are what is left: the kernel's, shared by everyone on the machine,
/// which the bench does not change.
pub fn connection_limits(connections: usize) -> Vec<String> {
    let n = connections as u64;
    let mut out = Vec::new();
    let sysctl = |path: &str| -> Option<u64> {
        std::fs::read_to_string(path)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    // Threads on the whole machine now: the 4th field of /proc/loadavg is
    // "running/total".
    let threads_now: u64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok())
        .unwrap_or(0);
    let fds = unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur
    };
    if fds < n + 200 {
        out.push(format!(
            "open files (ulimit -n) is {fds} and cannot be raised here: {} needed",
            n + 200
        ));
    }
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        let nproc = unsafe {
            let mut limit: libc::rlimit = std::mem::zeroed();
            libc::getrlimit(libc::RLIMIT_NPROC, &mut limit);
            limit.rlim_cur
        };
        if nproc < threads_now + n + 200 {
            out.push(format!(
                "threads of this user (ulimit -u) is {nproc}: {threads_now} threads run now, the server adds one per connection"
            ));
        }
    }
    for (what, path, need) in [
        (
            "kernel.pid_max",
            "/proc/sys/kernel/pid_max",
            threads_now + n + 200,
        ),
        (
            "kernel.threads-max",
            "/proc/sys/kernel/threads-max",
            threads_now + n + 200,
        ),
        (
            "vm.max_map_count",
            "/proc/sys/vm/max_map_count",
            2 * n + 1000,
        ),
    ] {
        if let Some(limit) = sysctl(path)
            && limit < need
        {
            out.push(format!(
                "{what} is {limit}, {need} needed ({threads_now} threads run now; raise it with `sysctl -w {what}=...`)"
            ));
        }
    }
    if let Some(range) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()
        && let [lo, hi] = range
            .split_whitespace()
            .filter_map(|v| v.parse::<u64>().ok())
            .collect::<Vec<_>>()[..]
        && hi.saturating_sub(lo) < n + 1000
    {
        out.push(format!(
            "net.ipv4.ip_local_port_range is {lo}-{hi}: {} ports for {n} connections to one address",
            hi - lo + 1
        ));
    }
    out
}
