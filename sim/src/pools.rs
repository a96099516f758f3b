//! Envoy's per-host HTTP/1.1 connection pools, one per (proxy, pod) that
//! ever talked: one request at a time per connection, connections reused
//! until `maxRequestsPerConnection`, requests waiting for a connection in
//! FIFO order. A connection being set up (a pod's `connectTime`) counts
//! apart until it is ready.
//!
//! Laid out for a run with thousands of pools: a pool is eight words, in
//! one table indexed by (proxy, pod); its
//! idle connections (a stack: the last one returned is reused first, as
//! Envoy does) and its waiting requests (a queue) are linked lists through
//! two arenas shared by all pools, so a pool's first use allocates nothing
//! of its own and the arenas stop growing once the run is warm. The idle
//! connection on top of the stack is kept in the pool itself: a pool that
//! mostly has one connection (many pools, little traffic each) reuses it
//! without touching the arena.

/// The end of a list.
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Pool {
    /// The requests served by the idle connection on top of the stack
    /// (`NIL`: no idle connection).
    top: u32,
    /// The idle connections below the top (a list in the arena).
    idle: u32,
    /// Connections serving a request.
    busy: u32,
    /// The oldest and newest waiting requests.
    head: u32,
    tail: u32,
    /// Connections being set up.
    connecting: u32,
    /// Requests in the waiting list (some may have left their request:
    /// they are dropped when their turn comes).
    waiting: u32,
    /// Its (proxy, pod) ever talked.
    used: bool,
}

impl Pool {
    const UNUSED: Self = Self {
        top: NIL,
        idle: NIL,
        busy: 0,
        head: NIL,
        tail: NIL,
        connecting: 0,
        waiting: 0,
        used: false,
    };
}

/// An idle connection: the requests it has served.
#[derive(Clone, Copy, Debug)]
struct Conn {
    served: u32,
    next: u32,
}

/// A request waiting for a connection: its slot and attempt.
#[derive(Clone, Copy, Debug)]
struct Wait {
    slot: u32,
    attempt: u32,
    next: u32,
}

/// A pool's number, from [`Pools::pool`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PoolId(u32);

/// Every pool of a run.
#[derive(Debug)]
pub(crate) struct Pools {
    pods: usize,
    /// The pool of (proxy, pod) at `proxy * pods + pod` (one lookup, no
    /// index in between: a request reads its pool's one cache line).
    pools: Vec<Pool>,
    conns: Vec<Conn>,
    free_conn: u32,
    waits: Vec<Wait>,
    free_wait: u32,
}

impl Pools {
    pub(crate) fn new(proxies: usize, pods: usize) -> Self {
        Self {
            pods,
            pools: vec![Pool::UNUSED; proxies * pods],
            conns: Vec::new(),
            free_conn: NIL,
            waits: Vec::new(),
            free_wait: NIL,
        }
    }

    /// The pool of (proxy `p`, `pod`), in use from now on.
    pub(crate) fn pool(&mut self, p: usize, pod: u32) -> PoolId {
        let k = p * self.pods + pod as usize;
        self.pools[k].used = true;
        PoolId(u32::try_from(k).unwrap_or(NIL))
    }

    /// The pool of (proxy `p`, `pod`) if it was ever used.
    pub(crate) fn existing(&self, p: usize, pod: u32) -> Option<PoolId> {
        let k = p * self.pods + pod as usize;
        let used = self.pools.get(k)?.used;
        used.then(|| PoolId(u32::try_from(k).unwrap_or(NIL)))
    }

    /// An idle connection is there.
    pub(crate) fn ready(&self, id: PoolId) -> bool {
        self.pools[id.0 as usize].top != NIL
    }

    /// No connection at all, idle, busy or being set up.
    pub(crate) fn empty(&self, id: PoolId) -> bool {
        let pl = &self.pools[id.0 as usize];
        pl.top == NIL && pl.busy == 0 && pl.connecting == 0
    }

    /// Connections being set up.
    pub(crate) fn connecting(&self, id: PoolId) -> u32 {
        self.pools[id.0 as usize].connecting
    }

    pub(crate) fn set_connecting(&mut self, id: PoolId, n: u32) {
        self.pools[id.0 as usize].connecting = n;
    }

    /// Entries in the waiting list.
    pub(crate) fn waiting(&self, id: PoolId) -> u32 {
        self.pools[id.0 as usize].waiting
    }

    pub(crate) fn busy(&self, id: PoolId) -> u32 {
        self.pools[id.0 as usize].busy
    }

    /// Takes the idle connection returned last; the requests it has served.
    #[inline(always)]
    pub(crate) fn take_idle(&mut self, id: PoolId) -> Option<u32> {
        let pl = &mut self.pools[id.0 as usize];
        let served = pl.top;
        if served == NIL {
            return None;
        }
        // The next one down comes up from the arena, if any.
        let c = pl.idle;
        match self.conns.get(c as usize).copied() {
            Some(below) => {
                pl.top = below.served;
                pl.idle = below.next;
                self.conns[c as usize].next = self.free_conn;
                self.free_conn = c;
            }
            None => pl.top = NIL,
        }
        Some(served)
    }

