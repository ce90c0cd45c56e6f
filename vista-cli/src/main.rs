//! `vista`: create, inspect, check, recover, checkpoint, dump and remove vista
//! segments, and list the memory images of a cache directory.
//!
//! `info`, `check`, `dump` and `heap` only read (through [`vista::inspect`]): they never
//! take the segment's lock, never run recovery and never write, so they are safe on
//! damaged segments and on segments open in another process. `create`, `recover` and
//! `checkpoint` open the segment like a program does (taking its lock, recovering it).
//! `remove` and `images --remove-orphans` delete files, only under their locks. The
//! commands, their output and the exit codes are in `docs/tools.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod files;
mod heap;
mod inspect;
mod open;
mod units;

/// Exit codes (documented in `docs/tools.md` and `vista --help`).
pub mod exit {
    /// Success (for `check`, `info` and `heap`: no problem found).
    pub const OK: u8 = 0;
    /// `check` or `heap` found a problem, or `info` reported damage (something the next
    /// open would refuse); the report is on stdout.
    pub const PROBLEMS: u8 = 1;
    /// Bad command line (clap's own code for usage errors).
    pub const USAGE: u8 = 2;
    /// The file (or its memory image) cannot be read, is not a segment, or the command
    /// cannot proceed with it as it is; nothing was changed.
    pub const FILE: u8 = 3;
    /// The segment is open in another process (or handle): `create`, `recover`,
    /// `checkpoint` and `remove` need it closed. The message names the holder's pid.
    pub const LOCKED: u8 = 4;
}

const AFTER_HELP: &str = "\
Exit codes: 0 ok; 1 check or heap found problems, or info reported damage (the \
report is on stdout); 2 usage error; 3 file error (missing, unreadable, not a \
segment, damaged beyond what the command does; nothing changed); 4 the segment is \
open elsewhere (the message names the process).
info, check, dump, heap and images (without --remove-orphans) never write: they read \
the files without taking the lock.
Offsets and sizes: decimal with an optional binary unit (4096, 64KiB, 1MiB) or \
hexadecimal (0x1000).";

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
        /// Undo-log capacity of each lane (with the lane's 64-byte header, rounded up to
        /// whole pages).
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
    /// segment header, undo lanes, reserved bytes, and the heap if the segment has one.
    /// Exit 1 if anything is wrong. Reads only.
    Check {
        /// The segment file.
        path: PathBuf,
    },
    /// Heap statistics: live blocks and bytes per size class, free runs,
    /// fragmentation; and the heap check's problems (exit 1 if any). Reads only.
    Heap {
        /// The segment file.
        path: PathBuf,
        /// Read the last checkpoint on disk instead of the live state.
        #[arg(long)]
        disk: bool,
    },
    /// Delete a segment: its file, its journal, its memory image and its fence file, if any.
    /// Refuses a segment that is open (naming the process) and a file that is not a
    /// segment.
    Remove {
        /// The segment file.
        path: PathBuf,
    },
    /// List the memory images in the cache directory: the segment each belongs to,
    /// whether that file still exists, its size, whether it is open.
    Images {
        /// Delete the images whose segment file is gone (never one that is open, or
        /// whose file exists, or whose segment is unknown).
        #[arg(long)]
        remove_orphans: bool,
    },
    /// Open the segment with recovery (roll back an unfinished transaction, install a group
    /// checkpoint or grow committed in the journal) and report what recovery did.
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

/// Whether `msg` already names the file `shown`: it starts with it (`seg: ...`,
/// `seg is corrupt ...`), or names it as a library error does, after a verb and before
/// a colon (`open seg: ...`), or in quotes. A name that is merely a word of the message
/// (a file `a` in "is not a segment", `only` in "new segments only") does not count.
fn names(msg: &str, shown: &str) -> bool {
    if shown.is_empty() {
        return false;
    }
    if msg
        .strip_prefix(shown)
        .is_some_and(|rest| rest.starts_with(':') || rest.starts_with(' '))
    {
        return true;
    }
    msg.match_indices(shown).any(|(i, _)| {
        let before = msg[..i].chars().next_back();
        let after = msg[i + shown.len()..].chars().next();
        match (before, after) {
            (Some(b), Some(':')) => b.is_whitespace(),
            (Some(q @ ('"' | '`' | '\'')), Some(a)) => a == q,
            _ => false,
        }
    })
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
        let msg = if names(&msg, &shown) {
            msg
        } else {
            format!("{shown}: {msg}")
        };
        Failure { code, msg }
    }

    /// A failure from a vista error: `Locked` is [`exit::LOCKED`], the rest
    /// [`exit::FILE`]. The message names the damaged copy (the error's path: the
    /// segment file, its memory image in `cache_dir`, or its journal) and the way
    /// forward in this tool's commands.
    pub fn vista(path: &Path, cache_dir: &Path, e: &vista::Error) -> Failure {
        let code = match e {
            vista::Error::Locked { .. } => exit::LOCKED,
            _ => exit::FILE,
        };
        if let vista::Error::Corrupt { path: bad, reason } = e {
            if let Some(why) = reason.strip_prefix("not a vista segment (") {
                // Not a segment at all: nothing to recover, check or remove.
                return Failure::new(
                    code,
                    path,
                    format!(
                        "{} is not a vista segment ({}; nothing was changed)",
                        bad.display(),
                        why.trim_end_matches(')')
                    ),
                );
            }
        }
        Failure::new(code, path, commands_for(&e.to_string(), path, cache_dir, e))
    }
}

