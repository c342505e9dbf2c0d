//! The node groups' live state: target sizes, instances, and the cloud work
//! that keeps them true.
//!
//! Writers (`increase_size`, `delete_nodes`, cloud results, syncs) change the
//! authoritative [`GroupState`]s under one lock and publish a fresh immutable
//! [`Snapshot`]; every RPC reads the snapshot without locking. Cloud calls run in
//! background tasks, rate-limited, never inside an RPC that answers CA per node.

mod deletions;
mod error;
mod group;
pub mod journal;
pub mod offerings;
mod resume;
mod snapshot;

pub use error::{FleetError, SyncError};
pub use group::{
    Deleting, GroupState, LIST_GRACE, Leaving, Member, NodeRef, NotMember, Release, Want, Why, Work,
};
pub use journal::{Deletion, WorkJournal};
pub use offerings::Offering;
pub use resume::{Mark, Resumes};
pub use snapshot::{GroupView, InstanceView, NodeState, Snapshot};

use crate::boot::Boots;
use crate::config::GroupSpec;
use crate::metrics::Metrics;
use crate::pricing::{PriceBook, Prices};
use arc_swap::ArcSwap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use gpupool_cloud::{Clock, Cloud, CloudError, GroupId, RequestId};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio_util::task::TaskTracker;

/// Longest a DeleteNodes or DecreaseTargetSize waits for its journal entry
/// (one write, tried again while the API server sheds or fails it): well
/// inside CA's 5 s deadline.
pub const JOURNAL_WAIT: Duration = Duration::from_secs(2);

/// What [`Fleet::release`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// Deleted now; departing until the cloud reports it gone.
    Now,
    /// Already on its way out; departing until gone.
    AlreadyGoing,
    /// Not the group's any more.
    Gone,
}

/// The fleet of all node groups.
pub struct Fleet {
    cloud: Arc<dyn Cloud>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    prices: Arc<Prices>,
    specs: Vec<Arc<GroupSpec>>,
    index: HashMap<GroupId, usize>,
    state: Mutex<Inner>,
    snapshot: ArcSwap<Snapshot>,
    limiter: DefaultDirectRateLimiter,
    /// One sync at a time, so an older listing never lands after a newer one.
    sync_lock: tokio::sync::Mutex<()>,
    tasks: TaskTracker,
    /// Ends cloud work still under way when shutdown's wait runs out: as a
    /// process exit would, so that none of it goes on beside a successor.
    abandon: tokio_util::sync::CancellationToken,
    boots: Arc<Boots>,
    /// Offerings skipped for a while after an interruption or a capacity
    /// error.
    unavailable: offerings::Unavailable,
    cooldown: Duration,
    journal: WorkJournal,
    /// Draws request ids and deletion keys: from the OS's entropy, or
    /// seeded ([`Fleet::seed_ids`]) so a fault suite's run replays.
    ids: Mutex<rand::rngs::StdRng>,
    /// A part whose journalled marks the next sync takes up.
    resumes: resume::Pending,
}

struct Inner {
    groups: Vec<GroupState>,
    synced_at: Option<SystemTime>,
    /// The journal was read and its open entries taken up (at the first
    /// sync).
    restored: bool,
    /// Journalled deletions not settled yet.
    deletions: deletions::Deletions,
    /// Hourly cost of each group's instances, for the metrics.
    costs: Vec<f64>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("cloud", &self.cloud)
            .field("groups", &self.specs.len())
            .finish_non_exhaustive()
    }
}

/// Cloud call budget.
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
    /// How long an offering is skipped after an interruption or a capacity
    /// error.
    pub offering_cooldown: Duration,
}

