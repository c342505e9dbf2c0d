//! `gpupool certs --out DIR`: a CA and mTLS certificates for CA and gpupool.

use gpupool::certs::{self, Request};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write ca.crt, ca.key, server.crt, server.key, client.crt, client.key
    #[arg(long)]
    out: PathBuf,
    /// A name of the server certificate (repeat): how CA dials gpupool
    #[arg(long = "dns", default_values_t = [
        "gpupool".to_owned(),
        "gpupool.gpupool.svc".to_owned(),
        "gpupool.gpupool.svc.cluster.local".to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ])]
    dns: Vec<String>,
    /// The client certificate's name
    #[arg(long, default_value = "cluster-autoscaler")]
    client_name: String,
    /// Days the certificates are valid
    #[arg(long, default_value_t = 365)]
    days: u64,
    /// Replace files that exist
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let request = Request {
        server_names: args.dns,
        client_name: args.client_name,
        valid_for: Duration::from_secs(args.days.saturating_mul(86_400)),
    };
    let bundle = certs::generate(&request)?;
    for path in certs::write(&args.out, &bundle, args.force)? {
        println!("{}", path.display());
    }
    Ok(())
}
