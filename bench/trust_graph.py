"""Random sparse trust graphs for the network benches (bench/network.py, network_sim.py)."""

from __future__ import annotations

import random
from collections import deque


def trust_graph(n: int, rng: random.Random) -> list[set[int]]:
    """A connected undirected graph where each node has 3 to 5 neighbours (as far as chance
    allows): a random tree first, then random edges until each reaches its target degree."""
    target = [rng.randint(3, 5) for _ in range(n)]
    adj: list[set[int]] = [set() for _ in range(n)]
    order = list(range(n))
    rng.shuffle(order)
    for k, v in enumerate(order[1:], start=1):
        options = [u for u in order[:k] if len(adj[u]) < target[u]] or order[:k]
        u = rng.choice(options)
        adj[u].add(v)
        adj[v].add(u)
    for _ in range(50 * n):
        short = [v for v in range(n) if len(adj[v]) < target[v]]
        if len(short) < 2:
            break
        a, b = rng.sample(short, 2)
        if b not in adj[a]:
            adj[a].add(b)
            adj[b].add(a)
    return adj


def hops_from(adj: list[set[int]], source: int, alive: set[int] | None = None) -> dict[int, int]:
    seen = {source: 0}
    queue = deque([source])
    while queue:
        v = queue.popleft()
        for u in adj[v]:
            if u not in seen and (alive is None or u in alive):
                seen[u] = seen[v] + 1
                queue.append(u)
    return seen
