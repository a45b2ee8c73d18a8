//! `hookhost check [--config FILE] FILE.wasm`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use hookhost::config::EngineConfig;
use hookhost::engine::Runtime;
use hookhost::plugin;
use hookhost::printable::{escape_controls, path as printable_path};
use hookhost::Config;

/// Prints whether `file` is a valid plugin, and its imports and exports.
/// The file is read as the host would read it: a regular file of at most
/// `[engine] max_plugin_mib` (from `config`, when given). Every name printed
/// has its control characters escaped.
pub async fn check(file: &Path, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let max_bytes = match config {
        Some(config) => tokio::task::spawn_blocking(move || Config::from_file(&config))
            .await
            .context("reading the config file")??
            .engine
            .max_plugin_bytes(),
        None => EngineConfig::default().max_plugin_bytes(),
    };
    let runtime = Runtime::new(None)?;
    let report = match plugin::inspect(runtime, file, max_bytes).await {
        Ok(report) => report,
        Err(err) => {
            println!("error: {err}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("imports:");
    for import in &report.imports {
        println!("  {}", escape_controls(import));
    }
    println!("exports:");
    for export in &report.exports {
        println!("  {}", escape_controls(export));
    }
    match report.verdict {
        Ok(world) => {
            println!("ok: {} implements {world}", printable_path(file));
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!("error: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
}
