//! The pod CA sends in `PricingPodPrice` (`pod_bytes`, or `pod` from older
//! CAs): core/v1 Pod in Kubernetes protobuf encoding, decoded exactly as the
//! gRPC service does, by `gpupool::pricing::pod::decode` (k8s-pb `Pod::decode`
//! then `gpupool::fit::pb::pod_shape`); a decoded pod is then checked and
//! priced against one 8-GPU node as `pricing::pod_cost` does.
#![no_main]

use gpupool::fit::{self, GroupSize, NodeShape, Resources};
use gpupool::pricing::pod;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|bytes: &[u8]| {
    let Ok(shape) = pod::decode(bytes) else {
        return;
    };
    let node = NodeShape {
        name: "template-h100".into(),
        labels: BTreeMap::from([("gpupool.dev/accelerator".into(), "h100".into())]),
        allocatable: Resources::from([
            ("cpu".into(), 190.0),
            ("memory".into(), 1.9e12),
            ("nvidia.com/gpu".into(), 8.0),
            ("pods".into(), 110.0),
        ]),
        ..Default::default()
    };
    let size = GroupSize {
        max: 4,
        target: None,
    };
    let _ = fit::check(&shape, &node, &Resources::new(), size).fits();
    let share = pod::share(&shape, &node);
    assert!((0.0..=1.0).contains(&share), "share {share} of one node");
});
