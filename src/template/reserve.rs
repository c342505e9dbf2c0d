//! What the kubelet keeps for the system: a template's allocatable is its
//! capacity less these, so CA fits pods the way the scheduler will.
//!
//! The formulas are GKE's published node-allocatable reservations ("Plan GKE
//! node sizes", cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes),
//! which sit between EKS's and AKS's and are the most widely copied:
//! - memory: 255 MiB on machines under 1 GiB; else 25% of the first 4 GiB, 20% of
//!   the next 4 GiB, 10% of the next 8 GiB, 6% of the next 112 GiB and 2% of the
//!   rest; plus the kubelet's hard eviction threshold of 100 MiB;
//! - CPU: 6% of the first core, 1% of the second, 0.5% of the next two and 0.25%
//!   of every core above four;
//! - ephemeral storage: the kubelet's `nodefs.available` eviction threshold, 10%.

/// Reserved memory, MiB, for a machine with `memory_mib`.
pub fn memory_mib(memory_mib: u64) -> u64 {
    const EVICTION_MIB: u64 = 100;
    if memory_mib < 1024 {
        return 255 + EVICTION_MIB;
    }
    let tiers: [(u64, u64); 5] = [
        (4 * 1024, 250),
        (4 * 1024, 200),
        (8 * 1024, 100),
        (112 * 1024, 60),
        (u64::MAX, 20),
    ];
    let mut left = memory_mib;
    let mut reserved_per_mille = 0u64;
    for (size, per_mille) in tiers {
        let part = left.min(size);
        reserved_per_mille += part * per_mille;
        left -= part;
        if left == 0 {
            break;
        }
    }
    reserved_per_mille.div_ceil(1000) + EVICTION_MIB
}

/// Reserved CPU, millicores, for a machine with `vcpus`.
pub fn cpu_millis(vcpus: u32) -> u64 {
    // (cores in the tier, tenths of a millicore reserved per core)
    let tiers: [(u64, u64); 4] = [(1, 600), (1, 100), (2, 50), (u64::MAX, 25)];
    let mut left = u64::from(vcpus);
    let mut tenths = 0u64;
    for (size, rate) in tiers {
        let part = left.min(size);
        tenths += part * rate;
        left -= part;
    }
    tenths.div_ceil(10)
}

/// Allocatable ephemeral storage, GiB, of a disk of `disk_gib`.
pub fn ephemeral_allocatable_gib(disk_gib: u64) -> u64 {
    disk_gib - disk_gib.div_ceil(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_matches_gkes_worked_examples() {
        // 4 GiB: 25% = 1 GiB (+100 MiB eviction).
        assert_eq!(memory_mib(4096), 1024 + 100);
        // 8 GiB: 1 GiB + 0.8 GiB.
        assert_eq!(memory_mib(8192), 1024 + 820 /* ceil(819.2) */ + 100);
        // 32 GiB: 1024 + 819.2 + 819.2 + 6% of 16 GiB (983.04) = 3645.44 → 3646.
        assert_eq!(memory_mib(32768), 3646 + 100);
        // 2 TiB (8×H100 node): ... + 2% of 1920 GiB.
        let expected = (1024.0 + 819.2 + 819.2 + 0.06 * 112.0 * 1024.0 + 0.02 * 1920.0 * 1024.0f64)
            .ceil() as u64;
        assert_eq!(memory_mib(2 * 1024 * 1024), expected + 100);
        assert_eq!(memory_mib(512), 355);
    }

    #[test]
    fn cpu_matches_gkes_tiers() {
        assert_eq!(cpu_millis(1), 60);
        assert_eq!(cpu_millis(2), 70);
        assert_eq!(cpu_millis(4), 80);
        assert_eq!(cpu_millis(8), 90); // 80 + 4 × 2.5
        assert_eq!(cpu_millis(192), 80 + 470); // 188 × 2.5
    }

    #[test]
    fn ephemeral_keeps_the_eviction_threshold() {
        assert_eq!(ephemeral_allocatable_gib(200), 180);
    }
}
