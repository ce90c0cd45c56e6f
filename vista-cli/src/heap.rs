//! `vista heap`: the heap's statistics and problems, from the segment's files
//! (read-only, through [`vista::inspect::SegmentInfo::heap`]).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::inspect::{chosen_source, inspect_or_fail, source_name};
use crate::units::human;
use crate::{exit, Failure, Outcome};

/// `vista heap`.
pub fn heap(path: &Path, cache_dir: &Path, disk: bool) -> Result<Outcome, Failure> {
    let info = inspect_or_fail(path, cache_dir)?;
    let source = chosen_source(&info, disk, path, "heap")?;
    let c = &info.cache;
    if source == vista::inspect::Source::Disk && c.file_len != c.expected_len {
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
    let report = info
        .heap(&view)
        .map_err(|e| Failure::vista(path, cache_dir, &e))?
        .ok_or_else(|| {
            Failure::new(
                exit::FILE,
                path,
                "has no heap: its user space does not start with a heap header (a segment used through offsets only, or one nothing was ever allocated in)",
            )
        })?;
    let st = &report.stats;
    let mut t = format!(
        "heap of {}, from the {}\n",
        path.display(),
        match source {
            vista::inspect::Source::Image => "memory image (the live state)",
            vista::inspect::Source::Disk => "disk (the last checkpoint)",
        }
    );
    let _ = writeln!(
        t,
        "live          {} block(s), {}",
        st.live_blocks,
        human(st.live_bytes)
    );
    let _ = writeln!(
        t,
        "pages in use  {} (slabs and large blocks; {:.2}x the live bytes)",
        human(st.used_bytes),
        st.overhead()
    );
    let _ = writeln!(
        t,
        "free          {}: {} free run(s) of whole pages (the largest {} page(s)), and free blocks in partly used slabs",
        human(st.free_bytes),
        st.free_runs,
        st.largest_free_run
    );
    let _ = writeln!(
        t,
        "fragmentation {:.1}% (1 - largest free run / all free runs)",
        st.fragmentation() * 100.0
    );
    let _ = writeln!(
        t,
        "formatted     {}; {} more the heap can still format",
        human(st.formatted_bytes),
        human(st.unformatted_bytes)
    );
    let _ = writeln!(
        t,
        "size classes  block size, slabs, live blocks, free blocks"
    );
    for cl in st.classes.iter().filter(|cl| cl.slabs > 0) {
        let _ = writeln!(
            t,
            "  {:>6} B    {:>6} slab(s) {:>9} live {:>9} free  ({} bytes live)",
            cl.block_size,
            cl.slabs,
            cl.live,
            cl.free,
            cl.live * cl.block_size
        );
    }
    let large = st.live_blocks - st.classes.iter().map(|cl| cl.live).sum::<u64>();
    let _ = writeln!(t, "  large      {large:>6} block(s) of whole pages");
    if report.is_clean() {
        let _ = writeln!(t, "no problems found");
    } else {
        for p in &report.problems {
            let _ = writeln!(t, "  FAIL {p}");
        }
        let _ = writeln!(t, "{} problem(s) found", report.problems.len());
    }
    let classes: Vec<_> = st
        .classes
        .iter()
        .map(|cl| {
            json!({"block_size": cl.block_size, "slabs": cl.slabs, "live": cl.live, "free": cl.free})
        })
        .collect();
    let json = json!({
        "path": path,
        "source": source_name(source),
        "live_blocks": st.live_blocks,
        "live_bytes": st.live_bytes,
        "large_blocks": large,
        "used_bytes": st.used_bytes,
        "free_bytes": st.free_bytes,
        "free_runs": st.free_runs,
        "largest_free_run_pages": st.largest_free_run,
        "fragmentation": st.fragmentation(),
        "overhead": st.overhead(),
        "formatted_bytes": st.formatted_bytes,
        "unformatted_bytes": st.unformatted_bytes,
        "classes": classes,
        "problems": report.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "ok": report.is_clean(),
    });
    Ok(Outcome {
        text: t,
        json,
        code: if report.is_clean() {
            exit::OK
        } else {
            exit::PROBLEMS
        },
    })
}