impl Fleet {
    pub fn new(
        cloud: Arc<dyn Cloud>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        prices: Arc<Prices>,
        specs: Vec<GroupSpec>,
        rate: RateLimit,
        journal: WorkJournal,
    ) -> Arc<Self> {
        let specs: Vec<_> = specs.into_iter().map(Arc::new).collect();
        let index = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        let groups: Vec<_> = specs
            .iter()
            .map(|s| GroupState::new(s.clone(), cloud.provider_name()))
            .collect();
        let snapshot = Snapshot::build(&groups, None);
        // Every group's series from the start: a publish touches only the
        // groups whose view changed, and an empty group's may never.
        for (spec, view) in specs.iter().zip(&snapshot.groups) {
            metrics.set_group(spec.id.as_str(), view.counts);
            metrics.set_group_cost(spec.id.as_str(), 0.0);
        }
        let costs = vec![0.0; specs.len()];
        // A boot ends at allocatable GPUs where the device plugin advertises
        // them; DRA and CPU-only groups end at Ready.
        let needs_gpu = specs
            .iter()
            .map(|s| s.instance_type.gpu.is_some() && !s.annotations.dra)
            .collect();
        let boots = Arc::new(Boots::new(&specs, needs_gpu, metrics.clone()));
        Arc::new(Self {
            cloud,
            clock,
            metrics,
            prices,
            specs,
            index,
            state: Mutex::new(Inner {
                groups,
                synced_at: None,
                restored: false,
                deletions: deletions::Deletions::default(),
                costs,
            }),
            snapshot: ArcSwap::from_pointee(snapshot),
            limiter: RateLimiter::direct(
                Quota::per_second(rate.per_second).allow_burst(rate.burst),
            ),
            sync_lock: tokio::sync::Mutex::new(()),
            tasks: TaskTracker::new(),
            abandon: tokio_util::sync::CancellationToken::new(),
            boots,
            unavailable: offerings::Unavailable::default(),
            cooldown: rate.offering_cooldown,
            journal,
            ids: Mutex::new(rand::SeedableRng::from_os_rng()),
            resumes: resume::Pending::default(),
        })
    }

    /// Draws the ids of this fleet's requests and deletions from `seed`
    /// from now on, so a seeded fault-suite run replays exactly. A
    /// restarted fleet needs a seed of its own: ids must not repeat.
    pub fn seed_ids(&self, seed: u64) {
        *self.ids.lock().unwrap_or_else(|p| p.into_inner()) =
            rand::SeedableRng::seed_from_u64(seed);
    }

    /// A fresh id for work of `group`: unique, as the journal's entries
    /// and the cloud's idempotency keys need.
    fn new_id(&self, group: &GroupId) -> String {
        let n: u64 = rand::Rng::random(&mut *self.ids.lock().unwrap_or_else(|p| p.into_inner()));
        format!("{group}-{n:016x}")
    }

    /// Has the next sync read `part`'s journalled marks and apply them with
    /// the listing, under the lock that publishes it. Registered before
    /// the first sync, the marks are in every answer CA gets.
    pub fn resume_with(&self, part: std::sync::Weak<dyn Resumes>) {
        self.resumes.set(part);
    }

    /// The groups as configured, in config order.
    pub fn specs(&self) -> &[Arc<GroupSpec>] {
        &self.specs
    }

