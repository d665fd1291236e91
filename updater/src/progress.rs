//! Progress on stderr, in the three forms an operator meets: bars on a
//! terminal (a byte bar for a phase with a size, a spinner with the elapsed
//! time for a step without one, so a migration or a Helm wait shows it is
//! alive and what it waits for); plain lines when stderr is not a terminal
//! (one as each phase begins, one per tenth of its bytes, one as it ends
//! with its time; each starts `stoa-updater: apply: `), written as they
//! happen so a script or a log watching the run follows it; nothing under
//! `--quiet` or `--json`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use stoa_format::cli::Output;

pub use stoa_format::cli::bytes_bar;

/// Which of the three forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Bars,
    Lines,
    Nothing,
}

/// The phase being shown.
#[derive(Debug)]
struct Phase {
    name: String,
    started: Instant,
    bar: Option<ProgressBar>,
    /// Lines: the last tenth of the bytes announced.
    tenth: u64,
}

/// A command's progress: fed `(phase, done, total)` by the engine (`total`
/// 0: a step without a byte count), ended by [`Reporter::finish`].
#[derive(Debug)]
pub struct Reporter {
    form: Form,
    what: &'static str,
    current: Option<Phase>,
}

impl Reporter {
    /// For command `what` (`apply`), with the output flags.
    pub fn new(what: &'static str, out: Output) -> Self {
        let form = if !out.bars() {
            Form::Nothing
        } else if std::io::stderr().is_terminal() {
            Form::Bars
        } else {
            Form::Lines
        };
        Self {
            form,
            what,
            current: None,
        }
    }

    /// Phase `phase` is at `done` of `total` bytes.
    pub fn update(&mut self, phase: &str, done: u64, total: u64) {
        if self.form == Form::Nothing {
            return;
        }
        if self.current.as_ref().map(|p| p.name.as_str()) != Some(phase) {
            self.finish();
            self.begin(phase, total);
        }
        let (form, what) = (self.form, self.what);
        let Some(p) = self.current.as_mut() else {
            return;
        };
        if let Some(b) = &p.bar {
            b.set_position(done);
        }
        if form == Form::Lines && total > 0 {
            let tenth = done.saturating_mul(10) / total;
            if tenth > p.tenth && tenth < 10 {
                p.tenth = tenth;
                eprintln!(
                    "stoa-updater: {what}: {phase}: {}% ({} of {})",
                    tenth * 10,
                    human(done),
                    human(total)
                );
            }
        }
    }

    fn begin(&mut self, phase: &str, total: u64) {
        let bar = match (self.form, total) {
            (Form::Bars, 0) => {
                let s = ProgressBar::new_spinner();
                s.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                s.set_message(format!("{phase}: waiting for it"));
                s.enable_steady_tick(Duration::from_millis(200));
                Some(s)
            }
            (Form::Bars, _) => Some(bytes_bar(total, phase, false)),
            _ => {
                let size = if total > 0 {
                    format!(" ({})", human(total))
                } else {
                    String::new()
                };
                eprintln!("stoa-updater: {}: {phase}{size} ...", self.what);
                None
            }
        };
        self.current = Some(Phase {
            name: phase.to_owned(),
            started: Instant::now(),
            bar,
            tenth: 0,
        });
    }

    /// Ends the phase being shown.
    pub fn finish(&mut self) {
        let Some(p) = self.current.take() else {
            return;
        };
        if let Some(b) = p.bar {
            b.finish_and_clear();
        }
        if self.form == Form::Lines {
            eprintln!(
                "stoa-updater: {}: {} done in {:.1}s",
                self.what,
                p.name,
                p.started.elapsed().as_secs_f64()
            );
        }
    }
}

fn human(n: u64) -> String {
    stoa_format::cli::report::human_bytes(n)
}
