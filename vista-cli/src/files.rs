//! The commands that delete files: `remove` (a segment's files) and `images`
//! (listing the memory images of the cache directory, and with `--remove-orphans`
//! deleting those whose segment is gone). Both delete only under the files' locks, so
//! a segment that is open, or being opened, is never touched.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;
use vista::rio_cache::{self, ImageInfo};

use crate::units::human;
use crate::{exit, Failure, Outcome};

/// How a lock's holder is named in messages.
fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(0) | None => "by a process this one cannot see".into(),
        Some(p) => format!("by process {p}"),
    }
}

/// `vista remove`.
pub fn remove(path: &Path, cache_dir: &Path) -> Result<Outcome, Failure> {
    // The files of the segment itself (through a symlink: the target's journal, image
    // and fence, as an open names them); the link is left as it is.
    let given = path;
    let resolved = rio_cache::resolve_path(path).map_err(|e| Failure::new(exit::FILE, path, e))?;
    let path = resolved.as_path();
    if path.is_dir() {
        return Err(Failure::new(exit::FILE, given, "is a directory"));
    }
    // A file that is not a segment is never deleted (a mistyped path); a damaged
    // segment is (that is what the command is for).
    if let Err(rio_cache::Error::NotRioCache { reason, .. }) = rio_cache::existing_size(path) {
        return Err(Failure::new(
            exit::FILE,
            given,
            format!("is not a vista segment ({reason}); nothing was removed"),
        ));
    }
    let journal = rio_cache::journal_path(path);
    let image =
        rio_cache::image_path(path, cache_dir).map_err(|e| Failure::new(exit::FILE, given, e))?;
    let fence = vista::fence_path(path);
    let present = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    let found = [
        present(path).then(|| path.to_owned()),
        present(&journal).then(|| journal.clone()),
        present(&image).then(|| image.clone()),
        present(&fence).then(|| fence.clone()),
    ];
    // An empty file is refused unless a journal, memory image or fence lies beside it
    // (a creation cut short after it made the image). Alone, it may be anything: a
    // creation cut short before its image existed leaves one too, and holds nothing,
    // so deleting it by hand loses nothing (docs/tools.md).
    let empty = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0);
    if empty && found[1..].iter().all(Option::is_none) {
        return Err(Failure::new(
            exit::FILE,
            given,
            "is not a vista segment (the file is empty, with no journal, memory image or \
             fence beside it); nothing was removed",
        ));
    }
    if found.iter().all(Option::is_none) {
        return Err(Failure::new(
            exit::FILE,
            given,
            format!(
                "nothing to remove: no segment file, journal ({}) or memory image ({})",
                journal.display(),
                image.display()
            ),
        ));
    }
    // The fence (a member of a group with transactions not yet written back) goes
    // last, under the locks, once the files it guards are gone: left behind, it would
    // make a new segment created at this path start fenced.
    match rio_cache::remove_closed_with(path, cache_dir, &[&fence]) {
        Ok(()) => {}
        Err(rio_cache::Error::Locked { path: held, pid }) => {
            return Err(Failure::new(
                exit::LOCKED,
                given,
                format!(
                    "{} is open ({} is locked {}); nothing was removed (close it first)",
                    given.display(),
                    held.display(),
                    holder(pid)
                ),
            ))
        }
        Err(e) => return Err(Failure::new(exit::FILE, given, e)),
    }
    let show = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or_else(|| "none".to_string(), |p| p.display().to_string())
    };
    let text = format!(
        "removed {}\n  segment file  {}\n  journal       {}\n  memory image  {}\n  fence         {}\n",
        given.display(),
        show(&found[0]),
        show(&found[1]),
        show(&found[2]),
        show(&found[3]),
    );
    Ok(Outcome {
        text,
        json: json!({
            "path": path,
            "removed": {"file": found[0], "journal": found[1], "image": found[2], "fence": found[3]},
        }),
        code: exit::OK,
    })
}

/// What `images` says of one image's segment.
fn origin_text(i: &ImageInfo) -> String {
    match (&i.origin, i.origin_exists) {
        (None, _) => "unknown (the image records no segment path)".into(),
        (Some(o), Some(true)) => format!("{} (exists)", o.display()),
        (Some(o), Some(false)) => format!("{} (GONE)", o.display()),
        (Some(o), None) => format!("{} (cannot tell whether it exists)", o.display()),
    }
}

/// `vista images`.
pub fn images(cache_dir: &Path, remove_orphans: bool) -> Result<Outcome, Failure> {
    let list = rio_cache::images(cache_dir).map_err(|e| Failure::new(exit::FILE, cache_dir, e))?;
    let mut t = format!(
        "{} memory image(s) in {}\n",
        list.len(),
        cache_dir.display()
    );
    let mut rows = Vec::new();
    let (mut removed, mut orphans) = (0, 0);
    for i in &list {
        let in_use = match i.locked_by {
            None => "no".to_string(),
            Some(pid) => format!("yes, {}", holder(Some(pid))),
        };
        let action = if remove_orphans && i.is_orphan() {
            orphans += 1;
            match rio_cache::remove_orphan(i) {
                Ok(true) => {
                    removed += 1;
                    "removed".to_string()
                }
                Ok(false) => "kept: no longer an orphan".to_string(),
                Err(rio_cache::Error::Locked { pid, .. }) => {
                    format!("kept: opened meanwhile {}", holder(pid))
                }
                Err(e) => format!("kept: {e}"),
            }
        } else if i.is_orphan() {
            orphans += 1;
            "orphan: its segment is gone (--remove-orphans deletes it)".to_string()
        } else {
            String::new()
        };
        let _ = writeln!(t, "{}", i.path.display());
        let _ = writeln!(t, "  segment   {}", origin_text(i));
        let _ = writeln!(t, "  size      {}", human(i.len));
        let _ = writeln!(t, "  open      {in_use}");
        if !action.is_empty() {
            let _ = writeln!(t, "  {action}");
        }
        rows.push(json!({
            "image": i.path,
            "len": i.len,
            "segment": i.origin,
            "segment_exists": i.origin_exists,
            "locked_by": i.locked_by,
            "orphan": i.is_orphan(),
            "action": action,
        }));
    }
    let _ = writeln!(
        t,
        "{orphans} orphan(s){}",
        if remove_orphans {
            format!(", {removed} removed")
        } else {
            String::new()
        }
    );
    Ok(Outcome {
        text: t,
        json: json!({
            "cache_dir": cache_dir,
            "images": rows,
            "orphans": orphans,
            "removed": removed,
        }),
        code: exit::OK,
    })
}