    /// Index of a group id, or NOT_FOUND.
    pub fn group_index(&self, id: &str) -> Result<usize, FleetError> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| FleetError::UnknownGroup(id.to_owned()))
    }

    /// The current view. Cheap; never blocks on writers.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    pub fn cloud(&self) -> &Arc<dyn Cloud> {
        &self.cloud
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Boot timing and the groups' boot-latency models.
    pub fn boots(&self) -> &Arc<Boots> {
        &self.boots
    }

    pub fn increase_size(self: &Arc<Self>, id: &str, delta: i32) -> Result<(), FleetError> {
        let index = self.group_index(id)?;
        let request = RequestId::new(self.new_id(&self.specs[index].id));
        let work = self.change(index, |g| g.increase(delta, request))?;
        tracing::info!(group = id, delta, "increase size");
        self.dispatch(index, vec![work]);
        Ok(())
    }

    /// Skips `offering` for the cooldown from now.
    pub fn offering_unavailable(&self, offering: Offering, why: &str) {
        let until = self.clock.now() + self.cooldown;
        self.unavailable.mark(offering, until, why);
        self.metrics
            .set_offerings_unavailable(self.unavailable.count(self.clock.now()));
    }

    /// Marks a live member as leaving through an interruption operation; the
    /// minSize its replacement asks of CA is returned and published with the
    /// change. See [`GroupState::mark_leaving`].
    pub fn mark_leaving(
        &self,
        index: usize,
        provider_id: &str,
        want: Want,
        draining: bool,
    ) -> Result<Option<u32>, NotMember> {
        let mut inner = self.lock();
        let out = inner.groups[index].mark_leaving(provider_id, want, draining)?;
        self.publish(&mut inner, [index]);
        Ok(out)
    }

    /// Lets a leaving member go: deleted, its floor dropped, and departing
    /// (still counted in the target) until the cloud reports it gone. See
    /// [`GroupState::release`].
    pub fn release(self: &Arc<Self>, index: usize, provider_id: &str) -> Released {
        let out = {
            let mut inner = self.lock();
            let out = inner.groups[index].release(provider_id);
            self.publish(&mut inner, [index]);
            out
        };
        match out {
            Release::Started(work) => {
                self.dispatch(index, vec![work]);
                Released::Now
            }
            Release::AlreadyGoing => Released::AlreadyGoing,
            Release::Gone => Released::Gone,
        }
    }

    /// Whether the group still reports the instance (as a member or on its
    /// way out).
    pub fn reports(&self, index: usize, provider_id: &str) -> bool {
        self.snapshot()
            .instance(provider_id)
            .is_some_and(|(group, _)| group == index)
    }

    /// Drops a leaving mark without letting the member go.
    pub fn stand_down(&self, index: usize, provider_id: &str) {
        let mut inner = self.lock();
        inner.groups[index].stand_down(provider_id);
        self.publish(&mut inner, [index]);
    }

    /// `NodeGroupDecreaseTargetSize`: requested slots cancelled. Those of
    /// requests that may be (or were) sent are journalled first, as
    /// [`Fleet::delete_nodes`] journals its instances: a restart must not
    /// ask for them again. A journal that cannot be written refuses the
    /// call with UNAVAILABLE, nothing changed.
    pub async fn decrease_target_size(&self, id: &str, delta: i32) -> Result<(), FleetError> {
        let index = self.group_index(id)?;
        let (_, planned) = self.trial(index, |g| g.decrease_target(delta))?;
        let key = self.journal_or_refuse(index, &[], planned.clone()).await?;
        let applied = self.change(index, |g| {
            g.decrease_target(delta)?;
            Ok(g.take_cancelled())
        });
        let cancelled = match applied {
            Ok(cancelled) => cancelled,
            Err(refused) => return Err(self.unjournal(key, refused).await),
        };
        tracing::info!(group = id, delta, "decrease target size");
        self.journal_unplanned(index, &planned, cancelled).await;
        Ok(())
    }

    /// `NodeGroupDeleteNodes`: what the call deletes (instances, and slots
    /// of requests that may be sent) journalled first, in one entry
    /// (waiting at most [`JOURNAL_WAIT`], inside CA's deadline), then the
    /// target lowered and the terminates sent in the background. A journal
    /// that cannot be written refuses the call with UNAVAILABLE (CA tries
    /// again): an unjournalled deletion would come back after a crash.
    pub async fn delete_nodes(
        self: &Arc<Self>,
        id: &str,
        nodes: &[NodeRef],
    ) -> Result<(), FleetError> {
        let index = self.group_index(id)?;
        let (planned, cancels) = self.trial(index, |g| g.delete_nodes(nodes))?;
        let planned = match planned {
            Some(Work::Delete(ids)) => ids,
            _ => Vec::new(),
        };
        let key = self
            .journal_or_refuse(index, &planned, cancels.clone())
            .await?;
        let applied = self.change(index, |g| {
            let work = g.delete_nodes(nodes)?;
            Ok((work, g.take_cancelled()))
        });
        let (work, cancelled) = match applied {
            Ok(applied) => applied,
            Err(refused) => return Err(self.unjournal(key, refused).await),
        };
        tracing::info!(group = id, nodes = nodes.len(), "delete nodes");
        if let Some(key) = &key {
            let applied = match &work {
                Some(Work::Delete(ids)) => ids.as_slice(),
                _ => &[],
            };
            self.lock().deletions.applied(key, applied);
        }
        self.journal_unplanned(index, &cancels, cancelled).await;
        self.dispatch(index, work.into_iter().collect());
        Ok(())
    }

    /// A change tried on a copy of the group: what it returns and the
    /// slots it would cancel, or why it is refused. Nothing changes.
    fn trial<T>(
        &self,
        index: usize,
        f: impl FnOnce(&mut GroupState) -> Result<T, FleetError>,
    ) -> Result<(T, std::collections::BTreeMap<RequestId, u32>), FleetError> {
        let inner = self.lock();
        if inner.synced_at.is_none() {
            return Err(FleetError::NotSynced(self.specs[index].id.clone()));
        }
        let mut copy = inner.groups[index].clone();
        drop(inner);
        let out = f(&mut copy)?;
        Ok((out, copy.take_cancelled()))
    }

    async fn journal_or_refuse(
        &self,
        index: usize,
        ids: &[gpupool_cloud::InstanceId],
        cancelled: std::collections::BTreeMap<RequestId, u32>,
    ) -> Result<Option<String>, FleetError> {
        match self.journal_deletion(index, ids, cancelled).await {
            Ok(key) => Ok(key),
            Err((key, reason)) => {
                // Refused: an entry that landed after all must not act.
                self.unjournal(Some(key), ()).await;
                Err(FleetError::JournalUnavailable {
                    group: self.specs[index].id.clone(),
                    reason,
                })
            }
        }
    }

    /// A journalled change refused when made (the group changed
    /// meanwhile, as a concurrent call may): its entry goes.
    async fn unjournal<E>(&self, key: Option<String>, refused: E) -> E {
        if let Some(key) = key {
            self.lock().deletions.forget(&key);
            self.close_deletion(&key).await;
        }
        refused
    }

    /// The group changed between the trial and the change (a create
    /// answered, a retry went out): cancellations it made that the
    /// journalled trial did not are journalled too, best effort (a lost
    /// one is asked for again, within max, after a restart).
    async fn journal_unplanned(
        &self,
        index: usize,
        planned: &std::collections::BTreeMap<RequestId, u32>,
        mut applied: std::collections::BTreeMap<RequestId, u32>,
    ) {
        applied.retain(|request, n| {
            *n = n.saturating_sub(planned.get(request).copied().unwrap_or(0));
            *n > 0
        });
        let _ = self.journal_deletion(index, &[], applied).await;
    }

    /// Lists the cloud and brings every group in line; the first sync also
    /// takes up the create requests and deletions journalled before a
    /// restart, and the sync after [`Fleet::resume_with`] the marks of the
    /// part registered. On failure
    /// the last good state stays and the error is returned for the caller
    /// to report.
    pub async fn sync(self: &Arc<Self>) -> Result<(), SyncError> {
        let _one_at_a_time = self.sync_lock.lock().await;
        // Read before the listing: a request journalled after the listing
        // would otherwise be missed by both.
        let (journalled, journalled_deletions) = if self.lock().restored {
            (Vec::new(), Vec::new())
        } else {
            let open = self.journal.list().await;
            self.metrics.journal_call("list", open.is_ok());
            open.map_err(|e| {
                self.metrics.sync_failed();
                SyncError::Journal(e)
            })?
        };
        let part = self.resumes.take();
        let marks = match &part {
            None => Vec::new(),
            Some(p) => match p.marks().await {
                Ok(marks) => marks,
                Err(e) => {
                    self.resumes.put_back(p);
                    self.metrics.sync_failed();
                    return Err(SyncError::Marks(e));
                }
            },
        };
        self.limiter.until_ready().await;
        let listed = self.cloud.list_instances().await;
        self.metrics.cloud_call("list_instances", listed.is_ok());
        let listed = match listed {
            Ok(listed) => listed,
            Err(e) => {
                if let Some(p) = &part {
                    self.resumes.put_back(p);
                }
                self.metrics.sync_failed();
                return Err(SyncError::Cloud(e));
            }
        };
        let now = self.clock.now();
        let mut per_group: Vec<Vec<_>> = vec![Vec::new(); self.specs.len()];
        // Orphans: live instances with the cluster's tag and no configured
        // group (removed from the config, or never tagged with one).
        let mut orphans = std::collections::BTreeMap::<GroupId, usize>::new();
        for instance in listed {
            match self.index.get(&instance.group) {
                Some(&i) => per_group[i].push(instance),
                None if matches!(
                    instance.state,
                    gpupool_cloud::InstanceState::Pending | gpupool_cloud::InstanceState::Running
                ) =>
                {
                    *orphans.entry(instance.group).or_default() += 1;
                }
                None => {}
            }
        }
        if !orphans.is_empty() {
            tracing::warn!(
                orphans = ?orphans,
                "orphan instances: running with the cluster's tag for node groups that are not configured (\"\" = no group tag); delete them or configure the groups"
            );
        }
        let orphans = orphans.values().sum();
        self.boots.instances_listed(&per_group, now);
        let mut settled = Vec::new();
        let marked;
        let work = {
            let mut inner = self.lock();
            let mut work: Vec<_> = per_group
                .into_iter()
                .enumerate()
                .map(|(i, listed)| (i, inner.groups[i].reconcile(listed, now)))
                .collect();
            if !inner.restored {
                // Deletions first: instances CA deleted leave the target
                // before the requests' room within max is counted.
                let open: std::collections::HashSet<_> =
                    journalled.iter().map(|r| r.request_id.clone()).collect();
                let Inner {
                    groups, deletions, ..
                } = &mut *inner;
                settled.extend(deletions.restore(
                    journalled_deletions,
                    groups,
                    &self.index,
                    &open,
                    now,
                    &mut work,
                ));
                // Surplus instances go first: their room within max is
                // the other requests' slots.
                for request in &journalled {
                    if let Some(&i) = self.index.get(&request.group)
                        && let Some(w) = inner.groups[i].restore_surplus(request)
                    {
                        work[i].1.push(w);
                    }
                }
                for request in journalled {
                    match self.index.get(&request.group) {
                        Some(&i) => {
                            let w = inner.groups[i].restore(request, now);
                            work[i].1.extend(w);
                        }
                        None => tracing::warn!(
                            group = %request.group,
                            request = %request.request_id,
                            "journalled create request for a node group no longer configured; left in the journal (its instances are orphans)"
                        ),
                    }
                }
                inner.restored = true;
            }
            // After the restored work: a mark's floor counts what the
            // group has and was promised.
            marked = resume::apply(marks, &mut inner.groups);
            for (i, work) in &mut work {
                if let Some(trim) = inner.groups[*i].trim_past_max() {
                    if let Work::Delete(ids) = &trim {
                        self.metrics
                            .past_max_deleted(self.specs[*i].id.as_str(), ids.len());
                    }
                    work.push(trim);
                }
            }
            // Instances no longer waiting for a terminate (the cloud
            // stopped them, or took a terminate whose answer failed)
            // settle their deletions too.
            let Inner {
                groups, deletions, ..
            } = &mut *inner;
            settled.extend(deletions.settle(|p| {
                let group = &groups[p.group];
                p.instances.retain(|id| group.awaiting_terminate(id));
            }));
            inner.synced_at = Some(now);
            self.publish(&mut inner, 0..self.specs.len());
            work
        };
        self.metrics.synced(unix_seconds(now), orphans);
        for (index, work) in work {
            self.dispatch(index, work);
        }
        if let Some(p) = part {
            p.taken_up(marked);
        }
        for key in settled {
            self.close_deletion(&key).await;
        }
        Ok(())
    }

    /// Waits until no cloud work started so far is still under way (tests and
    /// shutdown).
    pub async fn settle(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }

    /// Waits at most `limit` for cloud work under way, then ends the rest at
    /// its next await; what it made is found again by the next start's sync
    /// (instances carry their request id). True when all of it finished.
    pub async fn shutdown(&self, limit: Duration) -> bool {
        self.tasks.close();
        if tokio::time::timeout(limit, self.tasks.wait()).await.is_ok() {
            return true;
        }
        tracing::warn!(
            tasks = self.tasks.len(),
            "cloud work still under way at shutdown; abandoning it (the next sync sees what it made)"
        );
        // Dropped at their next await, as a process exit would end them, so
        // no create or delete is sent after this returns.
        self.abandon.cancel();
        self.tasks.wait().await;
        false
    }

    /// The prices the fleet buys and reports costs by.
    pub fn prices(&self) -> &Arc<Prices> {
        &self.prices
    }

    /// Recomputes every group's cost after the prices changed.
    pub fn reprice(&self) {
        let mut inner = self.lock();
        let book = self.prices.load();
        let snapshot = self.snapshot.load();
        for (i, g) in snapshot.groups.iter().enumerate() {
            inner.costs[i] = group_cost(&book, g);
            self.metrics
                .set_group_cost(self.specs[i].id.as_str(), inner.costs[i]);
        }
        self.metrics.set_pool_cost(inner.costs.iter().sum());
    }

    /// Fetches live prices from the cloud (rate-limited like every cloud
    /// call) and folds them in from now on; on failure the last good prices
    /// stay in use.
    pub async fn refresh_prices(&self) -> Result<usize, CloudError> {
        self.limiter.until_ready().await;
        let result = self.cloud.prices().await;
        self.metrics.price_refresh(result.is_ok());
        let prices = result?;
        if !prices.is_empty() {
            let now = self.clock.now();
            self.prices.update(&prices, now);
            self.metrics.prices_as_of(unix_seconds(now));
            self.reprice();
        }
        Ok(prices.len())
    }

    /// Changes one group, as CA asks, and publishes it; a refused change
    /// publishes nothing. Refused until a listing has succeeded: a restarted
    /// engine knows no instance before that, and raising a target from zero
    /// would buy again what the cloud already runs.
    fn change<T>(
        &self,
        index: usize,
        f: impl FnOnce(&mut GroupState) -> Result<T, FleetError>,
    ) -> Result<T, FleetError> {
        let mut inner = self.lock();
        if inner.synced_at.is_none() {
            return Err(FleetError::NotSynced(self.specs[index].id.clone()));
        }
        let out = f(&mut inner.groups[index])?;
        self.publish(&mut inner, [index]);
        Ok(out)
    }

    /// Publishes the next snapshot with `changed` groups rebuilt. Runs under
    /// the state lock, so snapshots are published in the order of the changes.
    fn publish(&self, inner: &mut Inner, changed: impl IntoIterator<Item = usize>) {
        let (snapshot, changed) =
            self.snapshot
                .load()
                .with(&inner.groups, changed, inner.synced_at);
        let book = self.prices.load();
        for index in changed {
            let view = &snapshot.groups[index];
            let id = self.specs[index].id.as_str();
            self.metrics.set_group(id, view.counts);
            inner.costs[index] = group_cost(&book, view);
            self.metrics.set_group_cost(id, inner.costs[index]);
        }
        // Only the changed groups' series are touched: a change to one group
        // costs what that group holds.
        self.metrics.set_pool_cost(inner.costs.iter().sum());
        self.snapshot.store(Arc::new(snapshot));
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn dispatch(self: &Arc<Self>, index: usize, work: Vec<Work>) {
        for w in work {
            let fleet = self.clone();
            let abandon = self.abandon.clone();
            self.tasks.spawn(async move {
                abandon.run_until_cancelled_owned(fleet.run(index, w)).await;
            });
        }
    }

    async fn run(self: Arc<Self>, index: usize, work: Work) {
        let request = match work {
            Work::Close(request) => {
                let closed = self.journal.close(&request).await;
                self.metrics.journal_call("close", closed.is_ok());
                match closed {
                    Ok(()) => {
                        self.settle_deletions(|p| _ = p.requests.remove(&request))
                            .await
                    }
                    Err(e) => {
                        tracing::warn!(request = %request, error = %e, "create journal entry not removed; retried at the next sync");
                        self.lock().groups[index].close_failed(request);
                    }
                }
                return;
            }
            Work::Delete(ids) => return self.delete(index, ids).await,
            Work::Create(request) => match self.fit(index, request).await {
                Ok(fitted) => fitted,
                Err(refused) => return self.create_finished(index, refused).await,
            },
            Work::Resend(request) => request,
        };
        self.limiter.until_ready().await;
        let result = self.cloud.create_instances(&request).await;
        self.metrics.cloud_call("create_instances", result.is_ok());
        // What was asked, as asked: the pools a refusal is about.
        self.note_capacity_error(&request, &self.specs[index].instance_types, &result);
        self.create_finished(index, (request, result)).await;
    }

    /// A new request fitted to the offerings still available and the price
    /// cap, then journalled: ready to send. Refused before asking the cloud
    /// (nothing it may use, or the journal cannot be written): the answer
    /// to report instead.
    async fn fit(
        &self,
        index: usize,
        request: gpupool_cloud::CreateRequest,
    ) -> Result<gpupool_cloud::CreateRequest, Answer> {
        let book = self.prices.load();
        let now = self.clock.now();
        let filtered =
            self.unavailable
                .filter(request.clone(), &self.specs[index].instance_types, now);
        // The filter forgets cooled-down offerings: the gauge follows.
        self.metrics
            .set_offerings_unavailable(self.unavailable.count(now));
        let fitted =
            match filtered.and_then(|r| crate::pricing::cap::apply(&book, &self.specs[index], r)) {
                Ok(fitted) => fitted,
                // Reported like the cloud's own out-of-capacity answer, so CA
                // tries another group.
                Err(error) => {
                    let count = request.count;
                    return Err((
                        request,
                        Ok(gpupool_cloud::CreateOutcome {
                            created: Vec::new(),
                            failed: Some(gpupool_cloud::CreateFailure { count, error }),
                            exhausted: Vec::new(),
                        }),
                    ));
                }
            };
        let journalled = self.journal.open(&fitted).await;
        self.metrics.journal_call("open", journalled.is_ok());
        let journalled = match journalled {
            Ok(journalled) => journalled,
            Err(e) => {
                // Not sent unjournalled: a restart could not find what it
                // made. Tried again at the next sync, like a throttled call.
                let error = CloudError::throttled(
                    "CreateJournalUnavailable",
                    format!("the create request could not be journalled before the call: {e}"),
                );
                return Err((fitted, Err(error)));
            }
        };
        self.lock().groups[index].record_sent(&journalled);
        Ok(journalled)
    }

    async fn create_finished(self: &Arc<Self>, index: usize, (request, result): Answer) {
        match &result {
            Ok(outcome) => tracing::info!(
                group = %request.group,
                request = %request.request_id,
                created = outcome.created.len(),
                failed = outcome.failed.as_ref().map_or(0, |f| f.count),
                error = outcome.failed.as_ref().map(|f| f.error.to_string()),
                "create finished"
            ),
            Err(e) => {
                tracing::warn!(group = %request.group, request = %request.request_id, error = %e, "create failed")
            }
        }
        let now = self.clock.now();
        let throttled =
            matches!(&result, Err(e) if e.class == gpupool_cloud::ErrorClass::Throttled);
        let (follow_up, settled_unjournalled) = {
            let mut inner = self.lock();
            let unjournalled = !inner.groups[index].journalled(&request.request_id);
            let w = inner.groups[index].create_finished(&request.request_id, result, now);
            self.publish(&mut inner, [index]);
            (w, unjournalled && !throttled)
        };
        self.dispatch(index, follow_up);
        // Its slots' cancellations need keeping no longer.
        if settled_unjournalled {
            let id = request.request_id;
            self.settle_deletions(|p| _ = p.requests.remove(&id)).await;
        }
    }

    async fn delete(&self, index: usize, ids: Vec<gpupool_cloud::InstanceId>) {
        self.limiter.until_ready().await;
        let result = self.cloud.delete_instances(&ids).await;
        self.metrics.cloud_call("delete_instances", result.is_ok());
        if let Err(e) = &result {
            tracing::warn!(group = %self.specs[index].id, error = %e, "delete failed; retried at the next sync");
        }
        {
            let mut inner = self.lock();
            inner.groups[index].delete_finished(&ids, result.is_ok());
            self.publish(&mut inner, [index]);
        }
        if result.is_ok() {
            self.settle_deletions(|p| {
                for id in &ids {
                    p.instances.remove(id);
                }
            })
            .await;
        }
    }
}

