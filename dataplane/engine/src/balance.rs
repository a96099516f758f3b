//! Load balancers, as Envoy implements them (reference §4).
//!
//! A balancer picks one endpoint among the cluster's current candidates (its
//! healthy endpoints, or all of them in panic). Candidates are endpoint
//! indices; the balancer is rebuilt whenever the candidate set changes, which
//! is when Envoy rebuilds its host sets and hash rings. Picking allocates
//! nothing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use xxhash_rust::xxh64::xxh64;

use crate::config::LbPolicy;
use crate::rng::Stream;

/// One endpoint as the balancers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Host {
    /// `ip:port`, the ring-hash and maglev key.
    pub(crate) address: Box<str>,
    /// Load-balancing weight (≥ 1).
    pub(crate) weight: u32,
    /// Requests this proxy has in flight to the endpoint.
    pub(crate) active_requests: u32,
}

/// One cluster's load balancer.
///
/// `repr(u8)`: an explicit tag, read in one load on every pick (the
/// niche-packed tag took several instructions per match).
#[derive(Clone, Debug)]
#[repr(u8)]
pub(crate) enum Balancer {
    RoundRobin(RoundRobin),
    LeastRequest(LeastRequest),
    Random,
    /// Forward to the request's original destination.
    Passthrough,
    RingHash(Ring),
    Maglev(Maglev),
}

impl Balancer {
    /// An empty balancer of the given policy; call [`Self::rebuild`] before picking.
    pub(crate) fn new(policy: LbPolicy, rng: &mut Stream) -> Self {
        match policy {
            LbPolicy::RoundRobin => Self::RoundRobin(RoundRobin::new(rng.next_u64())),
            LbPolicy::LeastRequest => Self::LeastRequest(LeastRequest::default()),
            LbPolicy::Random => Self::Random,
            LbPolicy::Passthrough => Self::Passthrough,
            LbPolicy::RingHash { minimum_ring_size } => {
                Self::RingHash(Ring::new(minimum_ring_size))
            }
            LbPolicy::Maglev { table_size } => Self::Maglev(Maglev::new(table_size)),
        }
    }

    /// Keeps what Envoy keeps across host-set changes: the round-robin index.
    pub(crate) fn carry_state(&mut self, prev: &Self) {
        if let (Self::RoundRobin(new), Self::RoundRobin(old)) = (self, prev) {
            new.index = old.index;
            new.len = 0;
        }
    }

    /// Whether this balancer uses the request hash.
    pub(crate) fn is_hash_based(&self) -> bool {
        matches!(self, Self::RingHash(_) | Self::Maglev(_))
    }

    /// Rebuilds for a new candidate set (`hosts` indexed by endpoint index).
    pub(crate) fn rebuild(&mut self, hosts: &[Host], candidates: &[u32]) {
        match self {
            Self::RoundRobin(rr) => rr.rebuild(hosts, candidates),
            Self::LeastRequest(lr) => lr.rebuild(hosts, candidates),
            Self::Random | Self::Passthrough => {}
            Self::RingHash(r) => r.rebuild(hosts, candidates),
            Self::Maglev(m) => m.rebuild(hosts, candidates),
        }
    }

    /// Picks an endpoint, or `None` when there is no candidate.
    pub(crate) fn pick(
        &mut self,
        hosts: &[Host],
        candidates: &[u32],
        hash: u64,
        attempt: u32,
        rng: &mut Stream,
    ) -> Option<u32> {
        if candidates.is_empty() {
            return None;
        }
        match self {
            Self::RoundRobin(rr) => rr.pick(hosts, candidates),
            Self::LeastRequest(lr) => lr.pick(hosts, candidates, rng),
            Self::Random => Some(candidates[index(rng.modulo(len(candidates)))]),
            // Callers resolve passthrough by address before asking.
            Self::Passthrough => None,
            // Retry attempt k: the k-th next ring entry (Envoy).
            Self::RingHash(r) => r.pick(hash, attempt),
            // Retry attempt k: the hash XOR (2^64 − k) (Envoy).
            Self::Maglev(m) => m.pick(if attempt == 0 {
                hash
            } else {
                hash ^ 0u64.wrapping_sub(u64::from(attempt))
            }),
        }
    }
}

