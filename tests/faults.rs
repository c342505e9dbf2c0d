//! Fault injection: the engine under a faulty cloud (throttling, server
//! errors, answers lost after the call took effect, partial creates,
//! listings that lag behind launches, latency), CA's calls repeated (the
//! first call's cloud work free to run before the repeat), and process
//! crashes (kill -9: the fleet's in-flight cloud
//! work dropped at its next await and its memory lost) at any step, then a
//! restart on the same cloud. After every step and at the end, it checks:
//! no group's target past its max or under its min, no instance the cloud
//! runs that the engine does not track once the cloud's listing has caught
//! up, no group with more instances running than its target (created
//! twice), and every CA call answered as the spec says.
//!
//! `cargo nextest run --test faults` runs a bounded number of seeded runs
//! (each prints its summary); `GPUPOOL_SOAK_RUNS=2000 cargo nextest run
//! --release --test faults --no-capture` is the longer soak (README
//! "Guarantees").

mod common;

use common::kube_api::KubeApi;
use common::kube_faults::{Injected, Rates};
use gpupool::cluster::cloud_work::WorkMaps;
use gpupool::config::Config;
use gpupool::config::InterruptionConfig;
use gpupool::fleet::{Fleet, FleetError, NodeRef, NodeState, RateLimit, Snapshot, WorkJournal};
use gpupool::interrupt::{Engine, Journal, Outcome};
use gpupool::metrics::Metrics;
use gpupool::preprovision::Floors;
use gpupool::pricing::Prices;
use gpupool::webhook::{Kind, Notice, Source, Target};
use gpupool_cloud::{Clock, Cloud, InstanceState, ManualClock};
use gpupool_sim::{FaultCounts, SimCloud};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

const CONFIG: &str = "
cloud: sim
region: sim-east-1
sim:
  seed: 1
  spot_interruptions_per_hour: 0.5
  faults:
    throttle: 0.1
    server_error: 0.05
    lost_answer: 0.1
    partial_create: 0.2
    list_lag: 20s
    latency: 2s
node_groups:
  - id: l4
    min_size: 0
    max_size: 6
    instance_type: gpu-1x-l4
  - id: l4-spot
    min_size: 1
    max_size: 8
    instance_type: gpu-1x-l4
    capacity_type: spot-then-on-demand
  - id: h100
    min_size: 0
    max_size: 2
    instance_type: gpu-8x-h100-80gb
";

/// `GPUPOOL_FAULT_SEED` is set: one run, told step by step with the
/// engine's debug log.
fn debugging() -> bool {
    std::env::var_os("GPUPOOL_FAULT_SEED").is_some()
}

/// CA's loop period: each step moves the clock this far.
const STEP: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Summary {
    runs: u64,
    steps: u64,
    crashes: u64,
    ca_calls: u64,
    faults: FaultCounts,
    kube_faults: Injected,
    leaked: u64,
    created_twice: u64,
    /// Instances found past a group's max after a restart and deleted:
    /// the terminate of a cancelled slot's late instance cut short by
    /// the crash (the engine's safety net; see `trim_past_max`).
    past_max_deleted: u64,
    /// Interruption notices that started an operation.
    interruptions: u64,
    /// Replacements CA was asked for past one per operation that asked.
    double_replacements: u64,
    violations: Vec<String>,
}

impl Summary {
    fn print(&self) {
        let f = &self.faults;
        println!(
            "fault suite: {} runs, {} steps, {} crashes, {} CA calls; faults injected: {} ({} throttled, {} server errors, {} lost answers, {} partial creates, {} hidden from lists; Kubernetes API: {} throttled, {} server errors, {} lost answers); interruptions: {}; instances leaked: {}; created twice: {}; double replacements: {}; found past max and deleted: {}; invariant violations: {}",
            self.runs,
            self.steps,
            self.crashes,
            self.ca_calls,
            f.total() + self.kube_faults.total(),
            f.throttled,
            f.server_errors,
            f.lost_answers,
            f.partial_creates,
            f.hidden_from_lists,
            self.kube_faults.throttled,
            self.kube_faults.server_errors,
            self.kube_faults.lost_answers,
            self.interruptions,
            self.leaked,
            self.created_twice,
            self.double_replacements,
            self.past_max_deleted,
            self.violations.len()
        );
        for v in self.violations.iter().take(20) {
            println!("  violation: {v}");
        }
    }
}

