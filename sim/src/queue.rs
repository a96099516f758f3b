//! The event queue: a binary heap ordered by (time, class, sequence number),
//! so that events at the same time run in a fixed order — timers (outlier
//! ticks, timeline) before traffic, then first scheduled, first run.

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

/// A min-queue of events keyed by (time, class, sequence).
pub(crate) struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    /// One event kept beside the heap (the next open-loop arrival: there is
    /// never more than one), popped in the same (time, class, sequence)
    /// order as if it were in the heap, without the heap's cost.
    lone: Option<Entry<E>>,
    seq: u64,
}

impl<E> EventQueue<E> {
    pub(crate) fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
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

    pub(crate) fn push(&mut self, at: Time, class: Class, event: E) {
        let key = self.key(at, class);
        self.heap.push(Entry { key, event });
    }

    /// Pushes the one event kept beside the heap; a previous one still
    /// pending moves into the heap (so nothing is ever lost).
    pub(crate) fn push_lone(&mut self, at: Time, class: Class, event: E) {
        let key = self.key(at, class);
        if let Some(old) = self.lone.replace(Entry { key, event }) {
            self.heap.push(old);
        }
    }

    pub(crate) fn pop(&mut self) -> Option<(Time, E)> {
        let lone_first = match (&self.lone, self.heap.peek()) {
            (Some(l), Some(h)) => l.key < h.key,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let e = if lone_first {
            self.lone.take()
        } else {
            self.heap.pop()
        }?;
        let nanos = u64::try_from(e.key >> 64).unwrap_or(u64::MAX);
        Some((Time::from_nanos(nanos), e.event))
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
            3 => (prop_oneof![Just(0u64), 0..1_000u64, 0..u64::from(u32::MAX)], any::<bool>(), any::<bool>())
                .prop_map(|(after, timer, lone)| Step::Push { after, timer, lone }),
        ]
    }

    proptest! {
        /// Whatever is pushed at or after the current time, in any order,
        /// pops in exactly the order of a binary heap on the same keys.
        #[test]
        fn pops_as_a_binary_heap_would(steps in proptest::collection::vec(step(), 1..400)) {
            use std::cmp::Reverse;
            use std::collections::BinaryHeap;
            let mut q = EventQueue::new();
            let mut reference = BinaryHeap::new();
            let mut seq = 0u64;
            let mut now = 0u64;
            let mut n = 0u32;
            for s in steps.iter().chain(std::iter::repeat_n(&Step::Pop, 400)) {
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
