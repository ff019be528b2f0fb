//! `chronicle`: inspect and operate a chronicle store from the command line.
//!
//! Every command but `compact` and `restore` opens the store read-only
//! (`Store::open_read_only`), so it works while a writer holds the store open. Errors are
//! one line naming the path; the exit status is 0 on success, 1 on failure (or damage found
//! by `verify`), 2 on a usage error.

mod commands;
mod event_json;
mod filter;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "chronicle", version, about = "Inspect and operate a chronicle event store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Format versions, segments, streams, events, bytes, oldest and newest event.
    Info { dir: PathBuf },
    /// Check every checksum, each index file against its segment, every snapshot.
    /// Exit 0 if clean, 1 if damaged; each problem as FILE OFFSET REASON.
    Verify { dir: PathBuf },
    /// Print events, oldest first.
    Dump {
        dir: PathBuf,
        #[command(flatten)]
        select: Select,
    },
    /// Print the last events; with --follow, then every new one as the writer commits it.
    Tail {
        dir: PathBuf,
        /// Keep printing new events until interrupted.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        select: Select,
    },
    /// Events, streams, segments, bytes; counts per stream category and per event type.
    Stats { dir: PathBuf },
    /// Compact the store (only when no writer holds it).
    Compact { dir: PathBuf },
    /// Write a consistent online backup of DIR to DEST (which must not exist).
    Backup { dir: PathBuf, dest: PathBuf },
    /// Restore BACKUP into DIR (which must not exist or be empty).
    Restore { backup: PathBuf, dir: PathBuf },
    /// Serve a read-only HTTP query API over the store.
    Serve {
        dir: PathBuf,
        /// Address to listen on (port 0 picks a free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: std::net::SocketAddr,
    },
}

/// Which events `dump` and `tail` print, and how.
#[derive(Args, Clone)]
pub(crate) struct Select {
    /// Only this stream.
    #[arg(long)]
    stream: Option<String>,
    /// Only events at or after this global position.
    #[arg(long)]
    from_position: Option<u64>,
    /// At most this many events (tail: the last this many; default 10).
    #[arg(long)]
    limit: Option<u64>,
    /// Only events of this type.
    #[arg(long)]
    event_type: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum Format {
    /// One JSON object a line.
    Json,
    /// Aligned columns.
    Table,
}

/// A failure to report: one line, and the exit status.
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Failure { message: message.into(), code: 1 }
    }
}

impl From<chronicle::Error> for Failure {
    fn from(error: chronicle::Error) -> Self {
        Failure::new(error.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Failure::new(error.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { dir } => commands::info(&dir),
        Command::Verify { dir } => commands::verify(&dir),
        Command::Dump { dir, select } => commands::dump(&dir, &select),
        Command::Tail { dir, follow, select } => commands::tail(&dir, follow, &select),
        Command::Stats { dir } => commands::stats(&dir),
        Command::Compact { dir } => commands::compact(&dir),
        Command::Backup { dir, dest } => commands::backup(&dir, &dest),
        Command::Restore { backup, dir } => commands::restore(&backup, &dir),
        Command::Serve { dir, listen } => serve::run(&dir, listen),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            // One line, whatever the message holds; none when stdout was closed (`| head`).
            if !failure.message.is_empty() {
                eprintln!("chronicle: {}", failure.message.replace('\n', " "));
            }
            ExitCode::from(failure.code)
        }
    }
}
