//! Named crash points for crash testing.
//!
//! A crash point marks a step that recovery depends on ("after the undo record is
//! published", "after the journal is fsynced"). In a normal build the
//! [`crash_point!`] macro compiles to nothing. With the `enabled` feature, a process
//! can be told to kill itself with a real `SIGKILL` on the N-th time it passes a
//! named point, either through the environment,
//!
//! ```text
//! CRASH_POINT=vista.commit.before_store:3 ./my-test-binary
//! ```
//!
//! or programmatically with [`arm`] (useful right after `fork`). crash-sim enumerates
//! every point an engine declares and every hit count until the operation completes
//! without being killed, which is SQLite's method of crash testing.
//!
//! `SIGKILL` cannot be caught, so nothing the process would have done next (flush a
//! buffer, run a destructor, finish a store sequence) happens: the state left behind
//! is exactly what a crash at that instant leaves.
//!
//! Dependencies: `libc` (only with `enabled`) to send the signal.
#![deny(unsafe_code)]

/// Marks a named crash point. Expands to a call that is empty unless the
/// `crash-point/enabled` feature is on.
///
/// ```
/// crash_point::crash_point!("example.after_step_one");
/// ```
#[macro_export]
macro_rules! crash_point {
    ($name:expr) => {
        $crate::hit($name)
    };
}

/// The environment variable read on the first hit: `NAME:N` kills the process at the
/// N-th hit of `NAME` (N starts at 1).
pub const ENV_VAR: &str = "CRASH_POINT";

/// Whether crash points are compiled in.
pub const fn enabled() -> bool {
    cfg!(feature = "enabled")
}

/// Records one pass through the point `name`; kills the process if this is the armed
/// point and hit. Prefer the [`crash_point!`] macro.
// Inlined so that, without the feature, a crash point costs nothing at all.
#[allow(clippy::inline_always)]
#[inline(always)]
pub fn hit(name: &'static str) {
    #[cfg(feature = "enabled")]
    armed::hit(name);
    #[cfg(not(feature = "enabled"))]
    let _ = name;
}

/// Arms the point `name` to kill the process on its `nth` hit (1-based), replacing any
/// earlier target and resetting the hit counter. Does nothing without the feature.
pub fn arm(name: &str, nth: u64) {
    #[cfg(feature = "enabled")]
    armed::arm(Some((name.to_owned(), nth)));
    #[cfg(not(feature = "enabled"))]
    let _ = (name, nth);
}

/// Disarms crash points (the environment variable is not read again).
pub fn disarm() {
    #[cfg(feature = "enabled")]
    armed::arm(None);
}

/// Parses `NAME:N` into its parts. Returns `None` for anything else.
pub fn parse_spec(spec: &str) -> Option<(&str, u64)> {
    let (name, n) = spec.rsplit_once(':')?;
    let n: u64 = n.parse().ok()?;
    (!name.is_empty() && n > 0).then_some((name, n))
}

#[cfg(feature = "enabled")]
mod sys;

#[cfg(feature = "enabled")]
mod armed {
    use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
    use std::sync::Mutex;

    /// 0: the environment has not been read; 1: disarmed; 2: armed.
    static STATE: AtomicU8 = AtomicU8::new(0);
    static HITS: AtomicU64 = AtomicU64::new(0);
    static TARGET: Mutex<Option<(String, u64)>> = Mutex::new(None);

    fn target() -> std::sync::MutexGuard<'static, Option<(String, u64)>> {
        TARGET
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn arm(new: Option<(String, u64)>) {
        let mut t = target();
        HITS.store(0, Ordering::SeqCst);
        STATE.store(if new.is_some() { 2 } else { 1 }, Ordering::SeqCst);
        *t = new;
    }

    #[cold]
    fn read_env() {
        let mut t = target();
        if STATE.load(Ordering::SeqCst) != 0 {
            return; // armed or disarmed explicitly meanwhile
        }
        let spec = std::env::var(super::ENV_VAR).ok();
        *t = spec
            .as_deref()
            .and_then(super::parse_spec)
            .map(|(name, n)| (name.to_owned(), n));
        STATE.store(if t.is_some() { 2 } else { 1 }, Ordering::SeqCst);
    }

    /// One relaxed load when disarmed: cheap enough for a transaction's hot path.
    #[inline]
    pub(crate) fn hit(name: &'static str) {
        match STATE.load(Ordering::Relaxed) {
            1 => {}
            0 => {
                read_env();
                hit(name);
            }
            _ => armed_hit(name),
        }
    }

    #[cold]
    fn armed_hit(name: &'static str) {
        let t = target();
        if let Some((target, nth)) = t.as_ref() {
            if target == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
                kill_self();
            }
        }
    }

    fn kill_self() -> ! {
        crate::sys::kill_self()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!(parse_spec("a.b:3"), Some(("a.b", 3)));
        assert_eq!(parse_spec("a:b:2"), Some(("a:b", 2)));
        assert_eq!(parse_spec("a.b:0"), None);
        assert_eq!(parse_spec(":1"), None);
        assert_eq!(parse_spec("nocount"), None);
    }

    #[test]
    fn unarmed_points_do_nothing() {
        crash_point!("test.never_armed");
        hit("test.never_armed");
    }
}
