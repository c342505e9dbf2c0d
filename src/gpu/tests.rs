//! MIG layouts known to be valid and invalid, from NVIDIA's MIG user guide, and
//! what sharing makes the device plugin advertise.

use super::mig::{GEOMETRIES, geometry};
use super::sharing::{MigSpec, MigStrategy, parse, resolve};
use gpupool_cloud::GpuInfo;

fn gpu(accelerator: &str) -> GpuInfo {
    GpuInfo {
        accelerator: accelerator.into(),
        model: "x".into(),
        product: "x".into(),
        count: 8,
        memory_mib: 81920,
    }
}

fn layout(
    accelerator: &str,
    value: &str,
    strategy: MigStrategy,
) -> Result<Vec<(String, u32)>, String> {
    let spec = parse(value)?;
    let sharing = resolve(&spec, strategy, Some(&gpu(accelerator)))?;
    Ok(sharing
        .mig
        .map(|m| {
            m.layout
                .iter()
                .map(|(p, n)| (p.name.to_owned(), *n))
                .collect()
        })
        .unwrap_or_default())
}

fn pairs(list: &[(&str, u32)]) -> Vec<(String, u32)> {
    list.iter().map(|(p, n)| (p.to_string(), *n)).collect()
}

#[test]
fn all_profile_layouts_take_as_many_as_nvidia_lists() {
    // (GPU, profile, instances per GPU) from the guide's "Supported profiles" tables.
    let cases = [
        ("nvidia-a100-40gb", "1g.5gb", 7),
        ("nvidia-a100-40gb", "1g.10gb", 4),
        ("nvidia-a100-40gb", "2g.10gb", 3),
        ("nvidia-a100-40gb", "3g.20gb", 2),
        ("nvidia-a100-40gb", "4g.20gb", 1),
        ("nvidia-a100-40gb", "7g.40gb", 1),
        ("nvidia-a100-80gb", "1g.10gb", 7),
        ("nvidia-a100-80gb", "1g.20gb", 4),
        ("nvidia-a100-80gb", "2g.20gb", 3),
        ("nvidia-a100-80gb", "3g.40gb", 2),
        ("nvidia-h100-80gb", "1g.10gb", 7),
        ("nvidia-h100-80gb", "7g.80gb", 1),
        ("nvidia-h100-94gb", "1g.12gb", 7),
        ("nvidia-h100-94gb", "3g.47gb", 2),
        ("nvidia-h200-141gb", "1g.18gb", 7),
        ("nvidia-h200-141gb", "1g.35gb", 4),
        ("nvidia-h200-141gb", "2g.35gb", 3),
        ("nvidia-a30", "1g.6gb", 4),
        ("nvidia-a30", "2g.12gb", 2),
        ("nvidia-a30", "4g.24gb", 1),
    ];
    for (acc, profile, n) in cases {
        let got = layout(acc, &format!("mig:all-{profile}"), MigStrategy::Single).unwrap();
        assert_eq!(got, pairs(&[(profile, n)]), "{acc} all-{profile}");
    }
}

#[test]
fn mixed_layouts_nvidia_lists_as_valid_are_accepted() {
    let valid = [
        ("nvidia-a100-40gb", "4g.20gb=1,3g.20gb=1"),
        ("nvidia-a100-40gb", "4g.20gb=1,2g.10gb=1,1g.5gb=1"),
        ("nvidia-a100-40gb", "3g.20gb=1,2g.10gb=2"),
        ("nvidia-a100-40gb", "2g.10gb=3,1g.5gb=1"),
        ("nvidia-a100-40gb", "3g.20gb=1,1g.5gb=4"),
        ("nvidia-a100-80gb", "3g.40gb=1,2g.20gb=1,1g.10gb=2"),
        ("nvidia-h100-80gb", "4g.40gb=1,1g.20gb=1,1g.10gb=1"),
        ("nvidia-h200-141gb", "3g.71gb=2"),
        ("nvidia-a30", "2g.12gb=1,1g.6gb=2"),
    ];
    for (acc, l) in valid {
        layout(acc, &format!("mig:{l}"), MigStrategy::Mixed)
            .unwrap_or_else(|e| panic!("{acc} {l}: {e}"));
    }
    assert_eq!(
        layout("nvidia-a100-80gb", "mig:all-balanced", MigStrategy::Mixed).unwrap(),
        pairs(&[("1g.10gb", 2), ("2g.20gb", 1), ("3g.40gb", 1)])
    );
}

