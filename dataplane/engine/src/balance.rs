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
#[derive(Clone, Debug)]
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
            Self::RingHash(r) => r.pick(hash),
            Self::Maglev(m) => m.pick(hash),
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
    edf: Option<Edf>,
}

impl RoundRobin {
    fn new(start: u64) -> Self {
        Self {
            index: start,
            edf: None,
        }
    }

    fn rebuild(&mut self, hosts: &[Host], candidates: &[u32]) {
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
        let c = candidates[index(self.index % len(candidates))];
        self.index = self.index.wrapping_add(1);
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
}

/// Envoy's `maximum_ring_size` default.
const MAX_RING_SIZE: f64 = 8_388_608.0;

impl Ring {
    fn new(minimum_ring_size: u64) -> Self {
        Self {
            minimum_ring_size,
            entries: Vec::new(),
        }
    }

    fn rebuild(&mut self, hosts: &[Host], candidates: &[u32]) {
        self.entries.clear();
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
    }

    /// The first entry with hash ≥ `hash`, wrapping to the first entry.
    fn pick(&self, hash: u64) -> Option<u32> {
        if self.entries.is_empty() {
            return None;
        }
        let i = self.entries.partition_point(|e| e.0 < hash);
        Some(self.entries[if i == self.entries.len() { 0 } else { i }].1)
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
