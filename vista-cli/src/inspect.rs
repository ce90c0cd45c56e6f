//! The read-only commands: `info`, `check`, `dump`, `heap`. Everything here goes
//! through [`vista::inspect`] (or reads the segment file directly), opening files
//! read-only and taking no lock.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};
use vista::inspect::{
    CacheInfo, HeaderFault, ImageState, InterruptedGrow, JournalState, LaneState, SegmentInfo,
    Source, View,
};

use crate::open::cold_name;
use crate::units::{epoch_secs, human, utc};
use crate::{exit, Failure, Outcome};

pub(crate) fn source_name(s: Source) -> &'static str {
    match s {
        Source::Image => "memory image",
        Source::Disk => "disk",
    }
}

fn image_text(i: &ImageState) -> String {
    match i {
        ImageState::Warm => "warm: the live state; an open starts from it".into(),
        ImageState::Cold(r) => format!("cold ({}): an open loads the file instead", cold_name(*r)),
        ImageState::Damaged(why) => format!(
            "DAMAGED ({why}); it may hold transactions newer than the file: opens are refused until `vista recover --discard-image`"
        ),
        ImageState::Live(why) => format!(
            "LIVE but unusable ({why}): opens are refused until `vista recover --discard-image`"
        ),
        other => format!("{other:?}"),
    }
}

fn image_json(i: &ImageState) -> Value {
    match i {
        ImageState::Warm => json!({"state": "warm"}),
        ImageState::Cold(r) => json!({"state": "cold", "reason": cold_name(*r)}),
        ImageState::Damaged(why) => json!({"state": "damaged", "reason": why}),
        ImageState::Live(why) => json!({"state": "live", "reason": why}),
        other => json!({"state": format!("{other:?}")}),
    }
}

fn grow_text(g: InterruptedGrow) -> String {
    match g {
        InterruptedGrow::Uncommitted { to } => format!(
            "cut off on its way to {} before its commit point (the next open undoes it)",
            human(to)
        ),
        InterruptedGrow::Committed { to } => format!(
            "cut off on its way to {} after its commit point (the next open finishes it)",
            human(to)
        ),
        other => format!("{other:?}"),
    }
}

fn grow_json(g: InterruptedGrow) -> Value {
    match g {
        InterruptedGrow::Uncommitted { to } => json!({"committed": false, "to": to}),
        InterruptedGrow::Committed { to } => json!({"committed": true, "to": to}),
        other => json!({"state": format!("{other:?}")}),
    }
}

/// Bytes of the journal file, if it can be seen.
fn journal_len(c: &CacheInfo) -> Option<u64> {
    std::fs::metadata(&c.journal_path).ok().map(|m| m.len())
}

fn journal_text(j: &JournalState, len: Option<u64>) -> String {
    match j {
        JournalState::Absent => "none".into(),
        JournalState::Empty if len.unwrap_or(0) == 0 => {
            "clear: an empty file (the last checkpoint completed)".into()
        }
        JournalState::Empty => format!(
            "clear: a zeroed header, so no group checkpoint or grow is pending (the last one \
             completed); the other {} are its leftover pages, kept so the next one reuses the \
             file's blocks; nothing reads them",
            human(len.unwrap_or(0).saturating_sub(64))
        ),
        JournalState::Torn => "an uncommitted checkpoint (the next open discards it)".into(),
        JournalState::Committed { seq, pages } => format!(
            "committed checkpoint {seq} of {pages} page(s), not yet installed (the next open installs it)"
        ),
        JournalState::Corrupt(why) => format!("CORRUPT: {why}"),
        other => format!("{other:?}"),
    }
}

fn journal_json(j: &JournalState) -> Value {
    match j {
        JournalState::Absent => json!({"state": "absent"}),
        JournalState::Empty => json!({"state": "clear"}),
        JournalState::Torn => json!({"state": "torn"}),
        JournalState::Committed { seq, pages } => {
            json!({"state": "committed", "seq": seq, "pages": pages})
        }
        JournalState::Corrupt(why) => json!({"state": "corrupt", "reason": why}),
        other => json!({"state": format!("{other:?}")}),
    }
}

