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
mod armed {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Mutex, Once};

    static ENV_READ: Once = Once::new();
    static ARMED: AtomicBool = AtomicBool::new(false);
    static HITS: AtomicU64 = AtomicU64::new(0);
    static TARGET: Mutex<Option<(String, u64)>> = Mutex::new(None);

    pub(crate) fn arm(target: Option<(String, u64)>) {
        // Mark the environment as read so it cannot override an explicit choice.
        ENV_READ.call_once(|| {});
        let mut t = TARGET.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        HITS.store(0, Ordering::SeqCst);
        ARMED.store(target.is_some(), Ordering::SeqCst);
        *t = target;
    }

    fn read_env() {
        ENV_READ.call_once(|| {
            if let Ok(spec) = std::env::var(super::ENV_VAR) {
                if let Some((name, n)) = super::parse_spec(&spec) {
                    let mut t = TARGET.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    *t = Some((name.to_owned(), n));
                    ARMED.store(true, Ordering::SeqCst);
                }
            }
        });
    }

    pub(crate) fn hit(name: &'static str) {
        read_env();
        if !ARMED.load(Ordering::Relaxed) {
            return;
        }
        let t = TARGET.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((target, nth)) = t.as_ref() {
            if target == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
                kill_self();
            }
        }
    }

    #[allow(unsafe_code)]
    fn kill_self() -> ! {
        // SAFETY: getpid and kill have no memory-safety preconditions; SIGKILL cannot
        // be caught, so the call does not return.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        // kill(getpid(), SIGKILL) delivers before returning; abort is a backstop.
        std::process::abort()
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
