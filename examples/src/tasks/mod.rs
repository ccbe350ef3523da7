//! The demo's tasks.

pub mod echo;
pub mod email;
pub mod images;
pub mod orders;
pub mod record;
pub mod tick;