fn lane_text(state: &LaneState, used: u64, capacity: u64, in_use: bool) -> String {
    let pct = if capacity == 0 {
        0.0
    } else {
        used as f64 * 100.0 / capacity as f64
    };
    match state {
        LaneState::Empty => "empty".into(),
        LaneState::Unfinished { records } => format!(
            "{}: {records} record(s), {used} of {capacity} bytes ({pct:.1}%){}",
            if in_use {
                "transaction in progress"
            } else {
                "UNFINISHED transaction"
            },
            if in_use {
                ""
            } else {
                "; a crash interrupted it, the next open rolls it back"
            }
        ),
        LaneState::CrossSegment {
            records,
            coordinator,
            decided,
        } => format!(
            "{}: {records} record(s), {used} of {capacity} bytes ({pct:.1}%), part of a \
             transaction across segments decided by {}: {}",
            if in_use {
                "transaction in progress"
            } else {
                "UNFINISHED transaction"
            },
            coordinator.display(),
            match decided {
                Ok(true) => "committed (the next open keeps it)".to_owned(),
                Ok(false) if in_use => "not decided yet".to_owned(),
                Ok(false) => "not committed (the next open rolls it back)".to_owned(),
                Err(why) => format!(
                    "the coordinator cannot be read ({why}): the next open refuses until it can"
                ),
            }
        ),
        LaneState::Damaged(why) => format!("DAMAGED: {why}"),
        other => format!("{other:?}"),
    }
}

fn view_json(v: &View) -> Value {
    let header = match &v.header {
        Ok(s) => json!({
            "version": s.version, "lanes": s.lanes, "lane_size": s.lane_size,
            "undo_log_capacity": s.undo_log_capacity, "user_off": s.user_off,
            "user_len": s.user_len,
        }),
        Err(f) => json!({"error": f.to_string()}),
    };
    let lanes: Vec<Value> = v
        .lanes
        .iter()
        .map(|l| {
            let (state, extra) = match &l.state {
                LaneState::Empty => ("empty", Value::Null),
                LaneState::Unfinished { records } => ("unfinished", json!(records)),
                LaneState::CrossSegment {
                    records,
                    coordinator,
                    decided,
                } => (
                    "cross-segment",
                    json!({
                        "records": records,
                        "coordinator": coordinator.display().to_string(),
                        "committed": decided.as_ref().ok(),
                        "coordinator_error": decided.as_ref().err(),
                    }),
                ),
                LaneState::Damaged(why) => ("damaged", json!(why)),
                other => ("other", json!(format!("{other:?}"))),
            };
            json!({"lane": l.index, "used": l.used, "state": state, "detail": extra})
        })
        .collect();
    json!({"source": source_name(v.source), "header": header, "lanes": lanes})
}

fn lock_text(c: &CacheInfo) -> String {
    match c.locked_by {
        None => "no (no process holds its lock)".into(),
        Some(0) => "yes, by a process this one cannot see".into(),
        Some(pid) => format!("yes, by process {pid} (what is read may change while it is read)"),
    }
}

pub(crate) fn inspect_or_fail(path: &Path, cache_dir: &Path) -> Result<SegmentInfo, Failure> {
    vista::inspect::inspect(path, cache_dir).map_err(|e| Failure::vista(path, cache_dir, &e))
}