struct World {
    config: Config,
    clock: ManualClock,
    cloud: Arc<SimCloud>,
    /// Survives crashes, as the ConfigMaps do.
    journal: WorkJournal,
    /// Kept across restarts, to count what every fleet of the run did.
    metrics: Arc<Metrics>,
    fleet: Arc<Fleet>,
    /// The interruption engine, when the suite interrupts instances.
    ops: Option<Ops>,
    seed: u64,
    restarts: u64,
}

/// The interruption engine of one process, on a journal that outlives it.
struct Ops {
    journal: Journal,
    engine: Arc<Engine>,
    cancel: CancellationToken,
}

impl Ops {
    /// Starts an engine on `journal`, before the fleet's first sync, which
    /// takes up what it holds, as `serve` does.
    fn start(fleet: &Arc<Fleet>, metrics: &Arc<Metrics>, journal: Journal) -> Self {
        let floors = Arc::new(Floors::new(
            gpupool::preprovision::plans(fleet.specs()),
            Vec::new(),
            fleet.boots().clone(),
            metrics.clone(),
        ));
        let cancel = CancellationToken::new();
        let engine = Engine::new(
            fleet.clone(),
            floors,
            journal.clone(),
            None,
            metrics.clone(),
            InterruptionConfig::default(),
            cancel.clone(),
        );
        Self {
            journal,
            engine,
            cancel,
        }
    }

    /// kill -9: every operation task stops at its next await.
    async fn kill(self) -> Journal {
        self.cancel.cancel();
        self.engine.stopped().await;
        self.journal
    }
}

impl World {
    async fn new(seed: u64, mix: Mix<'_>) -> Self {
        let mut config = Config::from_yaml(CONFIG).expect("config");
        config.sim.seed = Some(seed);
        if !mix.list_lag {
            config.sim.faults.list_lag = Duration::ZERO;
        }
        if mix.interruptions {
            // Only the notices the suite sends. A member the cloud stops
            // without one lowers the replacements' minSize once it is gone,
            // but not when that happens across a restart (nothing of it is
            // journalled): CA then buys a node for it, which would count
            // as a second replacement (README, "Not guaranteed yet").
            config.sim.spot_interruptions_per_hour = 0.0;
        }
        // Both journals in ConfigMaps of the faulty API server, or in
        // memory that survives the crashes.
        let (journal, operations) = match mix.kube {
            None => (WorkJournal::default(), Journal::memory()),
            Some(kube) => {
                kube.api.faults.set(kube.rates, seed);
                let client = gpupool::cluster::connect(&kube.config)
                    .await
                    .expect("client");
                let namespace = format!("run-{seed}");
                (
                    WorkJournal::cluster(WorkMaps::new(client.clone(), &namespace)),
                    Journal::Cluster(Arc::new(gpupool::cluster::journal::ConfigMaps::new(
                        client, &namespace,
                    ))),
                )
            }
        };
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let cloud = Arc::new(
            SimCloud::new(config.sim.clone(), Arc::new(clock.clone())).expect("sim cloud"),
        );
        let metrics = Arc::new(Metrics::new());
        let fleet = start(&config, &clock, &cloud, &journal, &metrics, ids(seed, 0)).await;
        let ops = mix
            .interruptions
            .then(|| Ops::start(&fleet, &metrics, operations));
        Self {
            config,
            clock,
            cloud,
            journal,
            metrics,
            fleet,
            ops,
            seed,
            restarts: 0,
        }
    }

    /// kill -9 and a restart: the fleet's cloud work is dropped at its next
    /// await, its memory is gone, and a new one starts on the same cloud.
    async fn crash(&mut self) {
        if debugging() {
            for (g, view) in self.fleet.snapshot().groups.iter().enumerate() {
                let members: Vec<_> = view
                    .instances
                    .iter()
                    .map(|i| format!("{} {:?}", i.provider_id, i.state))
                    .collect();
                eprintln!(
                    "crash: group {g} target {} members {members:?}",
                    view.target
                );
            }
        }
        let ops = match self.ops.take() {
            Some(ops) => Some(ops.kill().await),
            None => None,
        };
        self.fleet.shutdown(Duration::ZERO).await;
        self.restarts += 1;
        let ids = ids(self.seed, self.restarts);
        self.fleet = start(
            &self.config,
            &self.clock,
            &self.cloud,
            &self.journal,
            &self.metrics,
            ids,
        )
        .await;
        self.ops = ops.map(|journal| Ops::start(&self.fleet, &self.metrics, journal));
    }
}

