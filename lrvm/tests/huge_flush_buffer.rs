//! `Tunables::validate` bounds the flush and recovery buffer sizes from
//! below only; `Rvm::initialize` then allocates the flush buffer up front
//! (`Vec::with_capacity(flush_buffer_size)`), so a large value panics (capacity
//! overflow) or aborts the process (allocation failure) instead of returning
//! `InvalidOption`.

use lrvm::{create_log, CreateMode, Error, Options, Rvm, MIN_LOG_LEN};

#[test]
fn a_huge_flush_buffer_size_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    create_log(&log, MIN_LOG_LEN, CreateMode::CreateNew).unwrap();
    let opened = std::panic::catch_unwind(|| {
        Rvm::initialize(Options::new(&log).flush_buffer_size(usize::MAX)).map(drop)
    });
    assert!(
        opened.is_ok(),
        "Rvm::initialize panicked on flush_buffer_size(usize::MAX)"
    );
    if let Ok(Err(e)) = opened {
        assert!(
            matches!(e, Error::InvalidOption(_)),
            "unexpected error: {e}"
        );
    }
}
