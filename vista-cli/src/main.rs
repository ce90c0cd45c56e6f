//! `vista`: create, inspect, check, recover, checkpoint and dump vista segments.
//!
//! `info`, `check` and `dump` only read (through [`vista::inspect`]): they never take
//! the segment's lock, never run recovery and never write, so they are safe on damaged
//! segments and on segments open in another process. `create`, `recover` and
//! `checkpoint` open the segment like a program does (taking its lock, recovering it).
//! The commands, their output and the exit codes are in `docs/tools.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod inspect;
mod open;
mod units;

/// Exit codes (documented in `docs/tools.md` and `vista --help`).
pub mod exit {
    /// Success (for `check`: no problem found).
    pub const OK: u8 = 0;
    /// `check` found a problem.
    pub const PROBLEMS: u8 = 1;
    /// Bad command line (clap's own code for usage errors).
    pub const USAGE: u8 = 2;
    /// The file (or its memory image) cannot be read, is not a segment, or the command
    /// cannot proceed with it as it is; nothing was changed.
    pub const FILE: u8 = 3;
    /// The segment is open in another process (or handle): `create`, `recover` and
    /// `checkpoint` need it closed.
    pub const LOCKED: u8 = 4;
}

const AFTER_HELP: &str = "\
Exit codes: 0 ok; 1 check found problems; 2 usage error; 3 file error (missing, \
unreadable, not a segment, damaged beyond what the command does; nothing changed); \
4 the segment is open elsewhere.
info, check and dump never write: they read the files without taking the lock.";

/// Tools for vista segments.
#[derive(Debug, Parser)]
#[command(name = "vista", version, after_help = AFTER_HELP)]
struct Cli {
    /// Print JSON instead of text (one object on stdout; errors stay one line on stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Where memory images live [default: $RIO_CACHE_DIR, else /dev/shm].
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new segment (refuses an existing file).
    Create {
        /// The segment file.
        path: PathBuf,
        /// Bytes of user space (units: KiB, MiB, GiB or plain bytes).
        #[arg(long, value_parser = units::parse_size)]
        size: u64,
        /// Undo-log lanes.
        #[arg(long, default_value_t = vista::DEFAULT_LANES)]
        lanes: u32,
        /// Undo-log capacity of each lane (rounded up to whole pages).
        #[arg(long, value_parser = units::parse_size, default_value = "1MiB")]
        undo_log_size: u64,
    },
    /// Describe a segment: sizes, lanes, memory image, last checkpoint, protection.
    /// Reads only.
    Info {
        /// The segment file.
        path: PathBuf,
    },
    /// Validate every structure: disk header, file length, journal, memory image,
    /// segment header, undo lanes. Exit 1 if anything is wrong. Reads only.
    Check {
        /// The segment file.
        path: PathBuf,
    },
    /// Open the segment with recovery (roll back an unfinished transaction, install a
    /// committed checkpoint journal) and report what recovery did.
    Recover {
        /// The segment file.
        path: PathBuf,
        /// Drop the memory image and start from the file's last checkpoint: the way
        /// past a damaged memory image. Loses what was committed since that checkpoint.
        #[arg(long)]
        discard_image: bool,
    },
    /// Open the segment (with recovery) and write a checkpoint: everything committed
    /// becomes durable on disk.
    Checkpoint {
        /// The segment file.
        path: PathBuf,
    },
    /// Hex and ASCII of committed user data. Reads only. By default from the memory
    /// image when it is the live state (everything committed, checkpointed or not),
    /// with an unfinished transaction's before-images laid back over it, so it shows
    /// what the next open would show.
    Dump {
        /// The segment file.
        path: PathBuf,
        /// First byte (user-space offset; units allowed).
        #[arg(long, value_parser = units::parse_size, default_value = "0")]
        offset: u64,
        /// Bytes to show (units allowed).
        #[arg(long, value_parser = units::parse_size, default_value = "256")]
        len: u64,
        /// Show the last checkpoint on disk (what survives power loss) instead.
        #[arg(long)]
        disk: bool,
    },
}

/// A failed command: its exit code and a one-line message.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    msg: String,
}

impl Failure {
    /// A failure about `path`; the message names the path if it does not already.
    pub fn new(code: u8, path: &Path, msg: impl std::fmt::Display) -> Failure {
        let msg = msg.to_string();
        let shown = path.display().to_string();
        let msg = if msg.contains(&shown) {
            msg
        } else {
            format!("{shown}: {msg}")
        };
        Failure { code, msg }
    }

    /// A failure from a vista error: `Locked` is [`exit::LOCKED`], the rest
    /// [`exit::FILE`].
    pub fn vista(path: &Path, e: &vista::Error) -> Failure {
        let code = match e {
            vista::Error::Locked { .. } => exit::LOCKED,
            _ => exit::FILE,
        };
        Failure::new(code, path, e)
    }
}

/// What a command prints and how it exits.
#[derive(Debug)]
pub struct Outcome {
    text: String,
    json: serde_json::Value,
    code: u8,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let cache_dir = cli
        .cache_dir
        .clone()
        .unwrap_or_else(|| vista::rio_cache::RioOptions::new().resolved_cache_dir());
    let result = match cli.command {
        Command::Create {
            path,
            size,
            lanes,
            undo_log_size,
        } => open::create(&path, &cache_dir, size, lanes, undo_log_size),
        Command::Info { path } => inspect::info(&path, &cache_dir),
        Command::Check { path } => inspect::check(&path, &cache_dir),
        Command::Recover {
            path,
            discard_image,
        } => open::recover(&path, &cache_dir, discard_image),
        Command::Checkpoint { path } => open::checkpoint(&path, &cache_dir),
        Command::Dump {
            path,
            offset,
            len,
            disk,
        } => inspect::dump(&path, &cache_dir, offset, len, disk),
    };
    match result {
        Ok(out) => {
            let mut s = if cli.json {
                out.json.to_string()
            } else {
                out.text
            };
            if !s.ends_with('\n') {
                s.push('\n');
            }
            // A closed stdout (`vista dump ... | head`) is not an error worth a message.
            let _ = std::io::stdout().lock().write_all(s.as_bytes());
            ExitCode::from(out.code)
        }
        Err(f) => {
            let line = f.msg.replace('\n', " ");
            let _ = writeln!(std::io::stderr().lock(), "vista: {line}");
            ExitCode::from(f.code)
        }
    }
}
