//! Format versions: a segment of format version 1 (every undo record checksummed with
//! XXH3) opens, recovers its unfinished transaction by that rule, and is upgraded to the
//! current version, whose long before-images are checksummed with CRC-32.

mod common;

use std::time::Duration;

use common::{guards, header_copies, set_format_version, write_in_place, Place};
use vista::Segment;

const SIZE: u64 = 64 << 10;

fn version_at(file: &[u8], header: usize) -> u32 {
    u32::from_le_bytes(file[header + 8..header + 12].try_into().unwrap())
}

/// The version-1 record checksum: the low half of XXH3-64 of bytes `8..24+len`.
fn v1_checksum(checked: &[u8]) -> u32 {
    xxhash_rust::xxh3::xxh3_64(checked) as u32
}

#[test]
fn a_version_1_segment_recovers_by_its_rule_and_is_upgraded() {
    for g in guards() {
        let p = Place::new();
        let opts = p
            .opts(SIZE)
            .protection(g)
            .checkpoint_wait(Duration::from_millis(200));
        let seg = Segment::open(&p.path, &opts).unwrap();
        seg.transaction(|tx| tx.write(100, &[1u8; 1000])).unwrap();
        seg.close().unwrap();
        p.lose_power(); // the next open reads the disk file
        let info = vista::inspect::inspect(&p.path, &p.cache_dir()).unwrap();
        let shape = info.view(info.current_source()).unwrap().header.unwrap();
        assert_eq!(shape.version, vista::FORMAT_VERSION);

        // Make every copy a version-1 segment with an unfinished transaction: lane 0
        // holds one published record (a 1000-byte before-image, checksummed by the
        // version-1 rule) and user space holds the change it undoes.
        let mut b = std::fs::read(&p.path).unwrap();
        let copies = set_format_version(&mut b, 1);
        assert!(!copies.is_empty());
        for &h in &copies {
            let lane = h + 4096; // lane 0 (lanes_off)
            let rec = lane + 64; // after the lane header
            b[rec..rec + 4].copy_from_slice(b"UNDO");
            b[rec + 8..rec + 16].copy_from_slice(&100u64.to_le_bytes());
            b[rec + 16..rec + 24].copy_from_slice(&1000u64.to_le_bytes());
            b[rec + 24..rec + 1024].copy_from_slice(&[1u8; 1000]);
            let sum = v1_checksum(&b[rec + 8..rec + 1024]);
            b[rec + 4..rec + 8].copy_from_slice(&sum.to_le_bytes());
            b[lane..lane + 8].copy_from_slice(&1024u64.to_le_bytes()); // published
            let data = h + shape.user_off as usize + 100;
            b[data..data + 1000].copy_from_slice(&[9u8; 1000]);
        }
        write_in_place(&p.path, &b);
        let info = vista::inspect::inspect(&p.path, &p.cache_dir()).unwrap();
        let old = info.view(info.current_source()).unwrap();
        assert_eq!(old.header.as_ref().unwrap().version, 1, "{g:?}");
        assert!(
            matches!(
                old.lanes[0].state,
                vista::inspect::LaneState::Unfinished { records: 1 }
            ),
            "{g:?}: {:?}",
            old.lanes[0].state
        );

        // It opens: the record is checked by its version's rule and undone.
        let seg = Segment::open(&p.path, &opts).unwrap();
        assert_eq!(seg.recovery().lanes_rolled_back, 1, "{g:?}");
        assert_eq!(seg.read(100, 1000).unwrap(), &[1u8; 1000][..], "{g:?}");

        // Upgraded: a long before-image is now checksummed by the new rule, and an
        // unfinished transaction of the new version is recovered by it.
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut leaked = seg.begin().unwrap();
                leaked.write(2000, &[7u8; 3000]).unwrap();
                std::mem::forget(leaked);
            });
        });
        assert!(
            seg.close().is_err(),
            "{g:?}: the leaked transaction holds the gate"
        );
        let seg = Segment::open(&p.path, &opts).unwrap();
        assert_eq!(seg.recovery().lanes_rolled_back, 1, "{g:?}");
        assert_eq!(seg.read(2000, 3000).unwrap(), &[0u8; 3000][..], "{g:?}");
        assert_eq!(seg.read(100, 1000).unwrap(), &[1u8; 1000][..], "{g:?}");
        seg.close().unwrap();

        // The disk image says version 2 now, in the copy its checkpoint wrote.
        let b = std::fs::read(&p.path).unwrap();
        let versions: Vec<u32> = header_copies(&b)
            .into_iter()
            .map(|h| version_at(&b, h))
            .collect();
        assert!(
            versions.contains(&vista::FORMAT_VERSION),
            "{g:?}: {versions:?}"
        );
        p.lose_power();
        let info = vista::inspect::inspect(&p.path, &p.cache_dir()).unwrap();
        let now = info.view(info.current_source()).unwrap();
        assert_eq!(now.header.unwrap().version, vista::FORMAT_VERSION, "{g:?}");
        let seg = Segment::open(&p.path, &opts).unwrap();
        assert_eq!(seg.read(100, 1000).unwrap(), &[1u8; 1000][..], "{g:?}");
    }
}