/// The seed of a run's fleet's ids after `restarts` restarts: each
/// restart draws ids of its own, as a restarted process would.
fn ids(seed: u64, restarts: u64) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(restarts)
}

async fn start(
    config: &Config,
    clock: &ManualClock,
    cloud: &Arc<SimCloud>,
    journal: &WorkJournal,
    metrics: &Arc<Metrics>,
    ids: u64,
) -> Arc<Fleet> {
    let catalog = gpupool::catalog::merge(
        gpupool::catalog::builtin(config.cloud),
        cloud.instance_types().await.expect("types"),
    );
    let zones = cloud.zones().await.expect("zones");
    let specs = config.validate(&catalog, Some(&zones)).expect("valid");
    let unlimited = NonZeroU32::new(1_000_000).expect("nonzero");
    let fleet = Fleet::new(
        cloud.clone(),
        Arc::new(clock.clone()),
        metrics.clone(),
        Arc::new(Prices::new(gpupool::pricing::table::book(
            config.cloud,
            &config.region,
        ))),
        specs,
        RateLimit {
            per_second: unlimited,
            burst: unlimited,
            offering_cooldown: Duration::from_secs(60),
        },
        journal.clone(),
    );
    fleet.seed_ids(ids);
    fleet
}

/// One of CA's calls, as its gRPC handler makes it, checked against what
/// the spec allows the answer to be. Gives the group a DecreaseTargetSize
/// lowered, if one did (the spec lets it cancel requests under min).
async fn ca_call(
    fleet: &Arc<Fleet>,
    rng: &mut StdRng,
    interrupting: bool,
    violations: &mut Vec<String>,
) -> Option<usize> {
    let specs = fleet.specs();
    let g = rng.random_range(0..specs.len());
    let id = specs[g].id.to_string();
    let min = specs[g].min_size;
    let snapshot = fleet.snapshot();
    let view = snapshot.groups[g].clone();
    drop(snapshot);
    let op = rng.random_range(0..10);
    if debugging() {
        eprintln!("CA call {op} on {id}: target {}", view.target);
    }
    match op {
        // IncreaseSize, sometimes past max (refused), sometimes repeated as
        // a retrying CA would: each call is its own task, so the first
        // one's cloud work may run before the repeat lands.
        0..=4 => {
            let delta = rng.random_range(1..=3);
            let twice = rng.random_bool(0.3);
            let a = fleet.clone();
            let b = fleet.clone();
            let (id_a, id_b) = (id.clone(), id.clone());
            let first = tokio::spawn(async move { a.increase_size(&id_a, delta) });
            let second = twice.then(|| tokio::spawn(async move { b.increase_size(&id_b, delta) }));
            for result in std::iter::once(first).chain(second) {
                match result.await.expect("joins") {
                    Ok(()) | Err(FleetError::AboveMax { .. } | FleetError::NotSynced(_)) => {
                        if debugging() {
                            eprintln!("  increase {id} +{delta} twice={twice}");
                        }
                    }
                    Err(e) => violations.push(format!("IncreaseSize {id} +{delta}: {e}")),
                }
            }
        }
        // DeleteNodes of some running nodes, as CA scales down (it never
        // goes under min; when it tries, the call is refused).
        5..=7 => {
            let running: Vec<_> = view
                .instances
                .iter()
                .filter(|i| i.state == NodeState::Running)
                .collect();
            if running.is_empty() {
                return None;
            }
            let n = rng.random_range(1..=running.len().min(2));
            // CA scales no group below the minSize it is told, which
            // replacements raise.
            if interrupting && (view.target as usize) < n + min.max(view.replacement_floor) as usize
            {
                return None;
            }
            let nodes: Vec<NodeRef> = running[..n]
                .iter()
                .map(|i| NodeRef {
                    provider_id: i.provider_id.to_string(),
                    name: i.node_name.clone().unwrap_or_default(),
                })
                .collect();
            match fleet.delete_nodes(&id, &nodes).await {
                Ok(()) => {}
                // Against the members: instances the cloud stopped are
                // still in the target until gone, but going anyway.
                Err(FleetError::BelowMin { .. })
                    if view
                        .instances
                        .iter()
                        .filter(|i| i.state != NodeState::Deleting)
                        .count()
                        < n + min as usize => {}
                // A node gone meanwhile is named in the refusal; before a
                // restarted engine's first listing, every change is refused,
                // and so is a deletion the journal cannot take.
                Err(
                    FleetError::NodeNotInGroup { .. }
                    | FleetError::NotSynced(_)
                    | FleetError::JournalUnavailable { .. },
                ) => {}
                Err(e) => violations.push(format!("DeleteNodes {id}: {e}")),
            }
        }
        // DecreaseTargetSize, of slots not yet created when CA gets it
        // right (requested, no instance yet: no zone).
        _ => {
            let unfulfilled = |view: &gpupool::fleet::GroupView| {
                view.instances
                    .iter()
                    .filter(|i| i.state == NodeState::Creating && i.zone.is_none())
                    .count()
            };
            let creating = unfulfilled(&view);
            // Cancelling a replacement's slot would make CA ask for it
            // again: not what this suite counts.
            if interrupting && !view.leaving.is_empty() {
                return None;
            }
            let delta: i32 = -rng.random_range(1..=3);
            match fleet.decrease_target_size(&id, delta).await {
                Ok(()) => return Some(g),
                // Too many: asked so, or the slots were filled while the
                // call waited for its journal entry.
                Err(FleetError::WouldDeleteNodes { .. })
                    if (-delta) as usize
                        > creating.min(unfulfilled(&fleet.snapshot().groups[g])) => {}
                Err(FleetError::NotSynced(_) | FleetError::JournalUnavailable { .. }) => {}
                Err(e) => violations.push(format!("DecreaseTargetSize {id} {delta}: {e}")),
            }
        }
    }
    None
}

