//! `dropline-load`: open-loop load against the real stack — scenarios, the invariant checker, the
//! run itself and its report.

pub mod bad_input;
pub mod broker;
pub mod check;
pub mod crowd;
pub mod faults;
mod inside;
pub mod irc_crowd;
pub mod limits;
mod matcher;
mod outage;
pub mod process;
pub mod report;
pub mod rtt;
pub mod run;
pub mod scenario;
mod scripted_irc;
