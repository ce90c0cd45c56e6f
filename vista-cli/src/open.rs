//! The commands that open a segment like a program does: `create`, `recover`,
//! `checkpoint`. They take the segment's lock (a segment open elsewhere is
//! [`exit::LOCKED`]) and run recovery.

use std::path::Path;

use serde_json::json;
use vista::inspect::JournalState;
use vista::{ColdReason, Options, Segment, StartKind, Writeback};

use crate::units::human;
use crate::{exit, Failure, Outcome};

fn options(cache_dir: &Path) -> Options {
    Options::new()
        .cache_dir(cache_dir)
        .writeback(Writeback::Manual)
}

/// `vista create`.
pub fn create(
    path: &Path,
    cache_dir: &Path,
    size: u64,
    lanes: u32,
    undo_log_size: u64,
) -> Result<Outcome, Failure> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => {
            return Err(Failure::new(
                exit::FILE,
                path,
                "already exists; create makes new segments only",
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Failure::new(exit::FILE, path, e)),
    }
    let opts = options(cache_dir)
        .size(size)
        .lanes(lanes)
        .undo_log_size(undo_log_size);
    let seg = Segment::open(path, &opts).map_err(|e| Failure::vista(path, cache_dir, &e))?;
    let (user, capacity) = (seg.len(), seg.undo_log_capacity());
    let image = seg.cache_stats();
    let image_path = vista::rio_cache::image_path(path, cache_dir)
        .map_or_else(|_| String::new(), |p| p.display().to_string());
    let file_len = std::fs::metadata(path).map_or(0, |m| m.len());
    seg.close()
        .map_err(|e| Failure::vista(path, cache_dir, &e))?;
    let text = format!(
        "created {}\n  user space    {}\n  undo lanes    {lanes} x {} of records\n  file          {}\n  memory image  {image_path}\n",
        path.display(),
        human(user),
        human(capacity),
        human(file_len),
    );
    Ok(Outcome {
        text,
        json: json!({
            "path": path,
            "user_len": user,
            "lanes": lanes,
            "undo_log_capacity": capacity,
            "file_len": file_len,
            "image_path": image_path,
            "checkpoint": image.disk_seq,
        }),
        code: exit::OK,
    })
}

/// Refuses a path that holds no segment (missing, empty or a directory), which an open
/// would otherwise create.
fn existing(path: &Path) -> Result<(), Failure> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(Failure::new(exit::FILE, path, "is a directory")),
        Ok(m) if m.len() == 0 => Err(Failure::new(
            exit::FILE,
            path,
            "is empty: there is no segment to open (vista info shows whether a memory image holds one)",
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(Failure::new(exit::FILE, path, format!("open: {e}"))),
    }
}

fn start_name(s: StartKind) -> String {
    match s {
        StartKind::Created => "created".into(),
        StartKind::Warm => "warm (from the memory image)".into(),
        StartKind::Cold(r) => format!("cold from the file's last checkpoint ({})", cold_name(r)),
    }
}

/// A short name for a cold start's reason.
pub fn cold_name(r: ColdReason) -> &'static str {
    match r {
        ColdReason::NoImage => "no memory image",
        ColdReason::BootChanged => "the machine restarted",
        ColdReason::Stale => "stale: the file moved on without this image",
        ColdReason::OtherFile => "the image belongs to another file",
        ColdReason::SizeChanged => "the image is of another size",
        ColdReason::Damaged => "the image was damaged and discarded",
        ColdReason::Incomplete => "an interrupted load",
        ColdReason::Discarded => "the image was discarded",
        _ => "other",
    }
}

/// `vista recover`.
pub fn recover(path: &Path, cache_dir: &Path, discard_image: bool) -> Result<Outcome, Failure> {
    existing(path)?;
    // What the journal holds before the open acts on it (read-only).
    let journal = vista::inspect::inspect(path, cache_dir)
        .ok()
        .map(|i| i.cache.journal);
    let opts = options(cache_dir).discard_image(discard_image);
    let seg = Segment::open(path, &opts).map_err(|e| Failure::vista(path, cache_dir, &e))?;
    let r = seg.recovery();
    let start = seg.start_kind();
    // A member of a group with transactions across segments not yet written back is
    // recovered all the same; only its group's checkpoint may write it back, so its
    // close takes none (the memory image keeps everything).
    let fenced = match seg.close() {
        Ok(()) => false,
        Err(vista::Error::GroupCheckpointRequired) => true,
        Err(e) => return Err(Failure::vista(path, cache_dir, &e)),
    };
    let after = vista::inspect::inspect(path, cache_dir)
        .map(|i| i.cache.disk.seq)
        .ok();
    let journal_text = match &journal {
        Some(JournalState::Committed { seq, pages }) => {
            format!("installed committed checkpoint {seq} ({pages} pages)")
        }
        Some(JournalState::Torn) => "discarded an uncommitted checkpoint".into(),
        _ => "nothing to do".into(),
    };
    let text = format!(
        "recovered {}\n  start         {}\n  journal       {journal_text}\n  rolled back   {} unfinished transaction(s), {} before-image(s) restored\n  checkpoint    {} on disk after closing\n",
        path.display(),
        start_name(start),
        r.lanes_rolled_back,
        r.records_undone,
        after.map_or_else(|| "unknown".into(), |s| s.to_string()),
    ) + if fenced {
        "  fenced        it holds transactions across segments: only its group's checkpoint\n                (Group::checkpoint, in the program that owns the group) writes it back;\n                its commits are in the memory image\n"
    } else {
        ""
    };
    Ok(Outcome {
        text,
        json: json!({
            "path": path,
            "fenced": fenced,
            "start": start_name(start),
            "discarded_image": discard_image,
            "journal": journal_text,
            "lanes_rolled_back": r.lanes_rolled_back,
            "records_undone": r.records_undone,
            "checkpoint": after,
        }),
        code: exit::OK,
    })
}

/// `vista checkpoint`.
pub fn checkpoint(path: &Path, cache_dir: &Path) -> Result<Outcome, Failure> {
    existing(path)?;
    // Refused before the open, which would change the memory image (its recovery) and
    // then fail to checkpoint.
    let fence = vista::rio_cache::resolve_path(path).map(|p| vista::fence_path(&p));
    if fence.is_ok_and(|f| f.exists()) {
        return Err(Failure::new(
            exit::FILE,
            path,
            "is a fenced member of a group: it holds transactions across segments that \
             only its group's checkpoint writes back (Group::checkpoint, in the program \
             that owns the group); nothing was changed",
        ));
    }
    let seg = Segment::open(path, &options(cache_dir))
        .map_err(|e| Failure::vista(path, cache_dir, &e))?;
    let before = seg.cache_stats().disk_seq;
    let r = seg.recovery();
    seg.checkpoint()
        .map_err(|e| Failure::vista(path, cache_dir, &e))?;
    let stats = seg.cache_stats();
    seg.close()
        .map_err(|e| Failure::vista(path, cache_dir, &e))?;
    let text = format!(
        "checkpointed {}: disk at checkpoint {} (was {before}), {} page(s) written{}\n",
        path.display(),
        stats.disk_seq,
        stats.pages_written,
        if r.lanes_rolled_back > 0 {
            format!(
                "; the open rolled back {} unfinished transaction(s)",
                r.lanes_rolled_back
            )
        } else {
            String::new()
        }
    );
    Ok(Outcome {
        text,
        json: json!({
            "path": path,
            "checkpoint": stats.disk_seq,
            "previous": before,
            "pages_written": stats.pages_written,
            "lanes_rolled_back": r.lanes_rolled_back,
        }),
        code: exit::OK,
    })
}
