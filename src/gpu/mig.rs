//! Multi-Instance GPU geometry, from NVIDIA's MIG user guide ("Supported MIG
//! profiles" and "MIG device placement"): each MIG-capable GPU has a number of
//! compute slices and memory slices, and each profile takes some of both at
//! fixed starting memory slices. A layout is possible only if every instance
//! can be placed without overlapping memory slices and the compute slices add
//! up to no more than the GPU has.

use std::fmt;

/// One GPU instance profile, e.g. `1g.10gb`.
#[derive(Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    /// NVML's GPU instance profile id (the guide's "ID" column).
    pub id: u8,
    pub compute_slices: u8,
    pub memory_slices: u8,
    /// Memory slices an instance of this profile may start at.
    pub starts: &'static [u8],
    /// Frame buffer of one instance, GB as in the profile name.
    pub memory_gb: u32,
}

/// A MIG-capable GPU model.
#[derive(Debug, PartialEq, Eq)]
pub struct Geometry {
    /// The GPU type as the GPU label carries it (`nvidia-a100-80gb`).
    pub accelerator: &'static str,
    pub compute_slices: u8,
    pub memory_slices: u8,
    pub profiles: &'static [Profile],
    /// The GPU operator's `all-balanced` layout for this model.
    pub balanced: &'static [(&'static str, u32)],
}

const fn p(
    name: &'static str,
    id: u8,
    compute_slices: u8,
    memory_slices: u8,
    starts: &'static [u8],
    memory_gb: u32,
) -> Profile {
    Profile {
        name,
        id,
        compute_slices,
        memory_slices,
        starts,
        memory_gb,
    }
}

/// 7 compute and 8 memory slices: A100, H100, H200.
const ONE: &[u8] = &[0, 1, 2, 3, 4, 5, 6];
const TWO: &[u8] = &[0, 2, 4, 6];
const TWO_G: &[u8] = &[0, 2, 4];
const THREE_G: &[u8] = &[0, 4];
const ZERO: &[u8] = &[0];

macro_rules! seven_slice_gpu {
    ($acc:literal, $one:literal/$onegb:literal, $onebig:literal/$onebiggb:literal, $two:literal/$twogb:literal, $three:literal/$threegb:literal, $four:literal/$fourgb:literal, $seven:literal/$sevengb:literal) => {
        Geometry {
            accelerator: $acc,
            compute_slices: 7,
            memory_slices: 8,
            profiles: &[
                p($one, 19, 1, 1, ONE, $onegb),
                p($onebig, 15, 1, 2, TWO, $onebiggb),
                p($two, 14, 2, 2, TWO_G, $twogb),
                p($three, 9, 3, 4, THREE_G, $threegb),
                p($four, 5, 4, 4, ZERO, $fourgb),
                p($seven, 0, 7, 8, ZERO, $sevengb),
            ],
            balanced: &[($one, 2), ($two, 1), ($three, 1)],
        }
    };
}

/// Every MIG-capable GPU gpupool knows.
pub static GEOMETRIES: &[Geometry] = &[
    seven_slice_gpu!(
        "nvidia-a100-40gb",
        "1g.5gb" / 5,
        "1g.10gb" / 10,
        "2g.10gb" / 10,
        "3g.20gb" / 20,
        "4g.20gb" / 20,
        "7g.40gb" / 40
    ),
    seven_slice_gpu!(
        "nvidia-a100-80gb",
        "1g.10gb" / 10,
        "1g.20gb" / 20,
        "2g.20gb" / 20,
        "3g.40gb" / 40,
        "4g.40gb" / 40,
        "7g.80gb" / 80
    ),
    seven_slice_gpu!(
        "nvidia-h100-80gb",
        "1g.10gb" / 10,
        "1g.20gb" / 20,
        "2g.20gb" / 20,
        "3g.40gb" / 40,
        "4g.40gb" / 40,
        "7g.80gb" / 80
    ),
    seven_slice_gpu!(
        "nvidia-h100-94gb",
        "1g.12gb" / 12,
        "1g.24gb" / 24,
        "2g.24gb" / 24,
        "3g.47gb" / 47,
        "4g.47gb" / 47,
        "7g.94gb" / 94
    ),
    seven_slice_gpu!(
        "nvidia-h200-141gb",
        "1g.18gb" / 18,
        "1g.35gb" / 35,
        "2g.35gb" / 35,
        "3g.71gb" / 71,
        "4g.71gb" / 71,
        "7g.141gb" / 141
    ),
    // A30: 4 compute and 4 memory slices.
    Geometry {
        accelerator: "nvidia-a30",
        compute_slices: 4,
        memory_slices: 4,
        profiles: &[
            p("1g.6gb", 14, 1, 1, &[0, 1, 2, 3], 6),
            p("2g.12gb", 5, 2, 2, &[0, 2], 12),
            p("4g.24gb", 0, 4, 4, ZERO, 24),
        ],
        balanced: &[("1g.6gb", 2), ("2g.12gb", 1)],
    },
];

