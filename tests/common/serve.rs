//! `gpupool serve` as a child process, for the tests that run the real
//! binary against a cloud's API: started from a prepared command, reached
//! over gRPC at the address it prints, killed when dropped.

use super::{Client, connect, eventually, group_nodes, target_size};
use gpupool::proto::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Serve {
    child: Child,
    pub client: Client,
}

impl Serve {
    /// Spawns `command` (a `gpupool serve` with its config and
    /// environment), its stderr to `log`, and connects to the gRPC address
    /// of its first stdout line.
    pub async fn start(mut command: Command, log: &Path) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("a log file"))
            .spawn()
            .expect("gpupool starts");
        // Off the runtime: the cloud API it talks to may run on it.
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .expect("the reader")
        .expect("the serving line");
        let addr = line
            .strip_prefix("gpupool serving externalgrpc on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no serving line: {line:?}; log: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        Self {
            child,
            client: connect(addr).await,
        }
    }

    /// The group's nodes after a Refresh.
    pub async fn nodes(&mut self, id: &str) -> Vec<Instance> {
        self.client
            .refresh(RefreshRequest {})
            .await
            .expect("refresh");
        group_nodes(&mut self.client, id).await
    }

    /// The group's nodes once `done` holds of them (Refresh between looks).
    pub async fn nodes_when(
        &mut self,
        id: &str,
        done: impl Fn(&[Instance]) -> bool,
    ) -> Vec<Instance> {
        let mut nodes = Vec::new();
        eventually(&format!("group {id} to get there"), async || {
            nodes = self.nodes(id).await;
            done(&nodes)
        })
        .await;
        nodes
    }

    pub async fn increase(&mut self, id: &str, delta: i32) {
        self.client
            .node_group_increase_size(NodeGroupIncreaseSizeRequest {
                id: id.into(),
                delta,
            })
            .await
            .expect("increase");
    }

    pub async fn target(&mut self, id: &str) -> i32 {
        target_size(&mut self.client, id).await
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ids of nodes the cloud made (`<scheme>://…`), without the
/// placeholders of slots it has not filled.
pub fn cloud_ids<'a>(nodes: &'a [Instance], scheme: &str) -> Vec<&'a str> {
    let ours = format!("{scheme}://");
    let placeholder = format!("{scheme}:///placeholder/");
    nodes
        .iter()
        .map(|n| n.id.as_str())
        .filter(|id| id.starts_with(&ours) && !id.starts_with(&placeholder))
        .collect()
}