/// What must hold whenever CA could look: no target past max, and none
/// taken under min but by DecreaseTargetSize (a group may start under its
/// min, and cancelled requests may leave it there; CA raises it). `last`:
/// each group's target at the last check, 0 for a group just decreased.
fn check_targets(fleet: &Fleet, last: &mut Vec<u32>, at: &str, violations: &mut Vec<String>) {
    let snapshot = fleet.snapshot();
    last.resize(snapshot.groups.len(), 0);
    for ((spec, view), last) in fleet.specs().iter().zip(&snapshot.groups).zip(last) {
        if view.target > spec.max_size || (view.target < spec.min_size && view.target < *last) {
            violations.push(format!(
                "{at}: group {} target {} (was {last}) outside [{}, {}]",
                spec.id, view.target, spec.min_size, spec.max_size
            ));
        }
        *last = view.target;
    }
}

/// Once the cloud's listing has caught up: every instance the cloud runs is
/// tracked, and no group runs more than its target.
async fn check_fleet(w: &World, at: &str, summary: &mut Summary) {
    let live: Vec<_> = w
        .cloud
        .list_instances()
        .await
        .into_iter()
        .flatten()
        .filter(|i| matches!(i.state, InstanceState::Pending | InstanceState::Running))
        .collect();
    let snapshot = w.fleet.snapshot();
    let tracked: BTreeSet<String> = snapshot
        .groups
        .iter()
        .flat_map(|v| v.instances.iter().map(|i| i.provider_id.to_string()))
        .collect();
    for i in &live {
        if !tracked.contains(i.provider_id.as_str()) {
            summary.leaked += 1;
            summary
                .violations
                .push(format!("{at}: instance {} ({}) untracked", i.id, i.group));
        }
    }
    let mut per_group: BTreeMap<&str, u32> = BTreeMap::new();
    for i in &live {
        *per_group.entry(i.group.as_str()).or_default() += 1;
    }
    for (spec, view) in w.fleet.specs().iter().zip(&snapshot.groups) {
        let running = per_group.get(spec.id.as_str()).copied().unwrap_or(0);
        let leaving = view
            .instances
            .iter()
            .filter(|i| i.state == NodeState::Deleting)
            .count() as u32;
        if running > view.target + leaving {
            summary.created_twice += u64::from(running - view.target - leaving);
            summary.violations.push(format!(
                "{at}: group {} runs {running} instances for a target of {} ({leaving} deleting)",
                spec.id, view.target
            ));
        }
    }
}