#[test]
fn a_version_1_segment_with_a_damaged_long_record_is_refused_and_left_alone() {
    let p = Place::new();
    let opts = p.opts(SIZE);
    let seg = Segment::open(&p.path, &opts).unwrap();
    seg.close().unwrap();
    p.lose_power();
    let mut b = std::fs::read(&p.path).unwrap();
    for h in set_format_version(&mut b, 1) {
        let lane = h + 4096;
        let rec = lane + 64;
        b[rec..rec + 4].copy_from_slice(b"UNDO");
        b[rec + 8..rec + 16].copy_from_slice(&100u64.to_le_bytes());
        b[rec + 16..rec + 24].copy_from_slice(&1000u64.to_le_bytes());
        b[rec + 24..rec + 1024].copy_from_slice(&[1u8; 1000]);
        // Checksummed by the version-2 rule (CRC-32): wrong for a version-1 segment.
        let sum = crc32fast::hash(&b[rec + 8..rec + 1024]);
        b[rec + 4..rec + 8].copy_from_slice(&sum.to_le_bytes());
        b[lane..lane + 8].copy_from_slice(&1024u64.to_le_bytes());
    }
    write_in_place(&p.path, &b);
    std::fs::create_dir_all(p.cache_dir()).unwrap();
    let before = common::tree(p.dir.path());
    let err = Segment::open(&p.path, &opts).unwrap_err();
    assert!(
        matches!(&err, vista::Error::Corrupt { reason, .. } if reason.contains("checksum")),
        "{err}"
    );
    common::assert_same_tree(&before, &common::tree(p.dir.path()), "a refused open");
}

/// The child of `an_upgrade_killed_between_its_two_stores_loses_nothing`: opens the
/// segment in the directory it is given, to be killed at the armed crash point.
const CHILD: &str = "VISTA_FORMAT_UPGRADE_CHILD";

#[test]
fn upgrade_child() {
    let Ok(dir) = std::env::var(CHILD) else {
        return; // not a child run
    };
    let dir = std::path::PathBuf::from(dir);
    let opts = vista::Options::new()
        .size(SIZE)
        .undo_log_size(16 << 10)
        .protection(common::protection())
        .writeback(vista::Writeback::Manual)
        .cache_dir(dir.join("shm"));
    let _ = Segment::open(dir.join("seg.vista"), &opts);
    unreachable!("the crash point kills the open before it returns");
}

/// A SIGKILL between the upgrade's two stores (the checksum of version 2 stored, the
/// version still 1) leaves a memory image that the next open reads as version 1 and
/// upgrades again: a commit only that image holds is kept. (A copy of the header's 64
/// bytes, as first built, could leave a torn checksum that every open refuses, and the
/// image's commits would then be reached only by discarding it.)
#[test]
fn an_upgrade_killed_between_its_two_stores_loses_nothing() {
    use std::os::unix::process::ExitStatusExt;
    let p = Place::new();
    let opts = p.opts(SIZE).checkpoint_wait(Duration::from_millis(200));
    let seg = Segment::open(&p.path, &opts).unwrap();
    seg.close().unwrap();
    // A commit that only the memory image holds: the close cannot checkpoint.
    let seg = Segment::open(&p.path, &opts).unwrap();
    seg.transaction(|tx| tx.write(0, &[7u8; 8])).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| std::mem::forget(seg.begin().unwrap()));
    });
    assert!(seg.close().is_err());
    // As a version-1 build would have left both the disk file and the memory image.
    for file in [p.path.clone(), p.image()] {
        let mut b = std::fs::read(&file).unwrap();
        assert!(!set_format_version(&mut b, 1).is_empty());
        write_in_place(&file, &b);
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "upgrade_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, p.dir.path())
        .env(crash_point::ENV_VAR, "vista.upgrade.checksum_stored:1")
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "killed at the crash point: {status:?}"
    );
    // The image now says version 1 with the checksum of version 2.
    let m = std::fs::read(p.image()).unwrap();
    let h = header_copies(&m)[0];
    assert_eq!(version_at(&m, h), 1);
    let info = vista::inspect::inspect(&p.path, &p.cache_dir()).unwrap();
    let view = info.view(info.current_source()).unwrap();
    assert_eq!(view.header.unwrap().version, 1, "read as version 1");
    let seg = Segment::open(&p.path, &opts).unwrap();
    assert_eq!(seg.read(0, 8).unwrap(), &[7u8; 8][..], "the image's commit");
    // The child's recovery rolled the leaked transaction back before it was killed.
    assert_eq!(seg.recovery().lanes_rolled_back, 0);
    seg.close().unwrap();
    p.lose_power();
    let seg = Segment::open(&p.path, &opts).unwrap();
    assert_eq!(seg.read(0, 8).unwrap(), &[7u8; 8][..]);
    let info = vista::inspect::inspect(&p.path, &p.cache_dir()).unwrap();
    let view = info.view(info.current_source()).unwrap();
    assert_eq!(view.header.unwrap().version, vista::FORMAT_VERSION);
}
