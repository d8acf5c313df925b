#!/bin/sh
# compose one-shot: join redis-1 … redis-6 into a cluster of 3 masters with one replica
# each, then wait until every slot is served and the replicas are known. Does nothing
# when the cluster exists.
# A half-made cluster (interrupted here) is reset with `docker compose down -v`.
set -eu
nodes="redis-1 redis-2 redis-3 redis-4 redis-5 redis-6"

cluster_ok() { redis-cli -h redis-1 cluster info | grep -q '^cluster_state:ok'; }
# Every slot served, and redis-1 sees the three replicas.
cluster_complete() {
    cluster_ok && [ "$(redis-cli -h redis-1 cluster nodes | grep -c slave)" -eq 3 ]
}

if cluster_ok; then
    echo "redis cluster: already created"
    exit 0
fi
# redis-cli --cluster create takes addresses; nodes announce their IPs to clients.
addrs=""
for node in $nodes; do
    addrs="$addrs $(getent hosts "$node" | awk '{ print $1 }'):6379"
done
# shellcheck disable=SC2086  # one argument per address
redis-cli --cluster create $addrs --cluster-replicas 1 --cluster-yes
tries=0
until cluster_complete; do
    tries=$((tries + 1))
    if [ "$tries" -gt 60 ]; then
        echo "redis cluster: not ok after 60 s" >&2
        exit 1
    fi
    sleep 1
done
echo "redis cluster: created, 3 masters with a replica each"
