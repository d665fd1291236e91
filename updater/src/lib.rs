//! stoa-updater as a library: the site engine (plan, journaled apply and
//! rollback, drivers), the state folder and the subcommands; `main.rs` is a
//! thin command line over it.

pub mod audit;
pub mod bundled;
pub mod cmd;
pub mod config;
pub mod db;
pub mod delta;
pub mod engine;
pub mod error;
pub mod helm;
pub mod kube;
pub mod mirror;
pub mod postrender;
pub mod preflight;
pub mod progress;
pub mod records;
pub mod registry;
pub mod report;
pub mod selfupdate;
pub mod serve;
pub mod stage;
pub mod state;
pub mod support;
pub mod tool;
pub mod trust;