/// Per group: the instances whose operation asked CA for a replacement,
/// and the nodes CA bought because the minSize it was told was raised past
/// the configured min.
#[derive(Default)]
struct Replacements {
    asked: BTreeMap<usize, BTreeSet<String>>,
    bought: BTreeMap<usize, u64>,
    /// Failed creates a restart forgot: they were in the target a
    /// replacement's minSize was counted on top of, so CA buys them again
    /// to reach it. Those are refills, not replacements.
    refills: BTreeMap<usize, u32>,
}

impl Replacements {
    /// The process was killed with the groups as `before`; the restart
    /// forgets the slots it finds nothing of in the journal: failed
    /// creates (nothing was made) and requests whose journal entry could
    /// not be written (never sent). CA asked for them; it asks again.
    async fn crashed(&mut self, before: &Snapshot, journal: &WorkJournal) {
        let (open, _) = read(|| journal.list(), "the work journal").await;
        let open: BTreeSet<String> = open.into_iter().map(|r| r.request_id.to_string()).collect();
        for (g, view) in before.groups.iter().enumerate() {
            let forgotten = view
                .instances
                .iter()
                .filter(|i| {
                    i.error.is_some()
                        || placeholder_request(i.provider_id.as_str())
                            .is_some_and(|r| !open.contains(r))
                })
                .count();
            *self.refills.entry(g).or_default() += forgotten as u32;
        }
    }

    /// CA scaled `g` up by `n` to the minSize it was told: what is not a
    /// refill is a replacement.
    fn bought(&mut self, g: usize, n: u32) {
        let refills = self.refills.entry(g).or_default();
        let refilled = n.min(*refills);
        *refills -= refilled;
        *self.bought.entry(g).or_default() += u64::from(n - refilled);
    }

    fn asked(&mut self, fleet: &Fleet, engine: &Engine) {
        for op in engine.operations() {
            if op.want.is_some()
                && let Ok(g) = fleet.group_index(&op.group)
            {
                self.asked.entry(g).or_default().insert(op.provider_id);
            }
        }
    }

    /// More nodes bought than operations that asked: a second replacement
    /// for one interruption.
    fn doubles(&self, fleet: &Fleet, seed: u64, violations: &mut Vec<String>) -> u64 {
        let mut doubles = 0;
        for (&g, &bought) in &self.bought {
            let asked = self.asked.get(&g).map_or(0, |a| a.len() as u64);
            if bought > asked {
                doubles += bought - asked;
                violations.push(format!(
                    "seed {seed}: group {} bought {bought} replacements for {asked} interruptions",
                    fleet.specs()[g].id
                ));
            }
        }
        doubles
    }
}

/// The request of a slot not filled yet, from its placeholder providerID
/// (`<cloud>:///placeholder/<group>/<request>-<n>`).
fn placeholder_request(provider_id: &str) -> Option<&str> {
    let (_, slot) = provider_id.split_once(":///placeholder/")?;
    let (_, slot) = slot.split_once('/')?;
    Some(slot.rsplit_once('-')?.0)
}

/// A spot interruption notice for a random running instance, sometimes
/// delivered twice (EventBridge and SNS both deliver it): the second
/// must start nothing.
async fn interrupt(w: &World, ops: &Ops, rng: &mut StdRng, step: u64, summary: &mut Summary) {
    if !rng.random_bool(0.15) {
        return;
    }
    let snapshot = w.fleet.snapshot();
    let g = rng.random_range(0..snapshot.groups.len());
    let view = &snapshot.groups[g];
    let running: Vec<_> = view
        .instances
        .iter()
        .filter(|i| i.state == NodeState::Running)
        .filter(|i| !view.leaving.iter().any(|(p, _)| *p == i.provider_id))
        .collect();
    if running.is_empty() {
        return;
    }
    let victim = running[rng.random_range(0..running.len())]
        .provider_id
        .to_string();
    let now = w.clock.now();
    let notice = Notice {
        source: Source::Aws,
        kind: Kind::Interruption,
        target: Target::ProviderId(victim.clone()),
        deadline: Some(now + Duration::from_secs(120)),
        id: format!("notice-{step}"),
    };
    drop(snapshot);
    if debugging() {
        eprintln!("interruption notice for {victim}");
    }
    if let Outcome::Started(_) = ops.engine.notice(&notice, now) {
        summary.interruptions += 1;
        if rng.random_bool(0.3) {
            let again = ops.engine.notice(&notice, now);
            if matches!(again, Outcome::Started(_)) {
                summary.violations.push(format!(
                    "step {step}: a redelivered notice for {victim} started a second operation"
                ));
            }
        }
    }
}

