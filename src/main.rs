use std::io::IsTerminal;
use std::process::ExitCode;

use arca::client::{FailureKind, ServerAnswer};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The exit status of a process killed by SIGPIPE (128 + 13), what `yes | head -1` leaves.
const EXIT_BROKEN_PIPE: i32 = 141;

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("ARCA_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
    let json = wants_json(std::env::args());
    let cli = arca::cli::Cli::parse();
    match arca::cli::run(cli) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            let kind = FailureKind::of(&e);
            // One line that names the reason.
            let mut message = format!("{e:#}").replace('\n', " ");
            if let Some(hint) = arca::client::hint(&message) {
                message = format!("{message} ({hint})");
            }
            if json {
                let code = e
                    .chain()
                    .find_map(|c| c.downcast_ref::<ServerAnswer>())
                    .map_or(kind.code(), |a| a.code.as_str());
                let body = serde_json::json!({
                    "error": { "code": code, "message": message, "exit_code": kind.exit_code() }
                });
                eprintln!("{body}");
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::from(kind.exit_code() as u8)
        }
    }
}

/// Whether the command line asks for `--json` (before any `--`), so that errors are JSON too.
fn wants_json(args: impl Iterator<Item = String>) -> bool {
    args.skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// `arca ... | head -1`: once the reader is gone, stop quietly with SIGPIPE's status instead of
/// panicking (Rust ignores SIGPIPE, so a write to a closed pipe fails and `println!` panics).
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        default(info);
    }));
}
