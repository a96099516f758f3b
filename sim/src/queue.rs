//! The event queue, ordered by (time, class, sequence number), so that
//! events at the same time run in a fixed order — timers (outlier ticks,
//! timeline) before traffic, then first scheduled, first run.
//!
//! A calendar queue (Brown, 1988): time is cut into buckets of about a
//! millisecond, kept in a ring that spans about a second. Most events (a
//! pod's answer, a timeout) fall a few milliseconds ahead: pushing one is
//! appending to its bucket, and a bucket is sorted once when the clock
//! reaches it, so an event costs a handful of instructions where a binary
//! heap of hundreds of events pays two logarithmic sift passes. Events
//! beyond the ring (outlier ticks, long timeouts) wait in a binary heap.
//! The pop order is exactly a binary heap's on the same keys (a property
//! test checks it): the smallest key first, keys unique.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use mesh_engine::Time;

/// Events of the same time run in class order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Class {
    /// Engine ticks, config pushes, timeline events.
    Timer = 0,
    /// Requests and responses.
    Traffic = 1,
}

struct Entry<E> {
    key: u128,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the heap pops the smallest key.
        other.key.cmp(&self.key)
    }
}

/// A bucket spans 2^20 ns (about 1 ms) of virtual time.
const WIDTH_SHIFT: u32 = 20;
/// Buckets in the ring (2^10 × 1 ms ≈ 1.1 s ahead: a metrics window of
/// 1 s and most latencies and timeouts fall in it).
const RING: u64 = 1 << 10;

fn bucket_of(key: u128) -> u64 {
    u64::try_from(key >> (64 + WIDTH_SHIFT)).unwrap_or(u64::MAX)
}

/// A min-queue of events keyed by (time, class, sequence).
pub(crate) struct EventQueue<E> {
    /// The ring: bucket `b` (time >> WIDTH_SHIFT) at `b % RING`, for
    /// `cur <= b < cur + RING`.
    ring: Vec<Vec<Entry<E>>>,
    /// The bucket the clock is in; never past the smallest key's.
    cur: u64,
    /// Whether the current bucket is sorted (descending: its smallest last).
    sorted: bool,
    /// Events in the ring.
    near: usize,
    /// Events beyond the ring when they were pushed.
    far: BinaryHeap<Entry<E>>,
    /// One event kept beside the others (the next open-loop arrival: there
    /// is never more than one), popped in the same (time, class, sequence)
    /// order as if it were with them.
    lone: Option<Entry<E>>,
    seq: u64,
}

impl<E> EventQueue<E> {
    pub(crate) fn new() -> Self {
        Self {
            ring: (0..RING).map(|_| Vec::new()).collect(),
            cur: 0,
            sorted: false,
            near: 0,
            far: BinaryHeap::new(),
            lone: None,
            seq: 0,
        }
    }

    fn key(&mut self, at: Time, class: Class) -> u128 {
        // 64 bits of time, 1 of class, 63 of sequence: one integer compare.
        let key = (u128::from(at.as_nanos()) << 64)
            | (u128::from(class as u8) << 63)
            | u128::from(self.seq);
        self.seq += 1;
        key
    }

    fn slot(b: u64) -> usize {
        usize::try_from(b % RING).unwrap_or(0)
    }

    fn insert(&mut self, e: Entry<E>) {
        // Keys are never below the clock's bucket: events are scheduled
        // at or after the time of the event being handled.
        let b = bucket_of(e.key).max(self.cur);
        if b - self.cur >= RING {
            self.far.push(e);
            return;
        }
        self.near += 1;
        let bucket = &mut self.ring[Self::slot(b)];
        if b == self.cur && self.sorted {
            // Into the sorted current bucket, keeping it descending.
            let at = bucket.partition_point(|x| x.key > e.key);
            bucket.insert(at, e);
        } else {
            bucket.push(e);
        }
    }

    pub(crate) fn push(&mut self, at: Time, class: Class, event: E) {
        let key = self.key(at, class);
        self.insert(Entry { key, event });
    }

    /// Pushes the one event kept beside the others; a previous one still
    /// pending joins them (so nothing is ever lost).
    pub(crate) fn push_lone(&mut self, at: Time, class: Class, event: E) {
        let key = self.key(at, class);
        if let Some(old) = self.lone.replace(Entry { key, event }) {
            self.insert(old);
        }
    }

    /// Moves the clock to the first non-empty bucket of the ring, but never
    /// past `limit`, the bucket of the far heap's or the lone event's
    /// smallest key (an event popped from there may schedule into its own
    /// bucket). Returns the ring's smallest key if the clock reached it.
    fn settle(&mut self, limit: u64) -> Option<u128> {
        if self.near == 0 {
            if limit != u64::MAX && limit > self.cur {
                self.cur = limit;
                self.sorted = false;
            }
            return None;
        }
        loop {
            let bucket = &mut self.ring[Self::slot(self.cur)];
            if !bucket.is_empty() {
                if !self.sorted {
                    if bucket.len() > 1 {
                        bucket.sort_unstable_by_key(|e| std::cmp::Reverse(e.key));
                    }
                    self.sorted = true;
                }
                return bucket.last().map(|e| e.key);
            }
            if self.cur >= limit {
                return None;
            }
            self.cur += 1;
            self.sorted = false;
        }
    }

