//! The `moto` EC2 API server, started and stopped per test: a real
//! implementation of the EC2 query API (from PyPI, put in a venv by
//! `scripts/test-deps`, which `.ci/run` runs first). Shared by the AWS
//! crate's tests and gpupool's own (`#[path]`), so it needs only std and
//! tokio.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long moto may take to listen (it imports a lot on start).
const START_LIMIT: Duration = Duration::from_secs(60);

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

fn moto_server() -> PathBuf {
    let venv = std::env::var_os("GPUPOOL_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/gpupool/venv")
        });
    let bin = venv.join("bin/moto_server");
    assert!(
        bin.exists(),
        "{} not found: run scripts/test-deps (or .ci/run) to install moto",
        bin.display()
    );
    bin
}

impl Moto {
    /// Starts moto on a free port. The port is free when picked but can be
    /// taken before moto binds it (tests run in parallel): moto then exits,
    /// and it is started again on another.
    pub async fn start() -> Self {
        for _ in 0..5 {
            if let Some(moto) = Self::try_start().await {
                return moto;
            }
        }
        panic!("moto_server exited on five ports in a row");
    }

    async fn try_start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let started = Instant::now();
        loop {
            let listening = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok();
            // Exited: the port was taken (whoever listens there is not it).
            if child.try_wait().expect("moto_server's status").is_some() {
                return None;
            }
            if listening {
                break;
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "moto_server did not listen on {port} within {START_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
