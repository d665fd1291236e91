//! Admission: the one gate `plan` and `apply` pass a verified bundle
//! through before anything is computed or changed, with its state changes
//! named (in the style of Bottlerocket's signpost): a bundle whose
//! signatures were checked (`Verified`) is [`Admitted`] as a new apply when
//! no other operation is pending and the version policy allows it, or as the
//! resume of the pending apply of the same bundle; another pending
//! operation refuses it (exit 5, naming it); a delta is admitted only when
//! the store holds every blob it omits (exit 1, `delta-incomplete`). A new
//! apply is refused too when the site itself holds more than the bundle
//! (exit 5, `site-ahead`): a migration that a newer release ran, a Helm
//! release on a newer chart — the
//! marks of a lost or restored state folder, which would otherwise let an
//! older bundle downgrade the site "over nothing installed".

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
                if !allow_downgrade {
                    self.check_site_not_ahead(m)?;
                }
                Admitted::New
            }
        };
        // a delta: every omitted blob in the store, before any change
        crate::delta::check_store(&self.sd, state, m, &mut |_| {})?;
        Ok(admitted)
    }

    /// What the site records beyond bundle `m`, read-only: per database of
    /// the bundle, applied migrations that a newer release ran (the history
    /// table's `release`); per chart, a deployed chart version newer than
    /// the bundle's. A database or Helm that cannot
    /// be read is left to preflight and the steps (which report it).
    pub fn site_ahead_of(&self, m: &BundleManifest) -> Vec<String> {
        let mut found = Vec::new();
        let bundle_v = &m.release.version;
        for set in &m.migrations {
            let Some(dbc) = self.cfg.databases.get(&set.database) else {
                continue;
            };
            let Ok(applied) = self.drivers.database.applied(&set.database, &dbc.url) else {
                continue;
            };
            // a row a newer release wrote: whether or not the bundle has
            // the id (a release may drop squashed migrations; rows of older
            // releases are no sign)
            for (id, a) in &applied {
                let Some(by) = a.release.as_deref() else {
                    continue;
                };
                let newer = semver::Version::parse(by).is_ok_and(|r| super::is_newer(&r, bundle_v));
                if !newer {
                    continue;
                }
                let known = set.steps.iter().any(|s| s.id.as_str() == id);
                found.push(format!(
                    "database {}: migration {id}_{} was applied by release {by}{}",
                    set.database,
                    a.name,
                    if known {
                        ""
                    } else {
                        " and is not in this bundle"
                    }
                ));
            }
        }
        for c in &m.charts {
            let Ok(Some(deployed)) = self.drivers.charts.latest_chart(&c.release, &c.namespace)
            else {
                continue;
            };
            let v = deployed
                .strip_prefix(&format!("{}-", c.name))
                .and_then(|v| semver::Version::parse(v).ok());
            let ours = semver::Version::parse(&c.version).ok();
            if let (Some(v), Some(ours)) = (v, ours) {
                if super::is_newer(&v, &ours) {
                    found.push(format!(
                        "helm {}/{}: chart {deployed} is deployed, newer than the bundle's {}-{}",
                        c.namespace, c.release, c.name, c.version
                    ));
                }
            }
        }
        found
    }

    /// Refuses a new apply over a site ahead of the bundle (see
    /// [`Site::site_ahead_of`]), naming what was found.
    fn check_site_not_ahead(&self, m: &BundleManifest) -> Result<()> {
        let found = self.site_ahead_of(m);
        if found.is_empty() {
            return Ok(());
        }
        Err(crate::error::UpdaterError::SiteAhead(format!(
            "the site is ahead of {} {}: {}. The state folder does not know this: was it lost or restored from an old backup? Rebuild it from the site and the bundles installed (`{}`), or, to downgrade knowingly, pass --allow-downgrade",
            m.release.name,
            m.release.version,
            found.join("; "),
            crate::config::hint(&self.cfg.path, "state rebuild <bundle>...")
        )))
    }
}
