//! The built-in plugins, compiled by `build.rs` and embedded in the binary,
//! used when `--plugins` is not given.

/// Name and component bytes of each built-in plugin.
pub const PLUGINS: &[(&str, &[u8])] = &[(
    "logging",
    include_bytes!(concat!(env!("HOOKHOST_GUEST_DIR"), "/plugins/logging.wasm")),
)];
