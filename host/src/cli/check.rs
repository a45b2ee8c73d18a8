//! `hookhost check FILE.wasm`.

use std::path::Path;
use std::process::ExitCode;

use hookhost::engine::Runtime;
use hookhost::plugin;

/// Prints whether `file` is a valid plugin, and its imports and exports.
pub async fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(None)?;
    let report = plugin::inspect(&runtime, file).await?;
    println!("imports:");
    for import in &report.imports {
        println!("  {import}");
    }
    println!("exports:");
    for export in &report.exports {
        println!("  {export}");
    }
    match report.verdict {
        Ok(world) => {
            println!("ok: {} implements {world}", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!("error: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
}
