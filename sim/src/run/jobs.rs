//! Jobs: a pod serving a request by making its own calls through its
//! sidecar, in order or all at once, failing fast unless told to ignore.

use super::*;

impl<'m> Run<'m> {
    /// Job `job` if it is live, of `generation`, and call `call` is in flight.
    pub(super) fn job(&self, job: u32, generation: u32, call: u16) -> Option<Job> {
        let j = self.jobs.get(job as usize)?;
        (j.live && j.generation == generation && j.pending & (1 << call) != 0).then_some(*j)
    }

    /// A pod starts serving `slot`'s attempt by making its calls; its own
    /// latency `ns` and answer `status` were drawn already.
    /// `(slot, attempt)`: the attempt served; `(ns, status)`: the pod's own
    /// latency and answer.
    pub(super) fn start_job(
        &mut self,
        now: Time,
        pod: usize,
        (slot, attempt): (u32, u32),
        workload: u32,
        (ns, status): (u64, u16),
    ) {
        let inbound_depth = self.reqs[slot as usize].depth;
        let id = match self.free_jobs.pop() {
            Some(id) => id,
            None => {
                self.jobs.push(Job {
                    live: false,
                    generation: 0,
                    pod: 0,
                    slot: 0,
                    attempt: 0,
                    workload: 0,
                    headers: HeaderSet::EMPTY,
                    depth: 0,
                    next: 0,
                    pending: 0,
                    reqs: [None; MAX_CALLS],
                    failed: false,
                    ns: 0,
                    status: 0,
                });
                u32::try_from(self.jobs.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let inbound_headers = self.headers_of(slot);
        let j = &mut self.jobs[id as usize];
        *j = Job {
            live: true,
            generation: j.generation.wrapping_add(1),
            pod: u32::try_from(pod).unwrap_or(u32::MAX),
            slot,
            attempt,
            workload,
            headers: inbound_headers,
            depth: inbound_depth.saturating_add(1),
            next: 0,
            pending: 0,
            reqs: [None; MAX_CALLS],
            failed: false,
            ns,
            status,
        };
        let generation = j.generation;
        let w = &self.model.calls.workloads[workload as usize];
        let n = if w.parallel { w.calls.len() } else { 1 };
        for call in 0..n {
            // A call can fail at once (a breaker overflow) and end the job.
            let j = self.jobs[id as usize];
            if !j.live || j.generation != generation {
                break;
            }
            self.start_call(now, id, u16::try_from(call).unwrap_or(0));
        }
    }

    /// Job `id` makes call `call` through its pod's sidecar.
    pub(super) fn start_call(&mut self, now: Time, id: u32, call: u16) {
        let m = self.model;
        let j = &mut self.jobs[id as usize];
        let (generation, depth) = (j.generation, j.depth);
        j.pending |= 1 << call;
        j.next = call + 1;
        let spec = &m.calls.workloads[j.workload as usize].calls[usize::from(call)];
        let headers = spec.outbound(&j.headers);
        let pod = j.pod as usize;
        if let Some(t) = spec.timeout {
            self.queue.push(
                now + t,
                Class::Traffic,
                Ev::CallTimeout {
                    job: id,
                    generation,
                    call,
                },
            );
        }
        let origin = Origin::Call {
            job: id,
            generation,
            call,
        };
        let proxy = m.pods[pod].proxy.map(|p| p as usize);
        let Some(proxy) = proxy.filter(|_| depth <= MAX_DEPTH) else {
            // Too deep: a loop through the routes. Refused, 508 Loop Detected.
            self.local_answer(now, (0, origin, spec.edge), 508, ResponseFlags::NONE);
            return;
        };
        // The application's connection to its sidecar lands on any worker.
        let worker = self.pick_worker(proxy);
        let slot = self.request(
            now,
            &Call {
                proxy,
                worker,
                origin,
                edge: spec.edge,
                to: (&spec.host, &spec.path),
                headers,
                depth,
            },
        );
        // Unless it was already answered (an overflow ends it at once).
        if let Some(slot) = slot
            && self.job(id, generation, call).is_some()
        {
            self.jobs[id as usize].reqs[usize::from(call)] = Some(slot);
        }
    }

    /// Call `call` of job `id` ended: `failed` if its answer was ≥ 500 or the
    /// application's timeout fired.
    pub(super) fn call_done(
        &mut self,
        now: Time,
        id: u32,
        generation: u32,
        call: u16,
        failed: bool,
    ) {
        let Some(mut j) = self.job(id, generation, call) else {
            return;
        };
        j.pending &= !(1 << call);
        j.reqs[usize::from(call)] = None;
        let w = &self.model.calls.workloads[j.workload as usize];
        let n = u16::try_from(w.calls.len()).unwrap_or(0);
        if failed && !w.calls[usize::from(call)].ignore_errors {
            // Fail fast: give up on the calls still in flight.
            j.failed = true;
            let reqs = j.reqs;
            j.pending = 0;
            self.jobs[id as usize] = j;
            for slot in reqs.into_iter().flatten() {
                self.cancel(now, slot);
            }
            self.finish_job(now, id);
            return;
        }
        self.jobs[id as usize] = j;
        if !w.parallel && j.next < n {
            self.start_call(now, id, j.next);
        } else if j.next >= n && j.pending == 0 {
            self.finish_job(now, id);
        }
    }

    /// The calls are done: the pod spends its own latency and answers (500
    /// if a call failed).
    pub(super) fn finish_job(&mut self, now: Time, id: u32) {
        let j = &mut self.jobs[id as usize];
        j.live = false;
        let j = *j;
        self.free_jobs.push(id);
        self.queue.push(
            now + Duration::from_nanos(j.ns),
            Class::Traffic,
            Ev::Served {
                slot: j.slot,
                attempt: j.attempt,
                pod: PodId::new(j.pod as usize),
                status: if j.failed { 500 } else { j.status },
            },
        );
    }
}