/// `vista info`.
pub fn info(path: &Path, cache_dir: &Path) -> Result<Outcome, Failure> {
    let info = inspect_or_fail(path, cache_dir)?;
    let c = &info.cache;
    let source = info.current_source();
    let view = info.view(source);
    let pkeys = vista::rio_cache::pkeys_supported();
    let auto = match vista::rio_cache::inspect::auto_protection() {
        vista::Protection::Pkey => "pkey",
        vista::Protection::Alias => "alias",
        vista::Protection::Mprotect => "mprotect",
        vista::Protection::None => "none",
        vista::Protection::Auto => "auto",
    };
    // The version the segment header says (this build's when it cannot be read: the
    // segment section below says why).
    let segment_version = match view.as_ref().map(|v| &v.header) {
        Ok(Ok(s)) => s.version,
        Ok(Err(vista::inspect::HeaderFault::Version(v))) => *v,
        _ => vista::FORMAT_VERSION,
    };
    let mut t = String::new();
    let _ = writeln!(t, "segment       {}", c.path.display());
    let _ = writeln!(
        t,
        "format        rio-cache version {}, segment version {segment_version}{}",
        c.disk.version,
        if (vista::OLDEST_FORMAT_VERSION..vista::FORMAT_VERSION).contains(&segment_version) {
            format!(" (an open upgrades it to {})", vista::FORMAT_VERSION)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        t,
        "file          {}{}",
        human(c.file_len),
        if c.file_len == c.expected_len {
            String::new()
        } else {
            format!(
                "; WRONG LENGTH: its header implies {} bytes",
                c.expected_len
            )
        }
    );
    let _ = writeln!(t, "cache data    {}", human(c.data_len));
    if let Some(g) = c.grow {
        let _ = writeln!(t, "grow          {}", grow_text(g));
    }
    match &view {
        Ok(v) => {
            let _ = writeln!(t, "read from     {}", source_name(v.source));
            match &v.header {
                Ok(s) => {
                    let _ = writeln!(t, "user space    {}", human(s.user_len));
                    let _ = writeln!(
                        t,
                        "undo lanes    {} x {} of records",
                        s.lanes,
                        human(s.undo_log_capacity)
                    );
                    for l in &v.lanes {
                        let _ = writeln!(
                            t,
                            "  lane {:<4}   {}",
                            l.index,
                            lane_text(&l.state, l.used, s.undo_log_capacity, c.locked_by.is_some())
                        );
                    }
                }
                Err(f) => {
                    let _ = writeln!(t, "segment hdr   UNUSABLE: {f}");
                }
            }
        }
        Err(e) => {
            let _ = writeln!(
                t,
                "segment       UNREADABLE from {}: {e}",
                source_name(source)
            );
        }
    }
    let _ = writeln!(t, "memory image  {}", c.image_path.display());
    let _ = writeln!(t, "              {}", image_text(&c.image));
    if let Some(s) = c.image_synced {
        let _ = writeln!(t, "              last installed or loaded checkpoint {s}");
    }
    let _ = writeln!(
        t,
        "checkpoint    {} on disk, in slot {}; file last written {} (the format records no checkpoint time: this is the file's mtime, and only opens and checkpoints write the file)",
        c.disk.seq,
        c.disk.slot,
        c.modified.map_or_else(|| "at an unknown time".into(), utc)
    );
    let _ = writeln!(
        t,
        "other slot    {}",
        c.disk.other_slot_may_differ.map_or_else(
            || "may differ anywhere: the first checkpoint after a cold start rewrites it whole"
                .into(),
            |b| format!(
                "may differ on {}: the first checkpoint after a cold start copies at most that much",
                human(b)
            )
        )
    );
    let _ = writeln!(
        t,
        "journal       {}",
        journal_text(&c.journal, journal_len(c))
    );
    let _ = writeln!(t, "in use        {}", lock_text(c));
    let _ = writeln!(
        t,
        "protection    protection keys {} on this machine; Auto picks {auto}",
        if pkeys { "available" } else { "NOT available" }
    );
    let json = json!({
        "path": c.path,
        "rio_cache_version": c.disk.version,
        "segment_version": segment_version,
        "file_len": c.file_len,
        "expected_len": c.expected_len,
        "data_len": c.data_len,
        "grow": c.grow.map(grow_json),
        "segment": match &view { Ok(v) => view_json(v), Err(e) => json!({"error": e.to_string()}) },
        "image": {"path": c.image_path, "len": c.image_len, "synced": c.image_synced, "verdict": image_json(&c.image)},
        "checkpoint": {"seq": c.disk.seq, "slot": c.disk.slot, "writer": c.disk.writer, "other_slot_may_differ": c.disk.other_slot_may_differ, "file_modified": c.modified.and_then(epoch_secs), "time_recorded": false},
        "journal": {"path": c.journal_path, "len": journal_len(c), "verdict": journal_json(&c.journal)},
        "locked_by": c.locked_by,
        "protection": {"pkeys": pkeys, "auto": auto},
    });
    let damaged = damage(c, &view);
    if damaged {
        let _ = writeln!(
            t,
            "DAMAGED: the next open refuses this segment as it is (see above; `vista check` lists every problem)"
        );
    }
    let mut json = json;
    json["damaged"] = json!(damaged);
    Ok(Outcome {
        text: t,
        json,
        code: if damaged { exit::PROBLEMS } else { exit::OK },
    })
}

/// Whether `info` reported something the next open would refuse: a file of the wrong
/// length, a damaged journal or memory image, an unusable segment header, a damaged
/// undo lane.
fn damage(c: &CacheInfo, view: &vista::Result<View>) -> bool {
    let segment = match view {
        Ok(v) => match &v.header {
            Ok(_) => v
                .lanes
                .iter()
                .any(|l| matches!(l.state, LaneState::Damaged(_))),
            Err(_) => true,
        },
        Err(_) => true,
    };
    segment
        || c.file_len != c.expected_len
        || matches!(c.journal, JournalState::Corrupt(_))
        || matches!(c.image, ImageState::Damaged(_) | ImageState::Live(_))
}

/// One line of a check report.
struct Item {
    name: String,
    ok: bool,
    detail: String,
}

struct Report {
    items: Vec<Item>,
}

impl Report {
    fn push(&mut self, name: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.items.push(Item {
            name: name.into(),
            ok,
            detail: detail.into(),
        });
    }

    fn problems(&self) -> usize {
        self.items.iter().filter(|i| !i.ok).count()
    }
}

/// Checks one view (the memory image's or the disk's): segment header, undo lanes.
fn check_view(r: &mut Report, info: &SegmentInfo, source: Source) {
    let where_ = source_name(source);
    let v = match info.view(source) {
        Ok(v) => v,
        Err(e) => {
            r.push(
                format!("segment ({where_})"),
                false,
                format!("unreadable: {e}"),
            );
            return;
        }
    };
    let shape = match &v.header {
        Ok(s) => {
            r.push(
                format!("segment header ({where_})"),
                true,
                format!(
                    "version {}, {} of user space, {} lanes",
                    s.version,
                    human(s.user_len),
                    s.lanes
                ),
            );
            s
        }
        // A zero header is a creation interrupted before anything was written: the
        // next open initializes it. It is reported, not failed, only where that holds.
        Err(HeaderFault::Uninitialized) => {
            r.push(
                format!("segment header ({where_})"),
                false,
                "the header is zero: creation was interrupted (an open initializes it only if nothing else was written)",
            );
            return;
        }
        Err(f) => {
            let image_ok = source == Source::Disk
                && info.cache.image == ImageState::Warm
                && info.view(Source::Image).is_ok_and(|v| v.header.is_ok());
            let note = if image_ok {
                "; the memory image's copy is intact and is the one opens use, so the segment \
                 opens, but a power loss (or losing the image) would leave only this damaged \
                 copy: restore the segment file from a copy while the image lasts"
            } else {
                ""
            };
            r.push(
                format!("segment header ({where_})"),
                false,
                format!("{f}{note}"),
            );
            return;
        }
    };
    let in_use = info.cache.locked_by.is_some();
    let mut unfinished = 0;
    for l in &v.lanes {
        match &l.state {
            LaneState::Damaged(why) => {
                let why = if in_use {
                    // Read without the lock while a transaction may be writing it.
                    format!(
                        "{why} (the segment is open: the lane may have changed while it \
                         was read; check again once it is closed)"
                    )
                } else {
                    why.clone()
                };
                r.push(format!("undo lane {} ({where_})", l.index), false, why);
            }
            LaneState::Unfinished { .. } | LaneState::CrossSegment { .. } => {
                unfinished += 1;
                // A part whose coordinator cannot be read stops the next open.
                let fine = !matches!(
                    &l.state,
                    LaneState::CrossSegment {
                        decided: Err(_),
                        ..
                    }
                );
                r.push(
                    format!("undo lane {} ({where_})", l.index),
                    fine,
                    lane_text(&l.state, l.used, shape.undo_log_capacity, in_use),
                );
            }
            _ => {}
        }
    }
    let damaged = v
        .lanes
        .iter()
        .filter(|l| matches!(l.state, LaneState::Damaged(_)))
        .count();
    if damaged == 0 {
        r.push(
            format!("undo lanes ({where_})"),
            true,
            format!(
                "{} lane(s) valid, {unfinished} holding a transaction",
                v.lanes.len()
            ),
        );
    }
    // The rest of the segment header's page is reserved: written zero, never read.
    if let Ok(rest) = info.cache.read(source, 64, HEADER_PAGE - 64) {
        reserved(
            r,
            &format!("segment header page ({where_})"),
            &rest,
            64,
            "the segment header",
        );
    }
    if damaged == 0 {
        check_heap(r, info, &v);
    }
}

/// Bytes of the page a header starts (the rest of it is reserved).
const HEADER_PAGE: u64 = 4096;

/// Reports non-zero bytes in `rest`, the reserved bytes after a header (at offset
/// `first` of its page): they are written as zero and never read, so damage there
/// changes nothing an open sees, but it is damage to the file all the same.
fn reserved(r: &mut Report, name: &str, rest: &[u8], first: u64, header: &str) {
    let bad: Vec<u64> = rest
        .iter()
        .enumerate()
        .filter(|(_, &b)| b != 0)
        .map(|(i, _)| first + i as u64)
        .collect();
    if let (Some(lo), Some(hi)) = (bad.first(), bad.last()) {
        r.push(
            name,
            false,
            format!(
                "{} reserved byte(s) after {header} are not zero (bytes {lo}..={hi} of the \
                 page); nothing reads them, so the data is unaffected, but something wrote \
                 where nothing should",
                bad.len()
            ),
        );
    }
}

/// The reserved bytes of the segment file's first page, after rio-cache's two slot
/// headers and its intent record (one sector each, at bytes 0, 512 and 1024; read from
/// the file directly: they are outside the cache's data). The headers' own reserved
/// bytes are under their checksums.
fn reserved_disk_page(r: &mut Report, path: &Path) {
    use std::os::unix::fs::FileExt;
    let mut page = vec![0u8; HEADER_PAGE as usize];
    let read = std::fs::File::open(path).and_then(|f| f.read_exact_at(&mut page, 0));
    if read.is_ok() {
        reserved(
            r,
            "disk header page",
            &page[1536..],
            1536,
            "the intent record",
        );
    }
}

/// Runs the heap check over one view's committed bytes.
fn check_heap(r: &mut Report, info: &SegmentInfo, v: &View) {
    let where_ = source_name(v.source);
    let name = format!("heap ({where_})");
    match info.heap(v) {
        Ok(None) => r.push(
            name,
            true,
            "no heap: user space does not start with a heap header (used through offsets only, or never allocated from)",
        ),
        Ok(Some(rep)) if rep.is_clean() => r.push(
            name,
            true,
            format!(
                "consistent: {} live block(s), {} live, {} free in {} run(s)",
                rep.stats.live_blocks,
                human(rep.stats.live_bytes),
                human(rep.stats.free_bytes),
                rep.stats.free_runs
            ),
        ),
        Ok(Some(rep)) => {
            for p in &rep.problems {
                r.push(name.clone(), false, p.to_string());
            }
        }
        Err(e) => r.push(name, false, format!("cannot be read: {e}")),
    }
}

/// `vista check`.
pub fn check(path: &Path, cache_dir: &Path) -> Result<Outcome, Failure> {
    let mut r = Report { items: Vec::new() };
    let info = match vista::inspect::inspect(path, cache_dir) {
        Ok(i) => Some(i),
        // The disk header is what identifies the file: a damaged or foreign one is the
        // check's finding. A file that cannot be read at all is not.
        Err(e @ (vista::Error::Corrupt { .. } | vista::Error::IncompatibleVersion { .. })) => {
            r.push("disk header", false, e.to_string());
            None
        }
        Err(e) => return Err(Failure::vista(path, cache_dir, &e)),
    };
    if let Some(info) = &info {
        let c = &info.cache;
        r.push(
            "disk header",
            true,
            format!(
                "rio-cache version {}, {} of data, checkpoint {} (in slot {})",
                c.disk.version,
                human(c.disk.data_len),
                c.disk.seq,
                c.disk.slot
            ),
        );
        r.push(
            "file length",
            c.file_len == c.expected_len,
            if c.file_len == c.expected_len {
                format!("{} bytes", c.file_len)
            } else {
                format!(
                    "{} bytes; the header implies {} (truncated or extended)",
                    c.file_len, c.expected_len
                )
            },
        );
        r.push(
            "journal",
            !matches!(c.journal, JournalState::Corrupt(_)),
            journal_text(&c.journal, journal_len(c)),
        );
        if c.disk.intent_damaged {
            r.push(
                "intent record",
                false,
                "bytes 1024..1536 of the file are neither zero nor an intact intent record: \
                 no data is affected, but the first checkpoint after a cold start rewrites \
                 the whole other slot until a checkpoint writes a new record",
            );
        }
        reserved_disk_page(&mut r, path);
        r.push(
            "memory image header",
            matches!(c.image, ImageState::Warm | ImageState::Cold(_)),
            format!("{}: {}", c.image_path.display(), image_text(&c.image)),
        );
        if c.locked_by.is_some() {
            r.push("in use", true, lock_text(c));
        }
        if c.file_len == c.expected_len {
            check_view(&mut r, info, Source::Disk);
        }
        if c.image == ImageState::Warm {
            check_view(&mut r, info, Source::Image);
        }
    }
    let problems = r.problems();
    let mut t = format!("check {}\n", path.display());
    for i in &r.items {
        let _ = writeln!(
            t,
            "  {:<4} {}: {}",
            if i.ok { "ok" } else { "FAIL" },
            i.name,
            i.detail
        );
    }
    let _ = writeln!(
        t,
        "{}",
        if problems == 0 {
            "no problems found".to_string()
        } else {
            format!("{problems} problem(s) found")
        }
    );
    let json = json!({
        "path": path,
        "ok": problems == 0,
        "problems": problems,
        "checks": r.items.iter().map(|i| json!({"check": i.name, "ok": i.ok, "detail": i.detail})).collect::<Vec<_>>(),
    });
    Ok(Outcome {
        text: t,
        json,
        code: if problems == 0 {
            exit::OK
        } else {
            exit::PROBLEMS
        },
    })
}

/// `vista dump`: committed user data, from the live state (the memory image if it is
/// warm, else the disk) or, with `disk`, from the last checkpoint.
pub fn dump(
    path: &Path,
    cache_dir: &Path,
    offset: u64,
    len: u64,
    disk: bool,
) -> Result<Outcome, Failure> {
    let info = inspect_or_fail(path, cache_dir)?;
    let c = &info.cache;
    let source = chosen_source(&info, disk, path, "dump")?;
    if c.file_len != c.expected_len && source == Source::Disk {
        return Err(Failure::new(
            exit::FILE,
            path,
            format!(
                "is {} bytes but its header implies {} (truncated or extended)",
                c.file_len, c.expected_len
            ),
        ));
    }
    let view = info
        .view(source)
        .map_err(|e| Failure::vista(path, cache_dir, &e))?;
    let bytes = info
        .read_committed(&view, offset, len)
        .map_err(|e| Failure::vista(path, cache_dir, &e))?;
    let mut t = format!(
        "# {} bytes of committed user data at offset {offset}, from the {}\n",
        bytes.len(),
        match source {
            Source::Image => "memory image (the live state)",
            Source::Disk => "disk (the last checkpoint)",
        }
    );
    hexdump(&mut t, offset, &bytes);
    let hex: String = bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    Ok(Outcome {
        text: t,
        json: json!({"path": path, "offset": offset, "len": bytes.len(), "source": source_name(source), "hex": hex}),
        code: exit::OK,
    })
}

/// The source a reading command shows: the disk with `disk`, else the live state (the
/// memory image if warm, else the disk). A damaged or live image is refused: it may
/// hold newer committed data than the disk, so the disk would not be the live state.
pub(crate) fn chosen_source(
    info: &SegmentInfo,
    disk: bool,
    path: &Path,
    command: &str,
) -> Result<Source, Failure> {
    let c = &info.cache;
    if disk {
        return Ok(Source::Disk);
    }
    match &c.image {
        ImageState::Damaged(why) | ImageState::Live(why) => Err(Failure::new(
            exit::FILE,
            path,
            format!(
                "memory image {} of {} cannot be read ({why}) and may hold newer committed data; `vista {command} --disk` shows the last checkpoint",
                c.image_path.display(),
                path.display(),
            ),
        )),
        _ => Ok(info.current_source()),
    }
}

/// `hexdump -C` style: offset, 16 bytes in hex, the printable ASCII.
fn hexdump(out: &mut String, base: u64, bytes: &[u8]) {
    for (i, row) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", base + 16 * i as u64);
        for j in 0..16 {
            match row.get(j) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
            if j == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        out.extend(row.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hexdump_shows_offsets_hex_and_ascii() {
        let mut s = String::new();
        super::hexdump(&mut s, 32, b"hello\0world, 0123456789");
        assert_eq!(
            s,
            "00000020  68 65 6c 6c 6f 00 77 6f  72 6c 64 2c 20 30 31 32  |hello.world, 012|\n\
             00000030  33 34 35 36 37 38 39                              |3456789|\n"
        );
    }
}
