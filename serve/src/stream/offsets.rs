//! Which input offsets may be committed: per partition, the highest offset
//! below which every message consumed is done (its result or dead letter
//! acknowledged by the broker). Messages finish out of order; committing past
//! one still in flight would lose it if the process died.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// A topic partition.
pub type Partition = (String, i32);

/// A consumed message's place, handed back when its work is done. The
/// generation tells a message of an earlier assignment of the same
/// partition (finished after a rebalance took the partition away) from
/// the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub partition: Partition,
    pub offset: i64,
    generation: u64,
}

#[derive(Debug, Default)]
struct PartitionState {
    generation: u64,
    /// Consumed offsets in consumption order (ascending), with done flags.
    pending: VecDeque<(i64, bool)>,
    /// The next offset to commit, once it moved past what was committed.
    committable: Option<i64>,
}

/// Offsets consumed, done and committable, for every assigned partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<Partition, PartitionState>,
    generations: u64,
}

impl OffsetTracker {
    /// Starts tracking `partition` afresh (a new assignment).
    pub fn assign(&mut self, partition: Partition) {
        self.generations += 1;
        self.partitions.insert(
            partition,
            PartitionState {
                generation: self.generations,
                ..PartitionState::default()
            },
        );
    }

    /// Stops tracking `partition` (revoked); work still in flight for it is
    /// ignored when it finishes.
    pub fn revoke(&mut self, partition: &Partition) {
        self.partitions.remove(partition);
    }

    /// Records a consumed message; its ticket comes back to [`Self::done`].
    pub fn consumed(&mut self, partition: Partition, offset: i64) -> Ticket {
        let state = match self.partitions.get_mut(&partition) {
            Some(state) => state,
            // A message of a partition we were not told about (assignment
            // callbacks race with fetched messages): track it from here.
            None => {
                self.assign(partition.clone());
                self.partitions.get_mut(&partition).expect("just assigned")
            }
        };
        // After a seek the broker may hand back offsets at or below those
        // pending: what was pending there is being redone.
        while state.pending.back().is_some_and(|&(o, _)| o >= offset) {
            state.pending.pop_back();
        }
        state.pending.push_back((offset, false));
        Ticket {
            partition,
            offset,
            generation: state.generation,
        }
    }

    /// Marks a message done; returns false when its partition was revoked
    /// (or re-assigned) since it was consumed.
    pub fn done(&mut self, ticket: &Ticket) -> bool {
        let Some(state) = self.partitions.get_mut(&ticket.partition) else {
            return false;
        };
        if state.generation != ticket.generation {
            return false;
        }
        let Ok(index) = state
            .pending
            .binary_search_by_key(&ticket.offset, |&(o, _)| o)
        else {
            return false;
        };
        state.pending[index].1 = true;
        while let Some(&(offset, true)) = state.pending.front() {
            state.pending.pop_front();
            state.committable = Some(offset + 1);
        }
        true
    }

    /// Messages consumed and not yet done, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(|s| s.pending.iter().filter(|(_, done)| !done).count())
            .sum()
    }

    /// Messages of `partition` consumed and not yet done.
    pub fn in_flight_for(&self, partition: &Partition) -> usize {
        self.partitions
            .get(partition)
            .map_or(0, |s| s.pending.iter().filter(|(_, done)| !done).count())
    }

    /// Offsets to commit (next offset to read, per partition) that moved
    /// since the last call, in a stable order; they count as committed.
    pub fn take_committable(&mut self) -> BTreeMap<Partition, i64> {
        self.partitions
            .iter_mut()
            .filter_map(|(partition, state)| {
                state
                    .committable
                    .take()
                    .map(|offset| (partition.clone(), offset))
            })
            .collect()
    }

    /// Puts offsets back whose commit failed, unless newer ones are due.
    pub fn restore_committable(&mut self, offsets: BTreeMap<Partition, i64>) {
        for (partition, offset) in offsets {
            if let Some(state) = self.partitions.get_mut(&partition) {
                state.committable.get_or_insert(offset);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("in".to_string(), n)
    }

    #[test]
    fn commits_only_the_contiguous_done_prefix() {
        let mut tracker = OffsetTracker::default();
        tracker.assign(p(0));
        let tickets: Vec<Ticket> = (10..15).map(|o| tracker.consumed(p(0), o)).collect();
        assert!(tracker.done(&tickets[1]));
        assert!(tracker.done(&tickets[2]));
        assert!(
            tracker.take_committable().is_empty(),
            "offset 10 is still in flight"
        );
        assert!(tracker.done(&tickets[0]));
        assert_eq!(tracker.take_committable(), BTreeMap::from([(p(0), 13)]));
        assert!(tracker.take_committable().is_empty(), "already taken");
        assert_eq!(tracker.in_flight(), 2);
        assert!(tracker.done(&tickets[4]));
        assert!(tracker.done(&tickets[3]));
        assert_eq!(tracker.take_committable(), BTreeMap::from([(p(0), 15)]));
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent_and_gaps_in_offsets_are_fine() {
        let mut tracker = OffsetTracker::default();
        let a = tracker.consumed(p(0), 5);
        let b = tracker.consumed(p(1), 100);
        // Offsets 6..8 are transaction markers or compacted away.
        let c = tracker.consumed(p(0), 9);
        tracker.done(&c);
        tracker.done(&b);
        assert_eq!(tracker.take_committable(), BTreeMap::from([(p(1), 101)]));
        assert_eq!(tracker.in_flight_for(&p(0)), 1);
        tracker.done(&a);
        assert_eq!(tracker.take_committable(), BTreeMap::from([(p(0), 10)]));
    }

    #[test]
    fn work_of_a_revoked_or_reassigned_partition_is_ignored() {
        let mut tracker = OffsetTracker::default();
        tracker.assign(p(0));
        let old = tracker.consumed(p(0), 1);
        tracker.revoke(&p(0));
        assert!(!tracker.done(&old));
        tracker.assign(p(0));
        let new = tracker.consumed(p(0), 1);
        assert!(!tracker.done(&old), "an earlier generation's ticket");
        assert!(tracker.take_committable().is_empty());
        assert!(tracker.done(&new));
        assert_eq!(tracker.take_committable(), BTreeMap::from([(p(0), 2)]));
    }

    #[test]
    fn a_failed_commit_is_retried_unless_superseded() {
        let mut tracker = OffsetTracker::default();
        let t = tracker.consumed(p(0), 0);
        tracker.done(&t);
        let failed = tracker.take_committable();
        tracker.restore_committable(failed);
        assert_eq!(tracker.take_committable(), BTreeMap::from([(p(0), 1)]));
        let t = tracker.consumed(p(0), 1);
        tracker.done(&t);
        tracker.restore_committable(BTreeMap::from([(p(0), 1)]));
        assert_eq!(tracker.take_committable(), BTreeMap::from([(p(0), 2)]));
    }

    #[test]
    fn a_rewind_redoes_what_was_pending() {
        let mut tracker = OffsetTracker::default();
        let first = tracker.consumed(p(0), 0);
        tracker.consumed(p(0), 1);
        tracker.consumed(p(0), 2);
        // The consumer seeks back to 1 and reads it again.
        let again = tracker.consumed(p(0), 1);
        tracker.done(&first);
        tracker.done(&again);
        assert_eq!(tracker.take_committable(), BTreeMap::from([(p(0), 2)]));
        assert_eq!(tracker.in_flight(), 0);
    }
}
