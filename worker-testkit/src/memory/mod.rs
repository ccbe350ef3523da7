//! stub
#![allow(missing_docs)]
use std::time::Duration;
#[derive(Debug)]
pub struct MemoryBroker;
#[derive(Debug, Clone)]
pub struct Clock;
impl Clock { pub fn advance(&self, _d: Duration) {} }
impl MemoryBroker {
    pub async fn start() -> MemoryBroker { MemoryBroker }
    pub fn url(&self) -> String { String::new() }
    pub fn clock(&self) -> Clock { Clock }
}
