//! The imports the host gives plugins, one module per WIT interface.

pub mod config;
pub mod http;
pub mod log;
pub mod wasi;

/// `hookhost:hooks/types` defines types only; its generated `Host` trait has
/// no functions.
impl crate::bindings::hookhost::hooks::types::Host for crate::state::PluginState {}