fn len(c: &[u32]) -> u64 {
    c.len() as u64
}

fn index(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn equal_weights(hosts: &[Host], candidates: &[u32]) -> bool {
    let mut it = candidates.iter().map(|&c| hosts[c as usize].weight);
    let first = it.next();
    it.all(|w| Some(w) == first)
}

// === Earliest-deadline-first scheduler ===

/// Envoy's EDF scheduler: each entry is due at `current + 1/weight`; the
/// earliest is picked and re-added. Ties go to the earlier insertion.
#[derive(Clone, Debug, Default)]
pub(crate) struct Edf {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    current: f64,
    seq: u64,
}

impl Edf {
    fn clear(&mut self) {
        self.heap.clear();
        self.current = 0.0;
        self.seq = 0;
    }

    fn add(&mut self, item: u32, weight: f64) {
        let deadline = self.current + 1.0 / weight;
        // Positive finite doubles order like their bit patterns.
        self.heap
            .push(Reverse((deadline.to_bits(), self.seq, item)));
        self.seq += 1;
    }

    /// Pops the earliest entry and advances the scheduler's time to it.
    fn pop(&mut self) -> Option<u32> {
        let Reverse((deadline, _, item)) = self.heap.pop()?;
        self.current = f64::from_bits(deadline);
        Some(item)
    }
}

// === ROUND_ROBIN ===

/// Round robin: an index over the candidates when weights are equal, EDF
/// when they differ (reference §4.2).
#[derive(Clone, Debug)]
pub(crate) struct RoundRobin {
    /// Kept across rebuilds, as Envoy keeps it; starts at a random value.
    index: u64,
    /// `index % candidates`, kept incrementally (no division per pick).
    pos: usize,
    len: usize,
    edf: Option<Edf>,
}

impl RoundRobin {
    fn new(start: u64) -> Self {
        Self {
            index: start,
            pos: 0,
            len: 0,
            edf: None,
        }
    }

    fn rebuild(&mut self, hosts: &[Host], candidates: &[u32]) {
        self.len = candidates.len();
        self.pos = if self.len == 0 {
            0
        } else {
            index(self.index % len(candidates))
        };
        if equal_weights(hosts, candidates) {
            self.edf = None;
            return;
        }
        let edf = self.edf.get_or_insert_with(Edf::default);
        edf.clear();
        for &c in candidates {
            edf.add(c, f64::from(hosts[c as usize].weight));
        }
    }

    fn pick(&mut self, hosts: &[Host], candidates: &[u32]) -> Option<u32> {
        if let Some(edf) = &mut self.edf {
            let item = edf.pop()?;
            edf.add(item, f64::from(hosts[item as usize].weight));
            return Some(item);
        }
        if self.len != candidates.len() {
            self.rebuild(hosts, candidates);
        }
        let c = candidates[self.pos];
        self.index = self.index.wrapping_add(1);
        self.pos += 1;
        if self.pos == self.len {
            self.pos = 0;
        }
        Some(c)
    }
}

// === LEAST_REQUEST ===

/// Least request: power of two choices for equal weights, EDF over
/// `weight / (active + 1)` otherwise (reference §4.3).
#[derive(Clone, Debug, Default)]
pub(crate) struct LeastRequest {
    edf: Option<Edf>,
}

/// Envoy's default `choice_count`.
const CHOICE_COUNT: u32 = 2;

impl LeastRequest {
    fn rebuild(&mut self, hosts: &[Host], candidates: &[u32]) {
        if equal_weights(hosts, candidates) {
            self.edf = None;
            return;
        }
        let edf = self.edf.get_or_insert_with(Edf::default);
        edf.clear();
        for &c in candidates {
            edf.add(c, lr_weight(&hosts[c as usize]));
        }
    }

    fn pick(&mut self, hosts: &[Host], candidates: &[u32], rng: &mut Stream) -> Option<u32> {
        if let Some(edf) = &mut self.edf {
            let item = edf.pop()?;
            // Re-add with the weight as it is now (Envoy refreshes the
            // dynamic weight when the host goes back into the scheduler).
            edf.add(item, lr_weight(&hosts[item as usize]));
            return Some(item);
        }
        let mut chosen: Option<u32> = None;
        for _ in 0..CHOICE_COUNT {
            let c = candidates[index(rng.modulo(len(candidates)))];
            chosen = match chosen {
                // A later draw wins only with strictly fewer active requests.
                Some(prev)
                    if hosts[c as usize].active_requests < hosts[prev as usize].active_requests =>
                {
                    Some(c)
                }
                Some(prev) => Some(prev),
                None => Some(c),
            };
        }
        chosen
    }
}

/// `weight / (active + 1) ^ bias` with Envoy's default bias 1.0.
fn lr_weight(h: &Host) -> f64 {
    f64::from(h.weight) / (f64::from(h.active_requests) + 1.0)
}

// === RING_HASH ===

/// Envoy's ketama ring (reference §4.5).
#[derive(Clone, Debug)]
pub(crate) struct Ring {
    minimum_ring_size: u64,
    /// (hash, endpoint), sorted by hash.
    entries: Vec<(u64, u32)>,
    /// `starts[b]` = index of the first entry whose hash's top byte is ≥ b
    /// (257 values): narrows the search to one bucket. Same answer as a
    /// binary search over the whole ring, with fewer cache misses.
    starts: Vec<u32>,
}

/// Envoy's `maximum_ring_size` default.
const MAX_RING_SIZE: f64 = 8_388_608.0;

impl Ring {
    fn new(minimum_ring_size: u64) -> Self {
        Self {
            minimum_ring_size,
            entries: Vec::new(),
            starts: Vec::new(),
        }
    }

    fn rebuild(&mut self, hosts: &[Host], candidates: &[u32]) {
        self.entries.clear();
        self.starts.clear();
        if candidates.is_empty() {
            return;
        }
        let total: f64 = candidates
            .iter()
            .map(|&c| f64::from(hosts[c as usize].weight))
            .sum();
        let min_w = candidates
            .iter()
            .map(|&c| f64::from(hosts[c as usize].weight) / total)
            .fold(f64::INFINITY, f64::min);
        #[allow(clippy::cast_precision_loss)]
        let scale = ((min_w * self.minimum_ring_size as f64).ceil() / min_w).min(MAX_RING_SIZE);
        let mut key = String::with_capacity(64);
        let mut current = 0.0_f64;
        let mut target = 0.0_f64;
        for &c in candidates {
            let h = &hosts[c as usize];
            target += scale * f64::from(h.weight) / total;
            let mut j: u64 = 0;
            while current < target {
                key.clear();
                key.push_str(&h.address);
                key.push('_');
                push_u64(&mut key, j);
                self.entries.push((xxh64(key.as_bytes(), 0), c));
                j += 1;
                current += 1.0;
            }
        }
        self.entries.sort_by_key(|e| e.0);
        self.starts.clear();
        let mut i = 0;
        for b in 0..=256u64 {
            while i < self.entries.len() && (self.entries[i].0 >> 56) < b {
                i += 1;
            }
            self.starts.push(u32::try_from(i).unwrap_or(u32::MAX));
        }
    }

    /// The first entry with hash ≥ `hash`, wrapping to the first entry.
    fn pick(&self, hash: u64, attempt: u32) -> Option<u32> {
        if self.entries.is_empty() {
            return None;
        }
        let b = usize::try_from(hash >> 56).unwrap_or(0);
        let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        let i = lo + self.entries[lo..hi].partition_point(|e| e.0 < hash);
        let i = if i == self.entries.len() { 0 } else { i };
        Some(self.entries[(i + attempt as usize) % self.entries.len()].1)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

fn push_u64(s: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + u8::try_from(v % 10).unwrap_or(0);
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        s.push(char::from(b));
    }
}

// === MAGLEV ===

/// Envoy's maglev table (reference §4.6).
#[derive(Clone, Debug)]
pub(crate) struct Maglev {
    table_size: u64,
    table: Vec<u32>,
}

impl Maglev {
    fn new(table_size: u64) -> Self {
        Self {
            table_size,
            table: Vec::new(),
        }
    }

    fn rebuild(&mut self, hosts: &[Host], candidates: &[u32]) {
        self.table.clear();
        if candidates.is_empty() {
            return;
        }
        struct Entry {
            endpoint: u32,
            offset: u64,
            skip: u64,
            weight: f64,
            target: f64,
            next: u64,
        }
        let m = self.table_size;
        let total: f64 = candidates
            .iter()
            .map(|&c| f64::from(hosts[c as usize].weight))
            .sum();
        let mut order: Vec<u32> = candidates.to_vec();
        order.sort_by(|&a, &b| hosts[a as usize].address.cmp(&hosts[b as usize].address));
        let mut entries: Vec<Entry> = order
            .iter()
            .map(|&c| {
                let key = hosts[c as usize].address.as_bytes();
                Entry {
                    endpoint: c,
                    offset: xxh64(key, 0) % m,
                    skip: xxh64(key, 1) % (m - 1) + 1,
                    weight: f64::from(hosts[c as usize].weight) / total,
                    target: 0.0,
                    next: 0,
                }
            })
            .collect();
        let max_weight = entries.iter().map(|e| e.weight).fold(0.0, f64::max);
        for e in &mut entries {
            e.target = max_weight;
        }
        const EMPTY: u32 = u32::MAX;
        self.table.resize(index(m), EMPTY);
        let mut filled: u64 = 0;
        let mut iteration: u64 = 1;
        while filled < m {
            for e in &mut entries {
                if filled == m {
                    break;
                }
                // A host of the largest weight takes a turn every iteration,
                // one of a third of it every third iteration.
                #[allow(clippy::cast_precision_loss)]
                if (iteration as f64) * e.weight < e.target {
                    continue;
                }
                e.target += max_weight;
                let mut slot = (e.offset + e.skip * e.next) % m;
                while self.table[index(slot)] != EMPTY {
                    e.next += 1;
                    slot = (e.offset + e.skip * e.next) % m;
                }
                self.table[index(slot)] = e.endpoint;
                e.next += 1;
                filled += 1;
            }
            iteration += 1;
        }
    }

    fn pick(&self, hash: u64) -> Option<u32> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[index(hash % self.table_size)])
    }

    #[cfg(test)]
    pub(crate) fn counts(&self, endpoints: usize) -> Vec<usize> {
        let mut c = vec![0; endpoints];
        for &e in &self.table {
            c[e as usize] += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    //! The balancers on their own, with exact expectations where Envoy's
    //! algorithms are exact (reference §4).

    use super::*;
    use crate::rng::Component;

    fn hosts(weights: &[u32]) -> Vec<Host> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Host {
                address: format!("10.0.0.{}:8080", i + 1).into_boxed_str(),
                weight: w,
                active_requests: 0,
            })
            .collect()
    }

    fn all(hosts: &[Host]) -> Vec<u32> {
        (0..u32::try_from(hosts.len()).unwrap()).collect()
    }

    fn rng() -> Stream {
        Stream::new(11, Component::LoadBalancer)
    }

    fn built(policy: LbPolicy, hosts: &[Host]) -> Balancer {
        let mut b = Balancer::new(policy, &mut rng());
        b.rebuild(hosts, &all(hosts));
        b
    }

    /// How many of `picks` picks each endpoint gets, hashing `hash(i)`.
    fn counts(b: &mut Balancer, hosts: &[Host], picks: u64, hash: impl Fn(u64) -> u64) -> Vec<u64> {
        let candidates = all(hosts);
        let mut r = rng();
        let mut out = vec![0; hosts.len()];
        for i in 0..picks {
            let e = b
                .pick(hosts, &candidates, hash(i), 0, &mut r)
                .expect("a candidate");
            out[e as usize] += 1;
        }
        out
    }

    fn ring(b: &Balancer) -> &Ring {
        match b {
            Balancer::RingHash(r) => r,
            other => panic!("not a ring: {other:?}"),
        }
    }

    fn ring_counts(r: &Ring, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &(_, e) in &r.entries {
            c[e as usize] += 1;
        }
        c
    }

    const RING: LbPolicy = LbPolicy::RingHash {
        minimum_ring_size: 1024,
    };

    #[test]
    fn no_candidate_gives_no_endpoint_for_every_policy() {
        let h = hosts(&[1, 1]);
        for policy in [
            LbPolicy::RoundRobin,
            LbPolicy::LeastRequest,
            LbPolicy::Random,
            LbPolicy::Passthrough,
            RING,
            LbPolicy::Maglev { table_size: 7 },
        ] {
            let mut b = Balancer::new(policy, &mut rng());
            b.rebuild(&h, &[]);
            assert_eq!(b.pick(&h, &[], 1, 0, &mut rng()), None, "{policy:?}");
        }
    }

    #[test]
    fn round_robin_gives_each_of_n_hosts_exactly_k_of_k_times_n_picks() {
        let h = hosts(&[1, 1, 1, 1, 1]);
        let mut b = built(LbPolicy::RoundRobin, &h);
        for _ in 0..3 {
            assert_eq!(counts(&mut b, &h, 5 * 40, |_| 0), [40; 5]);
        }
        // And over any window of n consecutive picks, each host exactly once.
        let c = all(&h);
        let mut r = rng();
        let seq: Vec<u32> = (0..23)
            .map(|_| b.pick(&h, &c, 0, 0, &mut r).unwrap())
            .collect();
        for w in seq.windows(5) {
            let mut sorted = w.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3, 4], "{seq:?}");
        }
    }

    #[test]
    fn round_robin_keeps_its_index_when_the_host_list_changes() {
        let h = hosts(&[1, 1, 1, 1]);
        let mut b = built(LbPolicy::RoundRobin, &h);
        let Balancer::RoundRobin(rr) = &b else {
            unreachable!()
        };
        let start = rr.index;
        let c = all(&h);
        let first = b.pick(&h, &c, 0, 0, &mut rng()).unwrap();
        assert_eq!(u64::from(first), start % 4);
        // One host ejected: the index continues, modulo the new length.
        let fewer = [0, 2, 3];
        b.rebuild(&h, &fewer);
        let next = b.pick(&h, &fewer, 0, 0, &mut rng()).unwrap();
        assert_eq!(next, fewer[usize::try_from((start + 1) % 3).unwrap()]);
    }

    #[test]
    fn round_robin_with_unequal_weights_is_exactly_proportional_over_each_edf_cycle() {
        let weights = [1, 2, 3, 4];
        let h = hosts(&weights);
        let mut b = built(LbPolicy::RoundRobin, &h);
        let c = all(&h);
        let mut r = rng();
        let cycle: u32 = weights.iter().sum();
        let mut got = [0u32; 4];
        for cycles in 1..=50 {
            for _ in 0..cycle {
                got[b.pick(&h, &c, 0, 0, &mut r).unwrap() as usize] += 1;
            }
            for (g, w) in got.iter().zip(weights) {
                assert!(
                    g.abs_diff(w * cycles) <= 1,
                    "after {cycles} cycles: {got:?}"
                );
            }
        }
    }

    #[test]
    fn least_request_prefers_the_less_loaded_of_two_draws() {
        // Two draws with replacement; the second replaces the first only if
        // strictly less loaded. With one busy host among n, the busy one is
        // chosen only if both draws hit it: 1/n². Two hosts → 1/4; three → 1/9.
        const DRAWS: u64 = 10_000;
        for (n, want) in [(2usize, 0.25), (3, 1.0 / 9.0)] {
            let mut h = hosts(&vec![1; n]);
            h[0].active_requests = 5;
            let mut b = built(LbPolicy::LeastRequest, &h);
            let busy = counts(&mut b, &h, DRAWS, |_| 0)[0] as f64 / DRAWS as f64;
            // σ = sqrt(p(1-p)/10,000) ≤ 0.0044; ±0.03 is about 7σ.
            assert!((busy - want).abs() < 0.03, "{n} hosts: busy share {busy}");
        }
        // Equal loads: ties keep the first draw, so the pick is uniform.
        let h = hosts(&[1, 1]);
        let mut b = built(LbPolicy::LeastRequest, &h);
        let c = counts(&mut b, &h, DRAWS, |_| 0);
        assert!(c.iter().all(|&x| (4_700..=5_300).contains(&x)), "{c:?}");
    }

    #[test]
    fn least_request_with_unequal_weights_divides_the_weight_by_active_plus_one() {
        // Weights 1 and 3, with 2 requests active on the heavy host: dynamic
        // weights 1/1 and 3/3, so the EDF alternates.
        let mut h = hosts(&[1, 3]);
        h[1].active_requests = 2;
        let mut b = built(LbPolicy::LeastRequest, &h);
        assert_eq!(counts(&mut b, &h, 1000, |_| 0), [500, 500]);
        // Idle, the weights apply as they are.
        let h = hosts(&[1, 3]);
        let mut b = built(LbPolicy::LeastRequest, &h);
        assert_eq!(counts(&mut b, &h, 1000, |_| 0), [250, 750]);
    }

    #[test]
    fn random_spreads_uniformly() {
        let h = hosts(&[1, 1, 1, 1]);
        let mut b = built(LbPolicy::Random, &h);
        let c = counts(&mut b, &h, 20_000, |_| 0);
        assert!(c.iter().all(|&x| (4_600..=5_400).contains(&x)), "{c:?}");
    }

    #[test]
    fn ring_of_three_equal_hosts_has_1026_entries_342_each() {
        let h = hosts(&[1, 1, 1]);
        let b = built(RING, &h);
        assert_eq!(ring(&b).len(), 1026);
        assert_eq!(ring_counts(ring(&b), 3), [342, 342, 342]);
        // Two hosts: 512 each; one host: the minimum size.
        let h2 = hosts(&[1, 1]);
        assert_eq!(ring_counts(ring(&built(RING, &h2)), 2), [512, 512]);
        assert_eq!(ring(&built(RING, &hosts(&[1]))).len(), 1024);
        // Weights 1:2 → w_min = 1/3, scale = ceil(1024/3)·3 = 1026.
        let h12 = hosts(&[1, 2]);
        assert_eq!(ring_counts(ring(&built(RING, &h12)), 2), [342, 684]);
    }

    #[test]
    fn ring_entries_are_xxhash_of_address_underscore_index_sorted() {
        let h = hosts(&[1, 1, 1]);
        let b = built(RING, &h);
        let r = ring(&b);
        assert!(r.entries.windows(2).all(|w| w[0].0 <= w[1].0));
        for (e, host) in h.iter().enumerate() {
            for j in [0, 1, 341] {
                let hash = xxh64(format!("{}_{j}", host.address).as_bytes(), 0);
                assert!(
                    r.entries.contains(&(hash, u32::try_from(e).unwrap())),
                    "{}_{j}",
                    host.address
                );
            }
        }
    }

    #[test]
    fn ring_lookup_takes_the_first_entry_at_or_after_the_hash_and_wraps() {
        let h = hosts(&[1, 1, 1]);
        let b = built(RING, &h);
        let r = ring(&b);
        let (first, last) = (r.entries[0], r.entries[r.len() - 1]);
        assert_eq!(r.pick(0, 0), Some(first.1));
        assert_eq!(r.pick(first.0, 0), Some(first.1));
        assert_eq!(r.pick(last.0, 0), Some(last.1));
        if last.0 < u64::MAX {
            assert_eq!(r.pick(last.0 + 1, 0), Some(first.1), "wraps to entry 0");
        }
        for w in r.entries.windows(2).take(100) {
            if w[0].0 < w[1].0 {
                assert_eq!(r.pick(w[0].0 + 1, 0), Some(w[1].1));
            }
        }
    }

    #[test]
    fn hashing_is_stable_the_same_key_hits_the_same_host() {
        let h = hosts(&[1, 1, 1, 1, 1]);
        for policy in [RING, LbPolicy::Maglev { table_size: 65_537 }] {
            let mut b = built(policy, &h);
            let c = all(&h);
            let key = |i: u64| xxh64(format!("user-{i}").as_bytes(), 0);
            let first: Vec<u32> = (0..500)
                .map(|i| b.pick(&h, &c, key(i), 0, &mut rng()).unwrap())
                .collect();
            let mut rebuilt = built(policy, &h);
            for i in (0..500).rev() {
                assert_eq!(
                    b.pick(&h, &c, key(i), 0, &mut rng()),
                    Some(first[i as usize])
                );
                assert_eq!(
                    rebuilt.pick(&h, &c, key(i), 0, &mut rng()),
                    Some(first[i as usize])
                );
            }
            let spread = counts(&mut b, &h, 10_000, key);
            assert!(spread.iter().all(|&n| n > 1_000), "{policy:?}: {spread:?}");
        }
    }

    #[test]
    fn maglev_of_three_equal_hosts_fills_21846_21846_21845() {
        let h = hosts(&[1, 1, 1]);
        let Balancer::Maglev(m) = built(LbPolicy::Maglev { table_size: 65_537 }, &h) else {
            unreachable!()
        };
        let mut c = m.counts(3);
        c.sort_unstable();
        assert_eq!(c, [21_845, 21_846, 21_846]);
        assert!(m.table.iter().all(|&e| e < 3), "every slot filled");
        // A small table: 7 slots for 3 hosts → 3/2/2.
        let Balancer::Maglev(m) = built(LbPolicy::Maglev { table_size: 7 }, &h) else {
            unreachable!()
        };
        let mut c = m.counts(3);
        c.sort_unstable();
        assert_eq!(c, [2, 2, 3]);
    }

    #[test]
    fn maglev_with_unequal_weights_fills_the_table_in_proportion() {
        let h = hosts(&[1, 2, 5]);
        let Balancer::Maglev(m) = built(LbPolicy::Maglev { table_size: 65_537 }, &h) else {
            unreachable!()
        };
        let c = m.counts(3);
        for (got, w) in c.iter().zip([1.0, 2.0, 5.0]) {
            let share = *got as f64 / 65_537.0;
            assert!((share - w / 8.0).abs() < 0.001, "{c:?}");
        }
    }

    #[test]
    fn maglev_looks_up_hash_modulo_table_size() {
        let h = hosts(&[1, 1, 1]);
        let Balancer::Maglev(m) = built(LbPolicy::Maglev { table_size: 65_537 }, &h) else {
            unreachable!()
        };
        for hash in [0u64, 1, 65_536, 65_537, 65_538, u64::MAX] {
            let slot = usize::try_from(hash % 65_537).unwrap();
            assert_eq!(m.pick(hash), Some(m.table[slot]));
        }
    }

    #[test]
    fn ring_bucket_index_finds_the_same_entry_as_a_full_binary_search() {
        let h = hosts(&[1, 2, 3, 1, 1]);
        let mut ring = Ring::new(1024);
        ring.rebuild(&h, &all(&h));
        let mut r = rng();
        let mut probes: Vec<u64> = (0..20_000).map(|_| r.next_u64()).collect();
        probes.extend(
            ring.entries
                .iter()
                .flat_map(|e| [e.0, e.0.wrapping_add(1), e.0.wrapping_sub(1)]),
        );
        probes.extend([0, u64::MAX]);
        for hash in probes {
            let i = ring.entries.partition_point(|e| e.0 < hash);
            let expected = ring.entries[if i == ring.entries.len() { 0 } else { i }].1;
            assert_eq!(ring.pick(hash, 0), Some(expected), "hash {hash:#x}");
        }
    }
}
