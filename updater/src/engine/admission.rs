//! Admission: the one gate `plan` and `apply` pass a verified bundle
//! through before anything is computed or changed, with its state changes
//! named (in the style of Bottlerocket's signpost): a bundle whose
//! signatures were checked (`Verified`) is [`Admitted`] as a new apply when
//! no other operation is pending and the version policy allows it, or as the
//! resume of the pending apply of the same bundle; another pending
//! operation refuses it (exit 5, naming it); a delta is admitted only when
//! the store holds every blob it omits (exit 1, `delta-incomplete`).

use stoa_format::BundleManifest;

use crate::error::Result;
use crate::state::{OpKind, Pending, State};

use super::Site;

/// How a verified bundle was admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// Verified → Admitted::New: nothing pending, the version policy passed.
    New,
    /// Verified → Admitted::Resume: the pending apply of this same bundle.
    Resume,
}

impl Admitted {
    /// Whether this resumes the pending apply.
    pub fn resumed(&self) -> bool {
        *self == Self::Resume
    }
}

impl Site {
    /// The admission of bundle `m` (manifest digest `sha`) on the state as
    /// read. `on_resume` runs before the delta's store check when the
    /// pending apply is resumed (apply stops the interrupted run's workers;
    /// plan changes nothing).
    pub fn admit(
        &self,
        state: &State,
        m: &BundleManifest,
        sha: &str,
        allow_downgrade: bool,
        on_resume: &mut dyn FnMut(&Pending) -> Result<()>,
    ) -> Result<Admitted> {
        let admitted = match &state.pending {
            Some(p) if p.op == OpKind::Apply && p.manifest_sha256.as_deref() == Some(sha) => {
                on_resume(p)?;
                Admitted::Resume
            }
            Some(p) => return Err(self.pending_refusal(p)),
            None => {
                self.check_policy(state, m, allow_downgrade)?;
                Admitted::New
            }
        };
        // a delta: every omitted blob in the store, before any change
        crate::delta::check_store(&self.sd, state, m, &mut |_| {})?;
        Ok(admitted)
    }
}
