"""Macro topics from the micro-cluster graph.

DBSTREAM's reclustering joins micro-clusters whose shared density passes a threshold and
takes connected components. On real text embeddings that chains distinct topics together
or leaves them in fragments (river's DBSTREAM scores well below k-means on banking77). Here
the same graph, shared density plus the nearest-neighbour links of ``dbstream.py``, is
partitioned by Leiden community detection (modularity, graspologic-native), started from
the previous partition so that topics move only where the data moved.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import graspologic_native as gn

from turret_stream.clustering.dbstream import DBSTREAM


def micro_cluster_graph(
    model: DBSTREAM, now: float, link_weight: float
) -> dict[tuple[int, int], float]:
    """Edge weights: shared density + ``link_weight`` x links, both faded to ``now``."""
    edges: dict[tuple[int, int], float] = defaultdict(float)
    for pair, value in model.shared_density(now):
        edges[pair] += value
    if link_weight:
        for pair, value in model.links(now):
            edges[pair] += link_weight * value
    return {pair: w for pair, w in edges.items() if w > 0}


def partition(
    edges: Mapping[tuple[int, int], float],
    nodes: list[int],
    *,
    resolution: float,
    previous: Mapping[int, int] | None = None,
    seed: int = 42,
) -> list[set[int]]:
    """Communities of micro-clusters; every node in ``nodes`` is in exactly one."""
    communities: dict[int, set[int]] = {}
    in_graph: set[int] = set()
    if edges:
        edge_list = [(str(a), str(b), float(w)) for (a, b), w in edges.items()]
        for a, b in edges:
            in_graph.add(a)
            in_graph.add(b)
        start = None
        if previous:
            # Leiden needs a community for every node of the graph: unknown nodes start
            # alone, under fresh numbers past the previous ones.
            fresh = max(previous.values(), default=-1) + 1
            start = {}
            for node in in_graph:
                if node in previous:
                    start[str(node)] = previous[node]
                else:
                    start[str(node)] = fresh
                    fresh += 1
        _, membership = gn.leiden(
            edge_list,
            starting_communities=start,
            resolution=resolution,
            seed=seed,
            trials=1,
        )
        for node, community in membership.items():
            communities.setdefault(community, set()).add(int(node))
    result = list(communities.values())
    result.extend({node} for node in nodes if node not in in_graph)
    return result
