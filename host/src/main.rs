//! The `hookhost` command: run plugins on events from stdin, send one event,
//! or check a component.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
