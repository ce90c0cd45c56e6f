//! A forked child that opens the application's segment (recovering it), checks it
//! against a history, initialises it or runs the workload: what a child does (`Job`),
//! what it said (`Outcome`), and the verdict on it.

use std::fs::File;
use std::io::BufReader;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use vista::{Options, Segment, StartKind};

use crate::engines::vista::VistaEngine;
use crate::engines::{remove_if_exists, Engine, EngineConfig};
use crate::harness::ctx::Ctx;
use crate::sys::{self, Exit, Fork};

use super::application::App;
use super::channel::{send, Acks, Child, Msg, DONE, ERROR, READY, VERDICT, VIOLATION};
use super::history::History;

/// The segment, its files and the vista adapter that knows them.
pub(super) struct Harness<'a> {
    pub(super) app: &'a dyn App,
    pub(super) engine: VistaEngine,
    pub(super) seg: PathBuf,
    pub(super) opts: Options,
}

/// What a child does.
#[derive(Clone, Copy)]
pub(super) struct Job<'a> {
    /// Arm this crash point at this hit.
    pub(super) arm: Option<(&'a str, u64)>,
    /// Check the recovered segment against this history first.
    pub(super) check: Option<&'a History>,
    /// Initialise the new segment.
    pub(super) init: bool,
    /// Run the workload with this seed and budget.
    pub(super) run: Option<(u64, u64)>,
}

pub(super) const NOTHING: Job<'static> = Job {
    arm: None,
    check: None,
    init: false,
    run: None,
};

impl<'a> Harness<'a> {
    /// The segment in the subdirectory `name` of the work directory. Each starting state
    /// has its own: rio-cache ties a memory image to its disk file's inode, so the files
    /// of one state cannot be restored over those of another.
    pub(super) fn new(app: &'a dyn App, ctx: &Ctx, name: &str) -> Harness<'a> {
        let engine = VistaEngine::new(EngineConfig {
            dir: ctx.dir().join(name),
            state_len: 1,
            protection: vista::Protection::Auto,
            emulate_power_loss: true,
        });
        // The disk writes are recorded, so that a power cut can drop or tear the unsynced
        // ones (rio-cache's power model), as in the built-in power mode.
        let opts = app
            .options()
            .cache_dir(engine.cache_dir())
            .record_writes(engine.cache_dir());
        Harness {
            app,
            seg: engine.seg_path(),
            engine,
            opts,
        }
    }

    /// Deletes the segment and creates it afresh, initialised and durable.
    pub(super) fn reset(&self) -> Result<()> {
        std::fs::create_dir_all(self.engine.cache_dir())?;
        for f in self.engine.files() {
            remove_if_exists(&f)?;
        }
        let job = Job {
            init: true,
            ..NOTHING
        };
        let (exit, out) = self.run_to_end(&job)?;
        if exit != Exit::Code(0) || !out.ready {
            bail!(
                "initialising the segment failed ({exit}): {}",
                out.error.as_deref().unwrap_or("no message")
            );
        }
        Ok(())
    }

    pub(super) fn spawn(&self, job: &Job<'_>) -> Result<Child> {
        let (r, w) = sys::pipe().context("pipe")?;
        match sys::fork().context("fork")? {
            Fork::Child => {
                drop(r);
                self.child_main(job, w)
            }
            Fork::Parent(pid) => {
                drop(w);
                Ok(Child {
                    pid,
                    r: BufReader::new(r),
                    reaped: false,
                })
            }
        }
    }

    fn child_main(&self, job: &Job<'_>, mut w: File) -> ! {
        match job.arm {
            Some((point, n)) => crash_point::arm(point, n),
            None => crash_point::disarm(),
        }
        let body = catch_unwind(AssertUnwindSafe(|| self.child_body(job, &mut w)));
        let code = match body {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                let _ = send(&mut w, ERROR, format!("{e:#}").as_bytes());
                3
            }
            Err(panic) => {
                let msg = format!("panicked: {}", panic_text(&*panic));
                let _ = send(&mut w, ERROR, msg.as_bytes());
                101
            }
        };
        sys::exit_now(code)
    }

    fn child_body(&self, job: &Job<'_>, w: &mut File) -> Result<()> {
        let mut seg = Segment::open(&self.seg, &self.opts).context("open (recover)")?;
        if let Some(h) = job.check {
            let verdict = catch_unwind(AssertUnwindSafe(|| self.app.check(&seg, h)))
                .unwrap_or_else(|p| Err(format!("the oracle panicked: {}", panic_text(&*p))));
            match verdict {
                Ok(()) => send(w, VERDICT, &[])?,
                Err(msg) => {
                    send(w, VIOLATION, msg.as_bytes())?;
                    return Ok(());
                }
            }
        }
        if job.init {
            self.app.init(&mut seg).context("init")?;
            seg.checkpoint()?;
        }
        let cold = matches!(seg.start_kind(), StartKind::Cold(_));
        send(w, READY, &[u8::from(cold)])?;
        if let Some((seed, ops)) = job.run {
            let mut acks = Acks {
                w: &mut *w,
                seed,
                left: ops,
            };
            self.app.run(&mut seg, &mut acks).context("workload")?;
        }
        seg.close()?;
        send(w, DONE, &[])?;
        Ok(())
    }

    pub(super) fn run_to_end(&self, job: &Job<'_>) -> Result<(Exit, Outcome)> {
        let mut c = self.spawn(job)?;
        let mut out = Outcome::default();
        while let Some(m) = c.next(Duration::from_secs(60))? {
            out.absorb(m);
        }
        Ok((c.wait()?, out))
    }

    /// Recovers the segment and checks it against `history` in a child; records what is
    /// wrong. Returns whether it was consistent.
    pub(super) fn verify(
        &self,
        ctx: &mut Ctx,
        history: &History,
        at: &str,
        extra: &str,
    ) -> Result<bool> {
        let job = Job {
            check: Some(history),
            ..NOTHING
        };
        let (exit, out) = self.run_to_end(&job)?;
        Ok(judge(ctx, &out, exit, at, extra))
    }
}

/// Records the violation a child reported or died of, if any; returns whether it was
/// consistent and sound.
pub(super) fn judge(ctx: &mut Ctx, out: &Outcome, exit: Exit, at: &str, extra: &str) -> bool {
    let msg = if let Some(v) = &out.violation {
        v.clone()
    } else if let Some(e) = &out.error {
        format!("the application failed: {e}")
    } else if !matches!(exit, Exit::Signal(libc::SIGKILL) | Exit::Code(0)) {
        format!("the worker ended with {exit}")
    } else {
        return true;
    };
    ctx.violation(at.to_owned(), msg, extra);
    false
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// What a finished child said.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) ready: bool,
    pub(super) cold: bool,
    pub(super) done: bool,
    /// The oracle accepted the recovered state.
    pub(super) verdict: bool,
    pub(super) violation: Option<String>,
    pub(super) error: Option<String>,
    pub(super) history: History,
}

impl Outcome {
    pub(super) fn absorb(&mut self, m: Msg) {
        match m {
            Msg::Ready { cold } => {
                self.ready = true;
                self.cold = cold;
            }
            Msg::Verdict => self.verdict = true,
            Msg::Violation(v) => self.violation = Some(v),
            Msg::Done => self.done = true,
            Msg::Error(e) => self.error = Some(e),
            ack => self.history.push(ack),
        }
    }
}
