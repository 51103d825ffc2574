//! Command-line flags, parsed by hand into a plain [`Config`].
//!
//! The flags are the ones pinned by the wire contract (`docs/PROTOCOL.md`):
//! a bad flag is exit code 2 with the usage text, `--help` prints it,
//! `--version` prints the version.
//! `REDIS_URL`, `RUST_LOG` and `LANCHAT_HOST_KEY` are read here too, so the
//! rest of the program sees one value for each setting.
//!
//! `lanchat join ...` is the terminal client (`client.rs`): its own few
//! flags, parsed by [`parse_command`] into [`JoinArgs`].

use log::LevelFilter;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: lanchat [--host ADDR] [--port N] [--redis URL] [--log-level LEVEL]
               [--max-connections N] [--heartbeat SECS] [--www DIR]
               [--host-key KEY] [--qr auto|always|never] [--mdns NAME | --no-mdns]
               [--max-upload MIB] [--files-cap MIB]
               [--max-per-address N] [--allow-host NAME]...
       lanchat join [URL] [--name NAME] [--password PASSWORD]
       lanchat --version | --help

  --host ADDR            address to bind (default 0.0.0.0: the whole LAN)
  --port N               port, 0 picks a free one (default 8000)
  --redis URL            keep history, inboxes, conversations, sessions,
                         names, moderation and files in Redis
                         (env REDIS_URL also accepted; default: in memory)
  --log-level LEVEL      error, warn, info, debug, trace (default info;
                         env RUST_LOG also accepted)
  --max-connections N    open connections beyond this get 503 (default 10000)
  --heartbeat SECS       ping a WebSocket silent this long; close it after
                         2 to 3 times this long (default 30)
  --www DIR              serve the page from DIR instead of the embedded copy
  --host-key KEY         the secret of the host link (env LANCHAT_HOST_KEY;
                         default: the one kept in Redis, or a new random one)
  --qr WHEN              print a QR code of the LAN address at start: auto
                         (when stdout is a terminal), always, never
  --mdns NAME            announce NAME.local on the LAN (default lanchat)
  --no-mdns              announce nothing
  --max-upload MIB       largest file a user may upload (default 10; 0: off)
  --files-cap MIB        MiB of uploaded files kept in all, oldest out
                         first (default 256)
  --max-per-address N    open connections and new sessions a minute per
                         client address (default 64; 0: no limit, e.g.
                         behind a reverse proxy)
  --allow-host NAME      a Host name (with or without :port) to answer
                         besides localhost, this machine's addresses and
                         NAME.local; repeatable (others get 421)

lanchat join: chat from this terminal
  URL                    the chat's address, e.g. http://192.168.1.23:8000
                         (default: find lanchat.local on the LAN)
  --name NAME            your name (default: asked on the terminal)
  --password PASSWORD    the name's password, if it has one";

/// Shortest `--host-key`: a guessable key would make anyone a host.
pub const MIN_HOST_KEY_CHARS: usize = 16;

/// A host key goes in a URL and a cookie: letters, digits, `-`, `_`.
fn valid_host_key(key: &str) -> bool {
    key.len() >= MIN_HOST_KEY_CHARS
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub redis: Option<String>,
    pub log_level: LevelFilter,
    pub max_connections: usize,
    /// A WebSocket silent this long is pinged, and closed when silent for
    /// twice this long (see the heartbeat in `connection.rs`).
    pub heartbeat: Duration,
    pub www: Option<PathBuf>,
    /// The host link's secret (`--host-key`, env `LANCHAT_HOST_KEY`).
    pub host_key: Option<String>,
    /// Largest upload, in MiB (0: uploads off).
    pub max_upload_mib: u64,
    /// MiB of files kept in all.
    pub files_cap_mib: u64,
    /// Open connections, and new sessions a minute, per client address
    /// (0: no limit, behind a reverse proxy).
    pub max_per_address: usize,
    /// Host names requests may carry besides the built-in ones.
    pub allow_hosts: Vec<String>,
    pub qr: QrMode,
    /// The name to announce as `NAME.local` by mDNS; `None`: `--no-mdns`.
    pub mdns: Option<String>,
}

