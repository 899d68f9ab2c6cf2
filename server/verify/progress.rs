//! How far a pass of `orthweb verify` (or `orthweb migrate`'s metadata fill) has got: a bar on standard error when it is a terminal,
//! a log line every few seconds when it is not (a cron job, a container's log), so that the
//! output of a long run says neither too much nor nothing.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Between two progress lines in a log.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct Progress {
    task: &'static str,
    bar: Option<ProgressBar>,
    what: &'static str,
    done_verb: &'static str,
    total: Option<u64>,
    done: u64,
    last_log: Instant,
}

impl Progress {
    /// Progress over `total` items (unknown: `None`) called `what` ("rows"), which are
    /// `done_verb` ("checked") one by one.
    pub(crate) fn new(what: &'static str, done_verb: &'static str, total: Option<u64>) -> Progress {
        Self::of("verify", what, done_verb, total)
    }

    /// The same for the command `task` ("migrate").
    pub(crate) fn of(
        task: &'static str,
        what: &'static str,
        done_verb: &'static str,
        total: Option<u64>,
    ) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let (bar, template) = match total {
                Some(total) => (
                    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
                    "{prefix:>5} {bar:40} {pos}/{len}, {per_sec}, eta {eta}",
                ),
                None => (
                    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                    "{prefix:>5} {spinner} {pos}, {per_sec}",
                ),
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(what);
            bar
        });
        Progress {
            task,
            bar,
            what,
            done_verb,
            total,
            done: 0,
            last_log: Instant::now(),
        }
    }

    pub(crate) fn advance(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None if self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                self.log();
            }
            None => {}
        }
    }

    fn log(&self) {
        match self.total {
            Some(total) => tracing::info!(
                "{}: {} of {total} {} {}",
                self.task,
                self.done,
                self.what,
                self.done_verb
            ),
            None => tracing::info!(
                "{}: {} {} {}",
                self.task,
                self.done,
                self.what,
                self.done_verb
            ),
        }
    }

    pub(crate) fn finish(self) {
        match self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => self.log(),
        }
    }
}
