//! The worker's address space, from `/proc/self/maps`: where the wild mode's second
//! fault model ("a stray store anywhere the process has mapped") aims, and which part
//! of the engine, if any, a store at an address hits.

use std::ops::Range;

use anyhow::{Context, Result};

/// One line of `/proc/self/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Area {
    /// The addresses.
    pub range: Range<usize>,
    /// Mapped writable (`w` in the permissions).
    pub writable: bool,
    /// The offset into the mapped file.
    pub offset: u64,
    /// The file or pseudo-name (`[heap]`, `[stack]`, ...); empty for anonymous memory.
    pub name: String,
}

/// Parses the text of a `maps` file.
///
/// # Errors
/// A line that does not have the kernel's format.
pub fn parse(text: &str) -> Result<Vec<Area>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| parse_line(line).with_context(|| format!("maps line {line:?}")))
        .collect()
}

fn parse_line(line: &str) -> Result<Area> {
    let mut f = line.splitn(6, ' ');
    let mut next = || f.next().context("too few fields");
    let (range, perms, offset) = (next()?, next()?, next()?);
    let (_dev, _inode) = (next()?, next()?);
    let name = f.next().unwrap_or("").trim().to_owned();
    let (lo, hi) = range.split_once('-').context("no range")?;
    let lo = usize::from_str_radix(lo, 16)?;
    let hi = usize::from_str_radix(hi, 16)?;
    anyhow::ensure!(lo < hi, "empty range");
    Ok(Area {
        range: lo..hi,
        writable: perms.as_bytes().get(1) == Some(&b'w'),
        offset: u64::from_str_radix(offset, 16)?,
        name,
    })
}

/// The areas a stray store is aimed at in the "anywhere" model: everything mapped
/// except the kernel's own pages (`[vvar]`, `[vvar_vclock]`, `[vdso]`, `[vsyscall]`:
/// not the program's memory) and the worker's stack (the harness's own frames: a store
/// there says nothing about the engine and mostly derails the worker's reporting).
pub fn targets(areas: &[Area]) -> Vec<Area> {
    areas
        .iter()
        .filter(|a| {
            !matches!(
                a.name.as_str(),
                "[vvar]" | "[vvar_vclock]" | "[vdso]" | "[vsyscall]" | "[stack]"
            )
        })
        .cloned()
        .collect()
}

/// The address `pick` selects among `areas`, every mapped byte equally likely.
pub fn pick(areas: &[Area], pick: u64) -> Option<usize> {
    let total: usize = areas.iter().map(|a| a.range.len()).sum();
    if total == 0 {
        return None;
    }
    let mut k = (pick % total as u64) as usize;
    for a in areas {
        if k < a.range.len() {
            return Some(a.range.start + k);
        }
        k -= a.range.len();
    }
    None
}

/// Which part of the engine an address is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// The engine's mapping as the program sees it (vista: the segment's public
    /// addresses; lrvm: its region).
    Segment,
    /// Another mapping of the same file at another place: rio-cache's write mapping
    /// (the alias, or the pkey-tagged mapping).
    WriteMapping,
    /// The same file at offset 0: rio-cache's metadata (image header, dirty maps).
    Metadata,
    /// Anything else: code, heap, libraries, other anonymous memory.
    Elsewhere,
}

impl Region {
    /// Its code on the worker's pipe.
    pub fn code(self) -> u64 {
        match self {
            Region::Segment => 0,
            Region::WriteMapping => 1,
            Region::Metadata => 2,
            Region::Elsewhere => 3,
        }
    }

    /// The region of a code.
    pub fn from_code(c: u64) -> Region {
        match c {
            0 => Region::Segment,
            1 => Region::WriteMapping,
            2 => Region::Metadata,
            _ => Region::Elsewhere,
        }
    }
}

/// The region of `addr`, given the engine's public mapping `segment`.
pub fn region(areas: &[Area], segment: &Range<usize>, addr: usize) -> Region {
    if segment.contains(&addr) {
        return Region::Segment;
    }
    let Some(file) = areas
        .iter()
        .find(|a| a.range.contains(&segment.start))
        .map(|a| a.name.as_str())
        .filter(|n| !n.is_empty() && !n.starts_with('['))
    else {
        return Region::Elsewhere;
    };
    match areas
        .iter()
        .find(|a| a.range.contains(&addr) && a.name == file)
    {
        Some(a) if a.offset == 0 => Region::Metadata,
        Some(_) => Region::WriteMapping,
        None => Region::Elsewhere,
    }
}

/// This process's areas.
///
/// # Errors
/// Reading or parsing `/proc/self/maps`.
pub fn current() -> Result<Vec<Area>> {
    parse(&std::fs::read_to_string("/proc/self/maps").context("read /proc/self/maps")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0000000-55d0c0002000 r-xp 00000000 08:01 42 /usr/bin/worker
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0 [heap]
10000000000-10000004000 rw-s 00002000 00:19 7 /dev/shm/rio-x.img
7f0000000000-7f0000002000 rw-s 00000000 00:19 7 /dev/shm/rio-x.img
7f0000002000-7f0000006000 r--s 00002000 00:19 7 /dev/shm/rio-x.img
7f0000010000-7f0000011000 rw-p 00000000 00:00 0
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
7ffc00100000-7ffc00102000 r-xp 00000000 00:00 0 [vdso]
";

    #[test]
    fn parses_classifies_and_picks() {
        let areas = parse(MAPS).unwrap();
        assert_eq!(areas.len(), 8);
        assert_eq!(areas[2].offset, 0x2000);
        assert!(areas[2].writable && !areas[4].writable);
        assert_eq!(areas[5].name, "");
        let t = targets(&areas);
        assert_eq!(t.len(), 6, "stack and vdso are not targets");
        let seg = 0x7f00_0000_2000..0x7f00_0000_6000;
        assert_eq!(region(&areas, &seg, 0x7f00_0000_3000), Region::Segment);
        assert_eq!(region(&areas, &seg, 0x100_0000_0010), Region::WriteMapping);
        assert_eq!(region(&areas, &seg, 0x7f00_0000_0008), Region::Metadata);
        assert_eq!(region(&areas, &seg, 0x55d0_c100_0010), Region::Elsewhere);
        // Every byte is reachable and nothing outside is picked.
        let total: usize = t.iter().map(|a| a.range.len()).sum();
        assert_eq!(pick(&t, 0), Some(0x55d0_c000_0000));
        assert_eq!(pick(&t, total as u64 - 1), Some(0x7f00_0001_0fff));
        assert_eq!(pick(&t, total as u64), Some(0x55d0_c000_0000));
        for k in [0u64, 1, 4096, 70_000, 150_000] {
            let a = pick(&t, k).unwrap();
            assert!(t.iter().any(|x| x.range.contains(&a)));
        }
        for r in [
            Region::Segment,
            Region::WriteMapping,
            Region::Metadata,
            Region::Elsewhere,
        ] {
            assert_eq!(Region::from_code(r.code()), r);
        }
    }
}