    pub(crate) fn pop(&mut self) -> Option<(Time, E)> {
        let far = self.far.peek().map(|e| e.key);
        let lone = self.lone.as_ref().map(|e| e.key);
        // The smaller of the two, as (key, from the lone slot).
        let other = match (far, lone) {
            (Some(f), Some(l)) => Some(if l < f { (l, true) } else { (f, false) }),
            (Some(f), None) => Some((f, false)),
            (None, Some(l)) => Some((l, true)),
            (None, None) => None,
        };
        let limit = other.map_or(u64::MAX, |(k, _)| bucket_of(k));
        let near = self.settle(limit);
        let e = match (near, other) {
            (Some(n), Some((o, _))) if n < o => self.pop_near(),
            (Some(_), None) => self.pop_near(),
            (_, Some((_, true))) => self.lone.take(),
            (_, Some((_, false))) => self.far.pop(),
            (None, None) => None,
        }?;
        let nanos = u64::try_from(e.key >> 64).unwrap_or(u64::MAX);
        Some((Time::from_nanos(nanos), e.event))
    }

    fn pop_near(&mut self) -> Option<Entry<E>> {
        self.near -= 1;
        self.ring[Self::slot(self.cur)].pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    /// One step of a run: pop one event, or push one at `now + after`
    /// (`after` 0 is "now"), of a class, lone or not.
    #[derive(Clone, Debug)]
    enum Step {
        Pop,
        Push { after: u64, timer: bool, lone: bool },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            2 => Just(Step::Pop),
            3 => (prop_oneof![Just(0u64), 0..1_000u64, 0..5_000_000u64, 0..20_000_000_000u64, 0..u64::from(u32::MAX)], any::<bool>(), any::<bool>())
                .prop_map(|(after, timer, lone)| Step::Push { after, timer, lone }),
        ]
    }

    proptest! {
        /// Whatever is pushed at or after the current time, in any order,
        /// pops in exactly the order of a binary heap on the same keys.
        #[test]
        fn pops_as_a_binary_heap_would(steps in proptest::collection::vec(step(), 1..1_000)) {
            use std::cmp::Reverse;
            use std::collections::BinaryHeap;
            let mut q = EventQueue::new();
            let mut reference = BinaryHeap::new();
            let mut seq = 0u64;
            let mut now = 0u64;
            let mut n = 0u32;
            for s in steps.iter().chain(std::iter::repeat_n(&Step::Pop, 1_000)) {
                match *s {
                    Step::Pop => {
                        let got = q.pop();
                        let want = reference.pop().map(|Reverse((t, c, _, id)): Reverse<(u64, u8, u64, u32)>| {
                            let _ = c;
                            (Time::from_nanos(t), id)
                        });
                        prop_assert_eq!(got, want);
                        if let Some((t, _)) = got {
                            now = t.as_nanos();
                        }
                    }
                    Step::Push { after, timer, lone } => {
                        let at = now.saturating_add(after);
                        let class = if timer { Class::Timer } else { Class::Traffic };
                        if lone {
                            q.push_lone(Time::from_nanos(at), class, n);
                        } else {
                            q.push(Time::from_nanos(at), class, n);
                        }
                        reference.push(Reverse((at, class as u8, seq, n)));
                        seq += 1;
                        n += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn pops_by_time_then_class_then_insertion_order() {
        let mut q = EventQueue::new();
        q.push(Time::from_secs(2), Class::Traffic, "late");
        q.push(Time::from_secs(1), Class::Traffic, "traffic-1");
        q.push(Time::from_secs(1), Class::Timer, "timer");
        q.push(Time::from_secs(1), Class::Traffic, "traffic-2");
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["timer", "traffic-1", "traffic-2", "late"]);
    }

    #[test]
    fn the_lone_event_pops_where_the_heap_would_have_put_it() {
        let mut q = EventQueue::new();
        q.push(Time::from_secs(1), Class::Traffic, "a");
        q.push_lone(Time::from_secs(1), Class::Traffic, "lone-1");
        q.push(Time::from_secs(1), Class::Traffic, "b");
        q.push(Time::from_secs(1), Class::Timer, "timer");
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e))
            .take(2)
            .collect();
        assert_eq!(order, ["timer", "a"]);
        assert_eq!(q.pop().map(|(_, e)| e), Some("lone-1"));
        q.push_lone(Time::from_secs(3), Class::Traffic, "lone-3");
        // A second lone event while one is pending: both are kept.
        q.push_lone(Time::from_secs(2), Class::Traffic, "lone-2");
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["b", "lone-2", "lone-3"]);
    }
}
