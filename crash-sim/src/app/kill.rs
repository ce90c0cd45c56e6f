//! The kill and power modes against an application: each cycle recovers the segment,
//! checks the previous crash, runs the workload and kills it after a random delay
//! (power: half the cycles at a checkpoint's crash point, then the power is cut).

use std::time::Duration;

use anyhow::Result;
use rand::{Rng, SeedableRng};

use crate::engines::{CrashModel, Engine};
use crate::harness::ctx::Ctx;
use crate::seed::cycle_seed;
use crate::sys::{self, Exit};

use super::channel::Msg;
use super::history::History;
use super::worker::{judge, Harness, Job, Outcome, NOTHING};

/// Operations per cycle of the kill and power modes: more than a worker gets through.
const CYCLE_OPS: u64 = 1 << 40;

impl Harness<'_> {
    /// The kill and power modes.
    pub(super) fn kill(&self, ctx: &mut Ctx, model: CrashModel) -> Result<()> {
        let power = model == CrashModel::Power;
        self.reset()?;
        let points: Vec<&str> = if power {
            self.engine
                .crash_points()
                .into_iter()
                .filter(|p| p.starts_with("rio.checkpoint."))
                .collect()
        } else {
            Vec::new()
        };
        let mut rng = rand::rngs::SmallRng::seed_from_u64(ctx.cfg.seed);
        let mut history = History::default();
        let mut checked = true;
        let mut cycle = 0u64;
        while ctx.more(cycle, 1.0) {
            let at = format!("cycle {cycle}");
            let extra = format!("--cycles {}", cycle + 1);
            let arm = (power && !points.is_empty() && rng.gen_bool(0.5)).then(|| {
                (
                    points[rng.gen_range(0..points.len())],
                    rng.gen_range(1..=3u64),
                )
            });
            let delay = rng.gen_range(0..=ctx.cfg.max_delay_us);
            let job = Job {
                arm,
                check: (!checked).then_some(&history),
                run: Some((cycle_seed(ctx.cfg.seed, cycle), CYCLE_OPS)),
                ..NOTHING
            };
            let mut c = self.spawn(&job)?;
            let mut out = Outcome::default();
            while !out.ready && out.error.is_none() && out.violation.is_none() {
                match c.next(Duration::from_secs(60))? {
                    Some(m) => out.absorb(m),
                    None => break,
                }
            }
            if out.ready {
                sys::sleep_micros(delay);
            }
            c.kill()?;
            let exit = c.wait()?;
            let mut acks = Vec::new();
            while let Some(m) = c.next(Duration::from_secs(60))? {
                if matches!(m, Msg::Ack(_) | Msg::AckDurable(_) | Msg::Checkpointed) {
                    acks.push(m);
                } else {
                    out.absorb(m);
                }
            }
            // Until the oracle accepted the recovered state, what goes wrong is the
            // previous crash's doing.
            let prev = format!("cycle {} (recovered in cycle {cycle})", cycle.max(1) - 1);
            let ok = if checked || out.verdict {
                judge(ctx, &out, exit, &at, &extra)
            } else {
                judge(ctx, &out, exit, &prev, &extra)
            };
            if ok && power && out.ready && !out.cold && !checked {
                ctx.violation(
                    prev,
                    "expected a cold start after power loss, got a warm one".into(),
                    &extra,
                );
            }
            cycle += 1;
            ctx.report.cycles = cycle;
            if !ok {
                if ctx.stop() {
                    return Ok(());
                }
                self.reset()?;
                history = History::default();
                checked = true;
                continue;
            }
            if !checked {
                history.settle();
            }
            ctx.report.acked_ops += acks
                .iter()
                .filter(|m| !matches!(m, Msg::Checkpointed))
                .count() as u64;
            for m in acks {
                history.push(m);
            }
            if out.ready && exit == Exit::Signal(libc::SIGKILL) && !out.done {
                ctx.report.effective_kills += 1;
            }
            if power {
                self.engine.power_fail(cycle_seed(ctx.cfg.seed, cycle))?;
            }
            history.crash = Some(model);
            checked = false;
            if cycle.is_multiple_of(16) {
                let (c, k) = (cycle, ctx.report.effective_kills);
                ctx.tick(|| format!("{c} cycles, {k} effective kills"));
            }
        }
        if !checked && !ctx.stop() {
            let at = format!("cycle {} (final check)", cycle.max(1) - 1);
            self.verify(ctx, &history, &at, &format!("--cycles {cycle}"))?;
        }
        Ok(())
    }
}
