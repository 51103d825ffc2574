//! The `lanchat` binary: parse flags, then run the server (or, for
//! `lanchat join`, the terminal client). Everything else lives in the
//! library (see `src/lib.rs`).

use lanchat::config::{self, ArgsError, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let command =
        match config::parse_command(std::env::args().skip(1), |name| std::env::var(name).ok()) {
            Ok(command) => command,
            Err(ArgsError::Help) => {
                println!("{}", config::USAGE);
                return ExitCode::SUCCESS;
            }
            Err(ArgsError::Version) => {
                println!("{}", config::VERSION);
                return ExitCode::SUCCESS;
            }
            Err(ArgsError::Bad(reason)) => {
                eprintln!("lanchat: {reason}\n\n{}", config::USAGE);
                return ExitCode::from(2);
            }
        };
    let result = match command {
        Command::Serve(config) => {
            config::init_logging(config.log_level);
            lanchat::server::run(config)
        }
        // The client logs nothing: its stderr is for one-line reasons.
        Command::Join(args) => lanchat::client::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lanchat: {error}");
            ExitCode::from(1)
        }
    }
}