/// CA, run with `--enforce-node-group-min-size`, scales each group up to
/// the minSize it is told; what that adds past the configured min is a
/// replacement.
async fn ca_enforces_min(fleet: &Arc<Fleet>, r: &mut Replacements, violations: &mut Vec<String>) {
    let snapshot = fleet.snapshot();
    let groups = snapshot.groups.to_vec();
    drop(snapshot);
    for (g, view) in groups.iter().enumerate() {
        let spec = &fleet.specs()[g];
        let min = spec.min_size.max(view.replacement_floor);
        if view.target >= min {
            continue;
        }
        let delta = min - view.target;
        match fleet.increase_size(spec.id.as_str(), delta as i32) {
            Ok(()) => {
                let replacing = view
                    .replacement_floor
                    .saturating_sub(view.target.max(spec.min_size));
                r.bought(g, delta.min(replacing));
                if debugging() {
                    eprintln!(
                        "  CA enforces minSize {min} on {} (target {}, leaving {:?}): {} counted as replacements or refills",
                        spec.id,
                        view.target,
                        view.leaving,
                        delta.min(replacing)
                    );
                }
            }
            Err(FleetError::NotSynced(_) | FleetError::AboveMax { .. }) => {}
            Err(e) => violations.push(format!("IncreaseSize {} to minSize: {e}", spec.id)),
        }
    }
}

/// The sum of a counter's series in the metrics' text exposition.
fn counted(metrics: &Metrics, name: &str) -> u64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Reads until a read succeeds: the faulty API server sheds some.
async fn read<T, E: std::fmt::Debug, F: Future<Output = Result<T, E>>>(
    mut list: impl FnMut() -> F,
    what: &str,
) -> T {
    let mut last = list().await;
    for _ in 0..20 {
        if last.is_ok() {
            break;
        }
        last = list().await;
    }
    last.unwrap_or_else(|e| panic!("{what} not read in 20 tries: {e:?}"))
}

/// Syncs until one succeeds (the listing may be throttled).
async fn sync(fleet: &Arc<Fleet>) {
    for _ in 0..20 {
        if fleet.sync().await.is_ok() {
            return;
        }
    }
    panic!("twenty syncs in a row failed: the fault rates leave no room to sync");
}

/// How a suite's runs fault.
#[derive(Clone, Copy)]
struct Mix<'a> {
    /// Chance of a crash and restart at each step.
    crash_rate: f64,
    /// Whether listings lag behind launches.
    list_lag: bool,
    /// Whether instances get interruption notices (the interruption
    /// engine runs, its journal outliving crashes).
    interruptions: bool,
    /// The create journal in ConfigMaps of a faulty Kubernetes API server
    /// (else in memory that survives the crashes).
    kube: Option<&'a Kube>,
}

/// The local Kubernetes API server with its fault rates.
struct Kube {
    api: KubeApi,
    rates: Rates,
    config: gpupool::config::KubernetesConfig,
    _dir: tempfile::TempDir,
}

impl Kube {
    async fn start(rates: Rates) -> Self {
        let api = KubeApi::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let config: gpupool::config::KubernetesConfig = serde_yaml::from_str(&format!(
            "kubeconfig: {}",
            api.kubeconfig(dir.path()).display()
        ))
        .expect("kubernetes config");
        Self {
            api,
            rates,
            config,
            _dir: dir,
        }
    }
}