/// The MIG geometry of a GPU type, if it has one.
pub fn geometry(accelerator: &str) -> Option<&'static Geometry> {
    GEOMETRIES.iter().find(|g| g.accelerator == accelerator)
}

/// How many instances of each profile one GPU is split into.
pub type Layout = Vec<(&'static Profile, u32)>;

/// Why a layout cannot be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigError {
    /// More instances of one profile than its start positions allow.
    TooManyOf {
        profile: &'static str,
        max: u32,
        starts: &'static [u8],
    },
    TooManyCompute {
        used: u32,
    },
    TooManyMemory {
        used: u32,
    },
    NoPlacement,
    Empty,
}

impl Geometry {
    pub fn profile(&'static self, name: &str) -> Option<&'static Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// Checks a layout against the slices and placement rules.
    pub fn check(&self, layout: &[(&'static Profile, u32)]) -> Result<(), MigError> {
        if layout.iter().all(|(_, n)| *n == 0) {
            return Err(MigError::Empty);
        }
        for (profile, n) in layout {
            let max = self.max_of(profile);
            if *n > max {
                return Err(MigError::TooManyOf {
                    profile: profile.name,
                    max,
                    starts: profile.starts,
                });
            }
        }
        let compute: u32 = layout
            .iter()
            .map(|(p, n)| u32::from(p.compute_slices) * n)
            .sum();
        if compute > u32::from(self.compute_slices) {
            return Err(MigError::TooManyCompute { used: compute });
        }
        let memory: u32 = layout
            .iter()
            .map(|(p, n)| u32::from(p.memory_slices) * n)
            .sum();
        if memory > u32::from(self.memory_slices) {
            return Err(MigError::TooManyMemory { used: memory });
        }
        // Largest first: they have the fewest places to go.
        let mut instances: Vec<&Profile> = layout
            .iter()
            .flat_map(|(p, n)| std::iter::repeat_n(*p, *n as usize))
            .collect();
        instances.sort_by_key(|p| std::cmp::Reverse((p.memory_slices, p.compute_slices)));
        if place(&instances, 0u16, self.memory_slices) {
            Ok(())
        } else {
            Err(MigError::NoPlacement)
        }
    }

    /// Where each instance of a (checked) layout sits: (profile, start slice),
    /// largest first, as the MIG manager creates them.
    pub fn placements(
        &self,
        layout: &[(&'static Profile, u32)],
    ) -> Option<Vec<(&'static Profile, u8)>> {
        let mut instances: Vec<&'static Profile> = layout
            .iter()
            .flat_map(|(p, n)| std::iter::repeat_n(*p, *n as usize))
            .collect();
        instances.sort_by_key(|p| std::cmp::Reverse((p.memory_slices, p.compute_slices)));
        let starts = assign(&instances, 0, self.memory_slices)?;
        Some(instances.into_iter().zip(starts).collect())
    }

    /// Layouts by name that fit this GPU (for error messages and docs).
    pub fn fitting_layouts(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .profiles
            .iter()
            .map(|p| format!("all-{}", p.name))
            .collect();
        out.push("all-balanced".into());
        out
    }

    /// The most instances of one profile that fit one GPU.
    pub fn max_of(&self, profile: &Profile) -> u32 {
        (1..=u32::from(self.memory_slices))
            .rev()
            .find(|&n| {
                n * u32::from(profile.compute_slices) <= u32::from(self.compute_slices)
                    && place(&vec![profile; n as usize], 0, self.memory_slices)
            })
            .unwrap_or(0)
    }
}

/// Backtracking placement over a bitmap of used memory slices.
fn place(instances: &[&Profile], used: u16, slices: u8) -> bool {
    assign(instances, used, slices).is_some()
}

/// The start slice of each instance, in order, if they can all be placed.
fn assign(instances: &[&Profile], used: u16, slices: u8) -> Option<Vec<u8>> {
    let Some((first, rest)) = instances.split_first() else {
        return Some(Vec::new());
    };
    first.starts.iter().find_map(|&start| {
        if start + first.memory_slices > slices {
            return None;
        }
        let mask = ((1u16 << first.memory_slices) - 1) << start;
        if used & mask != 0 {
            return None;
        }
        let mut starts = assign(rest, used | mask, slices)?;
        starts.insert(0, start);
        Some(starts)
    })
}

impl fmt::Display for MigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigError::TooManyOf {
                profile,
                max,
                starts,
            } => {
                let starts: Vec<_> = starts.iter().map(u8::to_string).collect();
                write!(
                    f,
                    "asks for more {profile} than fit: at most {max} per GPU ({profile} can only start at memory slice {})",
                    starts.join(", ")
                )
            }
            MigError::TooManyCompute { used } => write!(f, "uses {used} compute slices"),
            MigError::TooManyMemory { used } => write!(f, "uses {used} memory slices"),
            MigError::NoPlacement => f.write_str(
                "its instances cannot be placed together (MIG placement rules: each profile starts only at fixed memory slices)",
            ),
            MigError::Empty => f.write_str("has no instances"),
        }
    }
}
