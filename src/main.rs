//! The `gantry` binary: install the crypto provider, set up logging, parse, run, and turn
//! the outcome into an exit code (0 success, 1 the operation or a job failed, 2 usage or
//! config error, 3 internal error). All work happens in the library.

use std::process::ExitCode;

use clap::Parser;
use gantry::cli::{Cli, Exit};

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    // rustls needs one process-wide provider; aws-lc-rs is the one every TLS user shares.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    gantry::registry::tls::warm_up_rng();
    let cli = Cli::parse();
    gantry::cli::init_tracing(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(Exit::Internal as u8);
        }
    };
    match runtime.block_on(gantry::cli::run(cli)) {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(err) => {
            eprintln!("error: {}", message(&err.error));
            ExitCode::from(err.status as u8)
        }
    }
}

/// `gantry image ls … | head -1`: once the reader has gone, `println!` panics with
/// "failed printing to stdout: Broken pipe". Rust ignores SIGPIPE, and restoring it needs
/// `unsafe`; instead such a panic ends the process quietly with success, as a process
/// killed by SIGPIPE would end without a word. Every other panic keeps the default
/// report (a panic inside a server task is caught by the runtime and must not end the
/// process).
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// The error and its causes, each cause added only when the text so far does not already
/// say it (many errors quote their source in their own message).
fn message(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}
