//! The black-box suite: one test binary (linking the runtime once, not
//! once per file), one module per area. Each test starts its own
//! `journeyd` on its own data directory and port.

mod auth;
mod backup;
mod bad_input;
mod browser;
mod cli;
mod cluster;
mod config;
mod console;
mod contract;
mod crash;
mod delivery;
mod drain;
mod enquiry;
mod experiments;
mod faults;
mod fixtures;
mod forget;
mod hot_swap;
mod languages;
mod migration;
mod openapi;
mod outbound;
mod retention;
mod retries;
mod rules;
mod scaffold;
mod timers;
mod versions;
mod waits;
mod webinar;
