//! One interruption operation: what it is about, what it does, and how far
//! it got. This is what the journal keeps, so a restart resumes it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

/// What an operation does with its instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Replacement asked of CA, then cordon, drain and release.
    Replace,
    /// Cordon, drain and release; no replacement (`drain-only` groups, or a
    /// group at its max size).
    DrainOnly,
    /// A rebalance replacement: asked of CA at once, the node left in
    /// service until its interruption notice (then `Replace`, with no
    /// second replacement) or the standby's end.
    Standby,
}

/// How far an operation got. Each step is journalled once done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// The instance is marked leaving (reported deleting to CA unless on
    /// standby) and its replacement, if any, asked of CA.
    Marked,
    /// Cordoned and tainted: nothing new lands on it.
    Cordoned,
    /// Its pods have left through the Eviction API (or the drain deadline
    /// passed).
    Drained,
    /// It is being let go: deleted if the cloud has not, its floor dropped.
    Releasing,
    /// Let go; it stays in the target until the cloud reports it gone
    /// (see `crate::fleet::GroupState`), and the operation with it.
    Released,
}

impl Step {
    pub fn label(self) -> &'static str {
        match self {
            Step::Marked => "marked",
            Step::Cordoned => "cordoned",
            Step::Drained => "drained",
            Step::Releasing => "releasing",
            Step::Released => "released",
        }
    }
}

/// The notice an operation answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// `aws`, `gcp`, `azure`, `generic`.
    pub source: String,
    /// `interruption`, `rebalance`, `termination`.
    pub kind: String,
    /// The notice's own id (EventBridge id, SNS MessageId, …).
    pub notice_id: String,
}

/// One interrupted instance's operation, as journalled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// The instance's providerID: the operation's identity.
    pub provider_id: String,
    pub group: String,
    /// Its Kubernetes node, once known.
    #[serde(default)]
    pub node: Option<String>,
    pub cause: Cause,
    pub mode: Mode,
    pub received_at: DateTime<Utc>,
    /// When the cloud will take the instance, if the notice says.
    #[serde(default)]
    pub deadline: Option<DateTime<Utc>>,
    /// The minSize the replacement asks of CA (journalled so that a resume
    /// asks exactly the same, never a second node).
    #[serde(default)]
    pub want: Option<u32>,
    /// Instances of the group's other operations whose departure `want`
    /// already dropped for (each lowers it once: see
    /// [`crate::fleet::Resumes`]).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub lowered_for: BTreeSet<String>,
    pub step: Step,
    /// When the drain began (the notice, or the interruption that ended a
    /// rebalance standby): the drain timeout counts from here.
    #[serde(default)]
    pub drain_started: Option<DateTime<Utc>>,
    /// Pods evicted so far.
    #[serde(default)]
    pub evicted: u32,
}

impl Operation {
    pub fn received(&self) -> SystemTime {
        self.received_at.into()
    }

    pub fn deadline(&self) -> Option<SystemTime> {
        self.deadline.map(Into::into)
    }

    /// An interruption came for a rebalance replacement standing by: on to
    /// the drain with the same replacement (`want` is kept: no second
    /// node). False when it was not standing by.
    pub fn interrupted(&mut self, kind: &str, deadline: Option<SystemTime>) -> bool {
        if self.mode != Mode::Standby {
            return false;
        }
        self.mode = Mode::Replace;
        self.deadline = deadline.map(utc).or(self.deadline);
        kind.clone_into(&mut self.cause.kind);
        true
    }

    /// When the drain must end: the cloud's deadline less the margin, and
    /// `timeout` after the drain began (else the notice) at most.
    pub fn drain_deadline(&self, margin: Duration, timeout: Duration) -> SystemTime {
        let began = self.drain_started.map_or(self.received(), Into::into);
        let by_timeout = began + timeout;
        match self.deadline() {
            Some(d) => by_timeout.min(d.checked_sub(margin).unwrap_or(d)),
            None => by_timeout,
        }
    }
}

/// A time as the journal writes it.
pub fn utc(t: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(deadline: Option<SystemTime>) -> Operation {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        Operation {
            provider_id: "aws:///us-east-1a/i-1".into(),
            group: "g".into(),
            node: None,
            cause: Cause {
                source: "aws".into(),
                kind: "interruption".into(),
                notice_id: "e1".into(),
            },
            mode: Mode::Replace,
            received_at: utc(t0),
            deadline: deadline.map(utc),
            want: Some(3),
            lowered_for: BTreeSet::new(),
            step: Step::Marked,
            drain_started: None,
            evicted: 0,
        }
    }

    #[test]
    fn the_drain_ends_a_margin_before_the_cloud_deadline_or_at_the_timeout() {
        let o = op(None);
        let t0 = o.received();
        let margin = Duration::from_secs(15);
        assert_eq!(
            o.drain_deadline(margin, Duration::from_secs(90)),
            t0 + Duration::from_secs(90)
        );
        let o = op(Some(t0 + Duration::from_secs(120)));
        assert_eq!(
            o.drain_deadline(margin, Duration::from_secs(600)),
            t0 + Duration::from_secs(105)
        );
        assert_eq!(
            o.drain_deadline(margin, Duration::from_secs(60)),
            t0 + Duration::from_secs(60)
        );
    }

    #[test]
    fn an_operation_round_trips_through_its_journal_form() {
        let o = op(Some(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_120),
        ));
        let text = serde_json::to_string(&o).unwrap();
        assert!(
            text.contains("\"providerId\":\"aws:///us-east-1a/i-1\""),
            "{text}"
        );
        assert!(
            text.contains("\"deadline\":\"2027-01-15T08:02:00Z\""),
            "{text}"
        );
        let back: Operation = serde_json::from_str(&text).unwrap();
        assert_eq!(back, o);
    }
}