/// When to print the QR code of the LAN address at start (`--qr`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QrMode {
    /// When stdout is a terminal: a person is looking, not a log file.
    Auto,
    Always,
    Never,
}

/// What the command line asks for: run a server, or join one.
#[derive(Debug)]
pub enum Command {
    Serve(Config),
    Join(JoinArgs),
}

/// `lanchat join [URL] [--name NAME] [--password PASSWORD]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinArgs {
    /// `None`: look for `lanchat.local` by mDNS.
    pub url: Option<String>,
    /// `None`: ask on the terminal.
    pub name: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, PartialEq)]
pub enum ArgsError {
    Help,
    Version,
    Bad(String),
}

/// What `--version` prints.
pub const VERSION: &str = concat!("lanchat ", env!("CARGO_PKG_VERSION"));

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "0.0.0.0".into(),
            port: 8000,
            redis: None,
            log_level: LevelFilter::Info,
            max_connections: 10_000,
            heartbeat: Duration::from_secs(30),
            www: None,
            host_key: None,
            qr: QrMode::Auto,
            mdns: Some("lanchat".into()),
            max_upload_mib: 10,
            files_cap_mib: 256,
            max_per_address: 64,
            allow_hosts: Vec::new(),
        }
    }
}

impl Config {
    /// Parses flags (`--flag value` or `--flag=value`), then fills what was not
    /// given from `REDIS_URL` / `RUST_LOG`.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Config, ArgsError> {
        Self::parse(args, |name| std::env::var(name).ok())
    }

    /// [`Config::from_args`] with the environment passed in, for tests.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ArgsError> {
        let mut config = Config::default();
        let mut log_level_given = false;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Err(ArgsError::Help);
            }
            if arg == "-V" || arg == "--version" {
                return Err(ArgsError::Version);
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_string(), Some(value.to_string()))
                }
                _ => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| ArgsError::Bad(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--host" => config.host = value()?,
                "--port" => config.port = number(&flag, &value()?)?,
                "--redis" => config.redis = Some(value()?),
                "--log-level" => {
                    config.log_level = level(&value()?).ok_or_else(|| {
                        ArgsError::Bad(format!(
                            "{flag}: expected error, warn, info, debug or trace"
                        ))
                    })?;
                    log_level_given = true;
                }
                "--max-connections" => {
                    config.max_connections = number(&flag, &value()?)?;
                    if config.max_connections == 0 {
                        return Err(ArgsError::Bad(format!("{flag} must be at least 1")));
                    }
                }
                "--heartbeat" => {
                    let raw = value()?;
                    let secs: f64 = raw
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                        .ok_or_else(|| {
                            ArgsError::Bad(format!("{flag}: expected seconds > 0, got {raw:?}"))
                        })?;
                    config.heartbeat = Duration::from_secs_f64(secs);
                }
                "--www" => config.www = Some(PathBuf::from(value()?)),
                "--max-upload" => config.max_upload_mib = number(&flag, &value()?)?,
                "--files-cap" => config.files_cap_mib = number(&flag, &value()?)?,
                "--max-per-address" => config.max_per_address = number(&flag, &value()?)?,
                "--allow-host" => config.allow_hosts.push(value()?.to_ascii_lowercase()),
                "--host-key" => {
                    let key = value()?;
                    if !valid_host_key(&key) {
                        return Err(ArgsError::Bad(format!(
                            "{flag}: at least {MIN_HOST_KEY_CHARS} letters, digits, - or _"
                        )));
                    }
                    config.host_key = Some(key);
                }
                "--qr" => {
                    config.qr = match value()?.as_str() {
                        "auto" => QrMode::Auto,
                        "always" => QrMode::Always,
                        "never" => QrMode::Never,
                        other => {
                            return Err(ArgsError::Bad(format!(
                                "{flag}: expected auto, always or never, got {other:?}"
                            )));
                        }
                    }
                }
                "--mdns" => {
                    let name = value()?;
                    if !is_dns_label(&name) {
                        return Err(ArgsError::Bad(format!(
                            "{flag}: {name:?} is not a DNS name: 1 to 63 letters, digits \
                             and hyphens, not starting or ending with a hyphen"
                        )));
                    }
                    config.mdns = Some(name);
                }
                "--no-mdns" if inline.is_none() => config.mdns = None,
                _ => return Err(ArgsError::Bad(format!("unknown argument {arg:?}"))),
            }
        }
        if config.redis.is_none() {
            config.redis = env("REDIS_URL").filter(|url| !url.is_empty());
        }
        if config.host_key.is_none() {
            config.host_key = env("LANCHAT_HOST_KEY").filter(|key| !key.is_empty());
            if config
                .host_key
                .as_deref()
                .is_some_and(|key| !valid_host_key(key))
            {
                return Err(ArgsError::Bad(format!(
                    "LANCHAT_HOST_KEY: at least {MIN_HOST_KEY_CHARS} letters, digits, - or _"
                )));
            }
        }
        if !log_level_given && let Some(level) = env("RUST_LOG").as_deref().and_then(rust_log_level)
        {
            config.log_level = level;
        }
        Ok(config)
    }
}

