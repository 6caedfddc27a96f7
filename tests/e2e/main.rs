//! End-to-end tests: the real `headroom` binary, real backends on 127.0.0.1,
//! real HTTP over sockets. One test binary, so pingora is linked once.

mod admin_api;
mod common;
mod config;
mod demo;
mod forwarding;
mod hardening;
mod identity;
mod limits;
mod predictive;
mod warming;
