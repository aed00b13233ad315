//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod hammer;
pub mod proxy;
pub mod redis_servers;
pub mod tcp;