async fn one_run(seed: u64, steps: u64, mix: Mix<'_>, summary: &mut Summary) {
    if debugging() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("gpupool=debug")
            .with_test_writer()
            .try_init();
    }
    let mut w = World::new(seed, mix).await;
    let mut rng = StdRng::seed_from_u64(seed ^ 0xca11);
    let mut last = Vec::new();
    let mut replacements = Replacements::default();
    for step in 0..steps {
        w.clock.advance(STEP);
        let _ = w.fleet.sync().await;
        if let Some(ops) = &w.ops {
            interrupt(&w, ops, &mut rng, step, summary).await;
            ca_enforces_min(&w.fleet, &mut replacements, &mut summary.violations).await;
        }
        for _ in 0..rng.random_range(0..3) {
            if debugging() {
                let s = w.fleet.snapshot();
                let t: Vec<_> = s
                    .groups
                    .iter()
                    .map(|v| (v.target, v.instances.len()))
                    .collect();
                eprintln!("step {step}: targets {t:?}");
            }
            if let Some(g) =
                ca_call(&w.fleet, &mut rng, w.ops.is_some(), &mut summary.violations).await
            {
                last.resize(w.fleet.specs().len(), 0);
                last[g] = 0;
            }
            summary.ca_calls += 1;
        }
        check_targets(
            &w.fleet,
            &mut last,
            &format!("seed {seed} step {step}"),
            &mut summary.violations,
        );
        if let Some(ops) = &w.ops {
            replacements.asked(&w.fleet, &ops.engine);
        }
        // kill -9 at any point: sometimes while cloud work is under way.
        if mix.crash_rate > 0.0 && rng.random_bool(mix.crash_rate) {
            if rng.random_bool(0.5) {
                tokio::task::yield_now().await;
            }
            let before = w.fleet.snapshot();
            w.crash().await;
            if w.ops.is_some() {
                replacements.crashed(&before, &w.journal).await;
            }
            summary.crashes += 1;
            // A restart reads its targets off the cloud again.
            last.clear();
        }
        summary.steps += 1;
    }
    // Let the cloud's answers and listing catch up: past the listing lag
    // and the engine's grace for instances missing from a listing, with
    // cloud work settled.
    for _ in 0..30 {
        w.clock.advance(STEP);
        sync(&w.fleet).await;
        w.fleet.settle().await;
        if let Some(ops) = &w.ops {
            ca_enforces_min(&w.fleet, &mut replacements, &mut summary.violations).await;
            replacements.asked(&w.fleet, &ops.engine);
            tokio::task::yield_now().await;
        }
    }
    sync(&w.fleet).await;
    check_targets(
        &w.fleet,
        &mut last,
        &format!("seed {seed} end"),
        &mut summary.violations,
    );
    check_fleet(&w, &format!("seed {seed} end"), summary).await;
    if let Some(ops) = &w.ops {
        summary.double_replacements +=
            replacements.doubles(&w.fleet, seed, &mut summary.violations);
        // Every operation resumed after each crash and ran to its end.
        for op in ops.engine.operations() {
            summary.violations.push(format!(
                "seed {seed} end: interruption operation for {} still at {:?}",
                op.provider_id, op.step
            ));
        }
        let journalled = read(|| ops.journal.list(), "the interruption journal").await;
        if !journalled.is_empty() {
            let left: Vec<_> = journalled
                .iter()
                .map(|op| format!("{} at {:?}", op.provider_id, op.step))
                .collect();
            summary.violations.push(format!(
                "seed {seed} end: interruption operations left in the journal: {left:?}"
            ));
        }
    }
    let f = w.cloud.faults_injected();
    let s = &mut summary.faults;
    s.throttled += f.throttled;
    s.server_errors += f.server_errors;
    s.lost_answers += f.lost_answers;
    s.partial_creates += f.partial_creates;
    s.hidden_from_lists += f.hidden_from_lists;
    summary.past_max_deleted += counted(&w.metrics, "gpupool_node_group_past_max_deletions_total");
    if let Some(kube) = mix.kube {
        summary.kube_faults = kube.api.faults.injected();
    }
    summary.runs += 1;
    w.fleet.shutdown(Duration::ZERO).await;
}

