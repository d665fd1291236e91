//! The puller's lifecycle in one build: made on first use so local-only
//! builds need no cache, or started on another thread ahead of time
//! ([`PullSlot::start`]), and handed to every pull (images, charts, chart
//! dependencies) through [`puller`].

use super::{PullOptions, PullStats, Puller};
use crate::error::{BundlerError, Result};

/// The puller: made on first use so local-only builds need no cache, or
/// started on another thread ahead of time ([`PullSlot::start`]: making one
/// loads the system's CA roots and starts a runtime, which can overlap
/// packaging the first charts).
#[derive(Debug, Default)]
pub struct PullSlot {
    ready: Option<Puller>,
    starting: Option<std::thread::JoinHandle<Result<Puller>>>,
}

impl PullSlot {
    /// Starts making the puller now, on another thread; its errors (a bad
    /// registries.conf, …) are reported at first use, as without it.
    pub fn start(opts: &PullOptions) -> Self {
        let opts = opts.clone();
        Self {
            ready: None,
            starting: Some(std::thread::spawn(move || Puller::new(&opts))),
        }
    }

    /// What was downloaded, when something was pulled.
    pub fn stats(&self) -> Option<PullStats> {
        self.ready.as_ref().map(Puller::stats)
    }
}

/// The puller, made (or waited for) on first use.
pub fn puller<'a>(p: &'a mut PullSlot, opts: &PullOptions) -> Result<&'a mut Puller> {
    if p.ready.is_none() {
        let made = match p.starting.take() {
            Some(h) => h.join().unwrap_or_else(|_| Puller::new(opts)),
            None => Puller::new(opts),
        };
        p.ready = Some(made?);
    }
    p.ready.as_mut().ok_or_else(|| BundlerError::Cache {
        path: opts.cache_dir.clone(),
        message: "no puller".into(),
    })
}