    /// An idle connection that has served `served` requests.
    #[inline(always)]
    pub(crate) fn put_idle(&mut self, id: PoolId, served: u32) {
        let pl = self.pools[id.0 as usize];
        if pl.top != NIL {
            // The one on top goes down into the arena.
            let conn = Conn {
                served: pl.top,
                next: pl.idle,
            };
            let c = if self.free_conn == NIL {
                self.conns.push(conn);
                u32::try_from(self.conns.len() - 1).unwrap_or(NIL)
            } else {
                let c = self.free_conn;
                self.free_conn = self.conns[c as usize].next;
                self.conns[c as usize] = conn;
                c
            };
            self.pools[id.0 as usize].idle = c;
        }
        // (`NIL` means none: a connection never serves that many.)
        self.pools[id.0 as usize].top = served.min(NIL - 1);
    }

    pub(crate) fn set_busy(&mut self, id: PoolId, busy: u32) {
        self.pools[id.0 as usize].busy = busy;
    }

    /// Attempt `attempt` of `slot` waits for a connection, last in line.
    pub(crate) fn wait(&mut self, id: PoolId, slot: u32, attempt: u32) {
        let w = Wait {
            slot,
            attempt,
            next: NIL,
        };
        let i = if self.free_wait == NIL {
            self.waits.push(w);
            u32::try_from(self.waits.len() - 1).unwrap_or(NIL)
        } else {
            let i = self.free_wait;
            self.free_wait = self.waits[i as usize].next;
            self.waits[i as usize] = w;
            i
        };
        let pl = &mut self.pools[id.0 as usize];
        pl.waiting += 1;
        if pl.tail == NIL {
            pl.head = i;
        } else {
            self.waits[pl.tail as usize].next = i;
        }
        pl.tail = i;
    }

    /// The (slot, attempt) first in line.
    pub(crate) fn first_waiting(&self, id: PoolId) -> Option<(u32, u32)> {
        let w = self.waits.get(self.pools[id.0 as usize].head as usize)?;
        Some((w.slot, w.attempt))
    }

    /// Removes the first in line.
    pub(crate) fn pop_waiting(&mut self, id: PoolId) {
        let pl = &mut self.pools[id.0 as usize];
        let i = pl.head;
        let Some(w) = self.waits.get_mut(i as usize) else {
            return;
        };
        pl.head = w.next;
        pl.waiting = pl.waiting.saturating_sub(1);
        if pl.head == NIL {
            pl.tail = NIL;
        }
        w.next = self.free_wait;
        self.free_wait = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_are_reused_last_returned_first() {
        let mut p = Pools::new(2, 3);
        let id = p.pool(1, 2);
        assert!(p.empty(id) && !p.ready(id));
        p.put_idle(id, 0);
        p.put_idle(id, 7);
        assert!(p.ready(id));
        assert_eq!(p.take_idle(id), Some(7));
        p.put_idle(id, 9);
        assert_eq!(p.take_idle(id), Some(9));
        assert_eq!(p.take_idle(id), Some(0));
        assert_eq!(p.take_idle(id), None);
        assert_eq!(p.existing(1, 2), Some(id));
        assert_eq!(p.existing(0, 2), None);
    }

    #[test]
    fn a_connection_being_set_up_keeps_the_pool_from_being_empty() {
        let mut p = Pools::new(1, 1);
        let id = p.pool(0, 0);
        p.wait(id, 1, 1);
        p.wait(id, 2, 1);
        assert_eq!(p.waiting(id), 2);
        p.set_connecting(id, 1);
        assert!(!p.empty(id) && !p.ready(id));
        p.set_connecting(id, 0);
        p.put_idle(id, 0);
        p.pop_waiting(id);
        assert_eq!(p.waiting(id), 1);
        assert!(p.ready(id));
    }

    #[test]
    fn waiting_requests_leave_in_arrival_order_per_pool() {
        let mut p = Pools::new(1, 2);
        let (a, b) = (p.pool(0, 0), p.pool(0, 1));
        p.wait(a, 1, 1);
        p.wait(b, 2, 1);
        p.wait(a, 3, 1);
        assert_eq!(p.first_waiting(a), Some((1, 1)));
        p.pop_waiting(a);
        p.wait(a, 4, 2);
        assert_eq!(p.first_waiting(a), Some((3, 1)));
        p.pop_waiting(a);
        assert_eq!(p.first_waiting(a), Some((4, 2)));
        p.pop_waiting(a);
        assert_eq!(p.first_waiting(a), None);
        assert_eq!(p.first_waiting(b), Some((2, 1)));
        // Freed entries are reused: no growth.
        p.wait(a, 5, 1);
        assert!(p.waits.len() <= 3);
    }
}
