//! The `gpupool` command: the binary's edge, where errors become `anyhow`.

mod cli;

fn main() -> std::process::ExitCode {
    gpupool::tls::install_crypto_provider();
    cli::main()
}
