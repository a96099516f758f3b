#!/usr/bin/env python3
"""A plain SimPy model of experiments/one-bad-pod.toml, for comparison only.

The issue behind meshsim asks for a simulator "over 200x faster" than such a
model. This is the straightforward SimPy way: one process per request, one
for the arrivals, one for the outlier-detection interval. It models what
one-bad-pod needs: Poisson arrivals at 1,000 qps, round robin over 10 pods,
lognormal latency (median 20 ms, sigma 0.5), pod 3 answering 503 from 60 s,
consecutive5xxErrors 5, interval 10 s, baseEjectionTime 30 s (times the
ejection count), maxEjectionPercent 10. No connection pools, retries,
routing tables or metrics windows: a lower bound on the work.

    pip install simpy
    python3 bench/simpy_one_bad_pod.py 300   # simulated seconds

Not run by the tests. See BENCHMARKS.md for the figures.
"""
import math
import random
import sys
import time

import simpy

PODS = 10
QPS = 1000.0
MEDIAN_S = 0.020
SIGMA = 0.5
BAD_POD, BAD_FROM_S = 3, 60.0
CONSECUTIVE, INTERVAL_S, BASE_S, MAX_PERCENT = 5, 10.0, 30.0, 10


class Mesh:
    def __init__(self, env, rng):
        self.env, self.rng = env, rng
        self.rr = 0
        self.consecutive = [0] * PODS
        self.ejected_until = [None] * PODS
        self.ejections = [0] * PODS
        self.requests = 0
        self.errors = 0

    def healthy(self):
        return [p for p in range(PODS) if self.ejected_until[p] is None]

    def pick(self):
        hosts = self.healthy() or list(range(PODS))
        self.rr += 1
        return hosts[self.rr % len(hosts)]

    def request(self):
        pod = self.pick()
        latency = MEDIAN_S * math.exp(SIGMA * self.rng.gauss(0.0, 1.0))
        yield self.env.timeout(latency)
        bad = pod == BAD_POD and self.env.now >= BAD_FROM_S
        self.requests += 1
        if bad:
            self.errors += 1
            self.consecutive[pod] += 1
            ejected = PODS - len(self.healthy())
            if (
                self.consecutive[pod] >= CONSECUTIVE
                and self.ejected_until[pod] is None
                and (ejected + 1) * 100 <= PODS * MAX_PERCENT
            ):
                self.ejections[pod] += 1
                self.ejected_until[pod] = self.env.now + BASE_S * self.ejections[pod]
                self.consecutive[pod] = 0
        else:
            self.consecutive[pod] = 0

    def arrivals(self):
        while True:
            yield self.env.timeout(self.rng.expovariate(QPS))
            self.env.process(self.request())

    def detector(self):
        while True:
            yield self.env.timeout(INTERVAL_S)
            for p in range(PODS):
                until = self.ejected_until[p]
                if until is not None and self.env.now >= until:
                    self.ejected_until[p] = None


def main():
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 300.0
    env = simpy.Environment()
    mesh = Mesh(env, random.Random(1))
    env.process(mesh.arrivals())
    env.process(mesh.detector())
    start = time.perf_counter()
    env.run(until=duration)
    wall = time.perf_counter() - start
    print(
        f"simpy one-bad-pod: {duration:.0f} s simulated, {mesh.requests} requests, "
        f"{mesh.errors} answered 503, {sum(mesh.ejections)} ejections, "
        f"{wall:.2f} s wall, {mesh.requests / wall:,.0f} requests/s"
    )


if __name__ == "__main__":
    main()
