//! The `gpupool` command: the binary's edge, where errors become `anyhow`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