/// Runs the suite's seeds (`GPUPOOL_SOAK_RUNS`, default 40; or the one
/// `GPUPOOL_FAULT_SEED`) and checks the summary.
async fn suite(name: &str, mix: Mix<'_>, default_runs: u64) {
    let runs: u64 = std::env::var("GPUPOOL_SOAK_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default_runs);
    // GPUPOOL_FAULT_SEED=N runs that seed alone (to debug a violation).
    let seeds = match std::env::var("GPUPOOL_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => seed..seed + 1,
        None => 0..runs,
    };
    let mut summary = Summary::default();
    for seed in seeds {
        one_run(seed, 120, mix, &mut summary).await;
    }
    print!("{name}: ");
    summary.print();
    assert!(summary.faults.total() > 0, "faults were injected");
    assert_eq!(
        summary.crashes > 0,
        mix.crash_rate > 0.0,
        "crashes as asked"
    );
    assert_eq!(summary.leaked, 0, "instances leaked");
    assert_eq!(summary.created_twice, 0, "instances created twice");
    assert!(
        summary.violations.is_empty(),
        "invariant violations: {:#?}",
        summary.violations
    );
}

#[tokio::test(start_paused = true)]
async fn cloud_and_ca_faults_keep_every_invariant() {
    suite(
        "cloud and CA faults",
        Mix {
            crash_rate: 0.0,
            list_lag: true,
            interruptions: false,
            kube: None,
        },
        40,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn crashes_and_restarts_keep_every_invariant() {
    suite(
        "crashes, cloud and CA faults, listings current",
        Mix {
            crash_rate: 0.03,
            list_lag: false,
            interruptions: false,
            kube: None,
        },
        40,
    )
    .await;
}

/// A restart whose first listing misses instances launched just before the
/// crash would report a target too low, and CA would raise it again: the
/// create journal takes the requests up again instead.
#[tokio::test(start_paused = true)]
async fn crashes_while_listings_lag_keep_every_invariant() {
    suite(
        "crashes while listings lag",
        Mix {
            crash_rate: 0.03,
            list_lag: true,
            interruptions: false,
            kube: None,
        },
        40,
    )
    .await;
}

/// The journal in ConfigMaps while the Kubernetes API server sheds,
/// fails and loses answers to writes: a create whose entry cannot be
/// written waits for the next sync, a DeleteNodes or DecreaseTargetSize
/// whose entry cannot be written (its retries spent) is refused, and a
/// restart that cannot read the journal accepts no change until it can.
/// The API server is a real HTTP server on loopback; under tokio's paused
/// clock a loopback answer is ready before the clock moves, so a run
/// replays by seed like the others.
#[tokio::test(start_paused = true)]
async fn crashes_with_the_journal_in_a_faulty_kubernetes_api_keep_every_invariant() {
    faulty_kubernetes_suite(
        "crashes while listings lag, journal in a faulty Kubernetes API",
        false,
    )
    .await;
}

/// The crash suite (listings lagging) with the journals in ConfigMaps of
/// a Kubernetes API server that sheds, fails and loses answers to writes.
async fn faulty_kubernetes_suite(name: &str, interruptions: bool) {
    let kube = Kube::start(Rates {
        throttle: 0.1,
        server_error: 0.05,
        lost_answer: 0.1,
        latency: Duration::from_millis(2),
    })
    .await;
    suite(
        name,
        Mix {
            crash_rate: 0.03,
            list_lag: true,
            interruptions,
            kube: Some(&kube),
        },
        40,
    )
    .await;
    assert!(
        kube.api.faults.injected().total() > 0,
        "Kubernetes API faults were injected"
    );
}

/// Spot interruptions (notices, some delivered twice) while CA scales,
/// the cloud faults and the process is killed: every operation is resumed
/// from its journal after each crash and runs to its end, and CA is asked
/// for one replacement per interrupted instance, never two: a restart
/// reports the journalled minSize from its first answer, lowered for the
/// marked instances that left while it was down.
#[tokio::test(start_paused = true)]
async fn interruptions_with_crashes_get_one_replacement_each() {
    suite(
        "interruptions with crashes while listings lag",
        Mix {
            crash_rate: 0.03,
            list_lag: true,
            interruptions: true,
            kube: None,
        },
        40,
    )
    .await;
}

/// The interruption suite with both journals (cloud work and interruption
/// operations) in ConfigMaps of a Kubernetes API server that sheds, fails
/// and loses answers to writes.
#[tokio::test(start_paused = true)]
async fn interruptions_with_the_journals_in_a_faulty_kubernetes_api_get_one_replacement_each() {
    faulty_kubernetes_suite(
        "interruptions with crashes, journals in a faulty Kubernetes API",
        true,
    )
    .await;
}