#[test]
fn a_repeated_profile_whose_counts_add_past_u32_is_refused_not_wrapped() {
    // A config input replayed through fuzz/fuzz_targets/config.rs: the
    // counts of a profile named twice overflowed u32 (a panic with overflow
    // checks, a wrap to a 1-slice layout that passed the check without).
    let err = layout(
        "nvidia-a100-80gb",
        "mig:1g.10gb=4294967295,1g.10gb=2",
        MigStrategy::Mixed,
    )
    .unwrap_err();
    assert!(err.contains("at most 7 per GPU"), "{err}");
}

#[test]
fn impossible_layouts_are_refused_with_the_reason_and_what_fits() {
    let invalid = [
        (
            "nvidia-a100-40gb",
            "mig:4g.20gb=2",
            "asks for more 4g.20gb than fit: at most 1 per GPU (4g.20gb can only start at memory slice 0)",
        ),
        (
            "nvidia-h100-80gb",
            "mig:3g.40gb=3",
            "at most 2 per GPU (3g.40gb can only start at memory slice 0, 4)",
        ),
        ("nvidia-h100-80gb", "mig:1g.10gb=8", "at most 7 per GPU"),
        (
            "nvidia-a100-40gb",
            "mig:4g.20gb=1,3g.20gb=1,1g.5gb=1",
            "uses 8 compute slices, the GPU has 7",
        ),
        (
            "nvidia-a100-80gb",
            "mig:3g.40gb=2,1g.10gb=1",
            "uses 9 memory slices, the GPU has 8",
        ),
        (
            "nvidia-a100-80gb",
            "mig:1g.20gb=4,1g.10gb=1",
            "uses 9 memory slices",
        ),
        (
            "nvidia-a30",
            "mig:2g.12gb=2,1g.6gb=1",
            "uses 5 compute slices, the GPU has 4",
        ),
        (
            "nvidia-h100-80gb",
            "mig:2g.10gb=1",
            "nvidia-h100-80gb has no MIG profile \"2g.10gb\"; its profiles: 1g.10gb, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb",
        ),
        (
            "nvidia-l4",
            "mig:all-1g.5gb",
            "nvidia-l4 GPUs do not support MIG",
        ),
        (
            "nvidia-a100-80gb",
            "mig:1g.10gb=0",
            "count \"0\" of 1g.10gb is not a positive whole number",
        ),
        (
            "nvidia-a100-80gb",
            "mig:1g.10gb",
            "is not <profile>=<count>",
        ),
        ("nvidia-a100-80gb", "time-slicing:1", "from 2 to 64"),
        (
            "nvidia-a100-80gb",
            "mps:2",
            "is not time-slicing:N or mig:<layout>",
        ),
    ];
    for (acc, value, expected) in invalid {
        let err = layout(acc, value, MigStrategy::Mixed).expect_err(value);
        assert!(err.contains(expected), "{acc} {value}: {err}");
    }
    let err = layout("nvidia-a100-40gb", "mig:4g.20gb=2", MigStrategy::Single).unwrap_err();
    assert!(err.ends_with("layouts that fit: all-1g.5gb, all-1g.10gb, all-2g.10gb, all-3g.20gb, all-4g.20gb, all-7g.40gb, all-balanced"), "{err}");
    let err = layout(
        "nvidia-a100-80gb",
        "mig:3g.40gb=1,2g.20gb=1",
        MigStrategy::Single,
    )
    .unwrap_err();
    assert!(
        err.contains("single MIG strategy advertises one kind of slice"),
        "{err}"
    );
}

#[test]
fn every_geometry_is_consistent() {
    for g in GEOMETRIES {
        for p in g.profiles {
            assert!(g.max_of(p) >= 1, "{} {}", g.accelerator, p.name);
            assert!(
                p.starts
                    .iter()
                    .all(|s| s + p.memory_slices <= g.memory_slices)
            );
        }
        let balanced: Vec<_> = g
            .balanced
            .iter()
            .map(|(n, c)| (g.profile(n).unwrap(), *c))
            .collect();
        g.check(&balanced).unwrap();
    }
    assert!(geometry("nvidia-t4").is_none());
}

#[test]
fn the_mig_manager_config_name_follows_the_layout() {
    assert_eq!(MigSpec::All("1g.10gb".into()).config_name(), "all-1g.10gb");
    let spec = parse("mig:1g.10gb=2,3g.40gb=1+time-slicing:4").unwrap();
    assert_eq!(spec.replicas, Some(4));
    assert_eq!(spec.mig.unwrap().config_name(), "1g.10gbx2-3g.40gbx1");
}
