//! The `lanchat` binary: parse flags, start logging, run the server.
//! Everything else lives in the library (see `src/lib.rs`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match lanchat::config::Config::from_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(lanchat::config::ArgsError::Help) => {
            println!("{}", lanchat::config::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(lanchat::config::ArgsError::Version) => {
            println!("{}", lanchat::config::VERSION);
            return ExitCode::SUCCESS;
        }
        Err(lanchat::config::ArgsError::Bad(reason)) => {
            eprintln!("lanchat: {reason}\n\n{}", lanchat::config::USAGE);
            return ExitCode::from(2);
        }
    };
    lanchat::config::init_logging(config.log_level);
    match lanchat::server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lanchat: {error}");
            ExitCode::from(1)
        }
    }
}
