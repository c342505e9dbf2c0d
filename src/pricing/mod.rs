//! Prices: the book (with history, for exact proration), what CA's `price`
//! expander asks (a node's cost over an interval, a pod's share of the
//! cheapest group that fits it), the per-group price cap, the offline price
//! table and the live refresh.

pub mod book;
pub mod cap;
pub mod node;
pub mod pod;
pub mod table;

#[cfg(test)]
mod tests;

pub use book::{NoPrice, PriceBook, Prices};
pub use node::{NodeRef, node_cost, template_group};
pub use pod::{PodError, PricedGroup, pod_cost};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PriceError {
    #[error(transparent)]
    NoPrice(#[from] NoPrice),
    #[error(
        "node {0:?} is not a node of ours and carries no node.kubernetes.io/instance-type label to price it by"
    )]
    UnknownNode(String),
}