/// A library message in this tool's words: the options and functions it names become
/// the commands that do the same, and a refusal without a way forward gets one.
fn commands_for(msg: &str, path: &Path, cache_dir: &Path, e: &vista::Error) -> String {
    let p = path.display();
    // `recover` opens an existing segment: for an image whose file is missing or empty,
    // the way out is `remove` (which deletes the image with the file).
    let no_file = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
    let discard = if no_file && matches!(e, vista::Error::LiveImage { .. }) {
        format!("`vista remove {p}`, which loses the commits it holds,")
    } else {
        format!("`vista recover --discard-image {p}`")
    };
    let mut m = msg
        .replace("opening with discard_image", &discard)
        .replace(
            "(discard_image starts from the file)",
            &format!("({discard} starts from the file)"),
        )
        .replace(
            "(discard_image drops the image)",
            &format!("({discard} drops the image)"),
        )
        .replace("Segment::remove", &format!("`vista remove {p}`"));
    let journal = vista::rio_cache::journal_path(path);
    let image = vista::rio_cache::image_path(path, cache_dir).ok();
    let extra = match e {
        vista::Error::Corrupt { path: bad, .. } if *bad == journal => Some(format!(
            "the checkpoint journal is damaged: `vista check {p}` shows what is intact; \
             restore the segment file and its journal from a copy, or `vista remove {p}`"
        )),
        vista::Error::Corrupt { path: bad, .. } if Some(bad) == image.as_ref() => None,
        vista::Error::Corrupt { .. } if !m.contains("`vista remove") => Some(format!(
            "the segment file is damaged: `vista check {p}` shows what is intact; restore \
             it from a copy, or `vista remove {p}` deletes the segment"
        )),
        vista::Error::DamagedImage { .. } | vista::Error::LiveImage { .. }
            if !m.contains("`vista remove") =>
        {
            Some(format!("or `vista remove {p}` deletes the segment"))
        }
        _ => None,
    };
    if let Some(x) = extra {
        m.push_str("; ");
        m.push_str(&x);
    }
    m
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
        Command::Heap { path, disk } => heap::heap(&path, &cache_dir, disk),
        Command::Remove { path } => files::remove(&path, &cache_dir),
        Command::Images { remove_orphans } => files::images(&cache_dir, remove_orphans),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_names_a_file_only_where_it_names_a_file() {
        assert!(names("seg: already exists", "seg"));
        assert!(names("seg is corrupt: bad magic", "seg"));
        assert!(names("open seg: No such file or directory", "seg"));
        assert!(names("the file `seg` is open", "seg"));
        assert!(names("/abs/seg: could not read /abs/seg.", "/abs/seg"));
        assert!(!names(
            "already exists; create makes new segments only",
            "seg"
        ));
        assert!(!names(
            "already exists; create makes new segments only",
            "only"
        ));
        assert!(!names("is not a vista segment (the file is empty)", "a"));
        assert!(!names("already exists", "x"));
        assert!(!names("seg.journal is damaged", "seg"));
        assert!(!names("/tmp/seg: is empty", "seg"));
        assert!(!names("anything", ""));
        let f = Failure::new(exit::FILE, Path::new("seg"), "already exists; segments");
        assert_eq!(f.msg, "seg: already exists; segments");
        let f = Failure::new(exit::FILE, Path::new("seg"), "seg is corrupt");
        assert_eq!(f.msg, "seg is corrupt");
    }
}