/// A create request and what became of it.
type Answer = (
    gpupool_cloud::CreateRequest,
    Result<gpupool_cloud::CreateOutcome, CloudError>,
);

impl Fleet {
    /// The cloud had no capacity: the offerings it named as exhausted are
    /// skipped for a while, even when others filled the request. When it
    /// names none and nothing was created, every offering the request could
    /// use is: the zones it was sent to, for each of the group's `types`,
    /// at the capacity type it preferred.
    fn note_capacity_error(
        &self,
        request: &gpupool_cloud::CreateRequest,
        types: &[String],
        result: &Result<gpupool_cloud::CreateOutcome, gpupool_cloud::CloudError>,
    ) {
        let (error, created) = match result {
            Ok(outcome) => {
                for offering in &outcome.exhausted {
                    self.offering_unavailable(offering.clone(), "out of capacity");
                }
                match &outcome.failed {
                    // The cloud said which offerings ran out.
                    _ if !outcome.exhausted.is_empty() => return,
                    Some(failed) => (&failed.error, !outcome.created.is_empty()),
                    None => return,
                }
            }
            Err(e) => (e, false),
        };
        let ours = [
            offerings::RECENTLY_UNAVAILABLE,
            crate::pricing::cap::PRICE_CAP_EXCEEDED,
        ];
        if error.class != gpupool_cloud::ErrorClass::OutOfResources
            || ours.contains(&error.code.as_str())
            || created
        {
            return;
        }
        let capacity = request.purchase.preferred();
        for instance_type in types {
            for zone in &request.zones {
                self.offering_unavailable(
                    Offering {
                        instance_type: instance_type.clone(),
                        zone: zone.clone(),
                        capacity,
                    },
                    &error.code,
                );
            }
        }
    }
}

/// What a group's instances cost per hour (booting and running; not those
/// being deleted, nor slots the cloud has not filled).
fn group_cost(book: &PriceBook, view: &GroupView) -> f64 {
    view.instances
        .iter()
        .filter(|i| i.state != NodeState::Deleting)
        .filter_map(|i| {
            book.hourly(&i.instance_type, i.capacity_type?, i.zone.as_deref())
                .ok()
        })
        .sum()
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests;
