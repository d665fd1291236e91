//! Where a pull goes: the mirrors of the build host's registries.conf that
//! apply, then the location itself, tried in order until one answers; when
//! all fail, the error says what each answered.

use oci_client::Reference;

use super::Puller;
use crate::error::{BundlerError, Result};

impl Puller {
    /// Where to pull `reference` from: the mirrors of the build host's
    /// registries.conf that apply, then the location (or the reference
    /// itself when nothing matches or there is no file).
    pub(super) fn endpoints(
        &self,
        what: &str,
        reference: &Reference,
    ) -> Result<Vec<(Reference, bool)>> {
        let Some(conf) = &self.mirrors else {
            return Ok(vec![(reference.clone(), false)]);
        };
        let eps = conf.endpoints(&reference.whole()).map_err(|message| {
            BundlerError::RegistryBlocked {
                image: what.to_owned(),
                message,
            }
        })?;
        eps.into_iter()
            .map(|e| {
                super::reference(e.reference.as_str())
                    .map(|r| (r, e.mirror))
                    .map_err(|x| BundlerError::RegistriesConf {
                        path: conf.path().to_owned(),
                        message: format!(
                            "{} maps to {:?}, which is not an image reference: {x}",
                            reference.whole(),
                            e.reference
                        ),
                    })
            })
            .collect()
    }

    /// Tries `f` on each endpoint in order; the first success wins. A
    /// failed mirror is reported (unless quiet) and the next one tried;
    /// when all fail, the error says what each mirror answered.
    pub(super) fn first_success<T>(
        &mut self,
        endpoints: Vec<(Reference, bool)>,
        mut f: impl FnMut(&mut Self, &Reference) -> Result<T>,
    ) -> Result<T> {
        let mut tried: Vec<String> = Vec::new();
        let n = endpoints.len();
        for (i, (r, mirror)) in endpoints.into_iter().enumerate() {
            match f(self, &r) {
                Ok(v) => return Ok(v),
                Err(e) if i + 1 < n => {
                    let what = if mirror { "mirror" } else { "location" };
                    if !self.opts.quiet {
                        eprintln!(
                            "stoa-bundler: {what} {} failed, trying the next: {e}",
                            r.whole()
                        );
                    }
                    tried.push(format!("{what} {}: {e}", r.whole()));
                }
                Err(e) if tried.is_empty() => return Err(e),
                Err(e) => {
                    let also = format!(" (tried first: {})", tried.join("; "));
                    return Err(match e {
                        BundlerError::RegistryPull {
                            image,
                            reference,
                            message,
                        } => BundlerError::RegistryPull {
                            image,
                            reference,
                            message: message + &also,
                        },
                        BundlerError::RegistryBlob {
                            image,
                            blob,
                            message,
                        } => BundlerError::RegistryBlob {
                            image,
                            blob,
                            message: message + &also,
                        },
                        BundlerError::ChartPull {
                            chart,
                            url,
                            message,
                        } => BundlerError::ChartPull {
                            chart,
                            url,
                            message: message + &also,
                        },
                        other => other,
                    });
                }
            }
        }
        // endpoints() always returns at least the location
        Err(BundlerError::RegistryBlocked {
            image: String::new(),
            message: "nowhere to pull from".into(),
        })
    }
}