/// Parses the whole command line: `join ...` for the terminal client,
/// anything else for the server.
pub fn parse_command(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, ArgsError> {
    let mut args = args.into_iter().peekable();
    if args.peek().map(String::as_str) == Some("join") {
        args.next();
        return parse_join(args).map(Command::Join);
    }
    Config::parse(args, env).map(Command::Serve)
}

/// The flags of `lanchat join`, in the same two spellings as the server's.
fn parse_join(args: impl IntoIterator<Item = String>) -> Result<JoinArgs, ArgsError> {
    let mut join = JoinArgs::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err(ArgsError::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.into())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| ArgsError::Bad(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--name" => join.name = Some(value()?),
            "--password" => join.password = Some(value()?),
            _ if !arg.starts_with('-') && join.url.is_none() => join.url = Some(arg),
            _ => return Err(ArgsError::Bad(format!("join: unknown argument {arg:?}"))),
        }
    }
    Ok(join)
}

/// A name that can be announced as `NAME.local`: one DNS label (RFC 1123).
fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn number<T: std::str::FromStr>(flag: &str, raw: &str) -> Result<T, ArgsError> {
    raw.parse()
        .map_err(|_| ArgsError::Bad(format!("{flag}: expected a number, got {raw:?}")))
}

fn level(raw: &str) -> Option<LevelFilter> {
    match raw.to_ascii_lowercase().as_str() {
        "error" => Some(LevelFilter::Error),
        "warn" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        "off" => Some(LevelFilter::Off),
        _ => None,
    }
}

/// `RUST_LOG` is often `debug` but may be `lanchat=debug,other=warn`:
/// take the bare level, or the one given for `lanchat`.
fn rust_log_level(raw: &str) -> Option<LevelFilter> {
    raw.split(',').find_map(|part| match part.split_once('=') {
        Some(("lanchat", lvl)) => level(lvl),
        Some(_) => None,
        None => level(part),
    })
}

/// Logs go to stderr (stdout carries only the `listening on` line), with
/// thread names, which tell which connection a line is about.
pub fn init_logging(level: LevelFilter) {
    use std::io::IsTerminal;
    // tungstenite logs every frame at trace/debug; keep it quiet unless asked.
    let tungstenite = if level >= LevelFilter::Trace {
        level
    } else {
        LevelFilter::Warn
    };
    let _ = simple_logger::SimpleLogger::new()
        .with_level(level)
        .with_module_level("tungstenite", tungstenite)
        .with_colors(std::io::stderr().is_terminal())
        .with_threads(true)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ArgsError> {
        Config::parse(args.iter().map(|s| s.to_string()), |_| None)
    }

    #[test]
    fn flags_in_both_spellings() {
        let c = parse(&["--port", "0", "--host=127.0.0.1", "--heartbeat", "0.5"]).unwrap();
        assert_eq!((c.port, c.host.as_str()), (0, "127.0.0.1"));
        assert_eq!(c.heartbeat, Duration::from_millis(500));
    }

    #[test]
    fn bad_flags_are_errors() {
        for args in [
            &["--port", "x"][..],
            &["--nope"],
            &["--port"],
            &["--heartbeat", "0"],
            &["--log-level", "loud"],
            &["--qr", "sometimes"],
            &["--mdns", "my chat"],
            &["--mdns", "-x"],
            &["--host-key", ""],
            &["--no-mdns=1"],
        ] {
            assert!(matches!(parse(args), Err(ArgsError::Bad(_))), "{args:?}");
        }
        assert_eq!(parse(&["--help"]).unwrap_err(), ArgsError::Help);
        assert_eq!(parse(&["--version"]).unwrap_err(), ArgsError::Version);
    }

    #[test]
    fn qr_mdns_and_host_key() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            (c.qr, c.mdns.as_deref(), c.host_key),
            (QrMode::Auto, Some("lanchat"), None)
        );
        let c = parse(&["--qr=never", "--no-mdns", "--host-key", "sixteen-chars-ok"]).unwrap();
        assert_eq!(
            (c.qr, c.mdns, c.host_key.as_deref()),
            (QrMode::Never, None, Some("sixteen-chars-ok"))
        );
        assert!(matches!(
            parse(&["--host-key", "short"]),
            Err(ArgsError::Bad(_))
        ));
        let c = parse(&["--qr", "always", "--mdns", "room-12"]).unwrap();
        assert_eq!((c.qr, c.mdns.as_deref()), (QrMode::Always, Some("room-12")));
        let env = |k: &str| (k == "LANCHAT_HOST_KEY").then(|| "from-env-from-env".to_string());
        let c = Config::parse(Vec::<String>::new(), env).unwrap();
        assert_eq!(c.host_key.as_deref(), Some("from-env-from-env"));
        let c = Config::parse(["--host-key=flag-flag-flag-flag".to_string()], env).unwrap();
        assert_eq!(c.host_key.as_deref(), Some("flag-flag-flag-flag"));
    }

    #[test]
    fn join_is_a_subcommand() {
        let command = |args: &[&str]| parse_command(args.iter().map(|s| s.to_string()), |_| None);
        let Ok(Command::Join(join)) = command(&["join", "http://h:1", "--name=bot"]) else {
            panic!("not a join");
        };
        assert_eq!(join.url.as_deref(), Some("http://h:1"));
        assert_eq!(join.name.as_deref(), Some("bot"));
        let Ok(Command::Join(join)) = command(&["join", "--password", "pw"]) else {
            panic!("not a join");
        };
        assert_eq!((join.url, join.password.as_deref()), (None, Some("pw")));
        for bad in [
            &["join", "a", "b"][..],
            &["join", "--nope"],
            &["join", "--name"],
        ] {
            assert!(matches!(command(bad), Err(ArgsError::Bad(_))), "{bad:?}");
        }
        assert!(matches!(command(&["--port", "1"]), Ok(Command::Serve(_))));
    }

    #[test]
    fn environment_fills_the_gaps() {
        let env = |k: &str| match k {
            "REDIS_URL" => Some("redis://x".to_string()),
            "RUST_LOG" => Some("hyper=warn,lanchat=debug".to_string()),
            _ => None,
        };
        let c = Config::parse(Vec::<String>::new(), env).unwrap();
        assert_eq!(c.redis.as_deref(), Some("redis://x"));
        assert_eq!(c.log_level, LevelFilter::Debug);
        let c = Config::parse(["--log-level".to_string(), "warn".to_string()], env).unwrap();
        assert_eq!(c.log_level, LevelFilter::Warn);
    }
}
