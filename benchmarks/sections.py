"""Markdown sections of the report, one function per section, each from the results dict."""

from __future__ import annotations

from typing import Any

from benchmarks.goals import latency_flags, main_rps, median_rounds, sweep_summary

CPU_KEYS = ("server", "redis", "postgres", "flusher", "loadgen", "irq", "other")
CPU_HEAD = "CPU cores: " + " / ".join(CPU_KEYS)


def fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    head = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return [*head, *("| " + " | ".join(r) + " |" for r in rows), ""]


def _cpu(c: dict[str, float]) -> str:
    return " / ".join(fmt(c.get(k), 2) for k in CPU_KEYS)


class Sections:
    def __init__(self, results: dict[str, Any]) -> None:
        self.r = results
        self.apps = {a["name"]: a for a in results["apps"]}

    def name(self, app: str) -> str:
        a = self.apps[app]
        return str(a["label"]) + ("" if a["product"] else " *(baseline)*")

    def goals(self) -> list[str]:
        verdict = {True: "**met**", False: "**not met**", None: "not measured"}
        rows = [
            [
                g["goal"],
                f"{g['op']} {g['target']:,g}",
                fmt(g["measured"], 3),
                verdict[g["met"]] + (f" ({g['note']})" if g["note"] else ""),
            ]
            for g in self.r["goals"]
        ]
        return table(["goal", "target", "measured", "met"], rows)

    def ratios(self) -> list[str]:
        rows = [
            [
                k,
                f"{fmt(v['best'], 3)} ({v['best_workers'][0]} vs {v['best_workers'][1]})",
                f"{fmt(v['equal'], 3)} ({v['equal_workers']})",
            ]
            for k, v in self.r["ratios"].items()
            if v["best"] is not None
        ]
        return table(["ratio", "at best worker counts (workers)", "at equal workers"], rows)

    def sweep(self) -> list[str]:
        rows = []
        for s in sweep_summary(self.r):
            best = main_rps(self.r, s["app"])[1] == s["workers"]
            rows.append(
                [
                    self.name(s["app"]),
                    f"{s['workers']}{' (best)' if best else ''}",
                    f"**{fmt(s['ok_rps'], 0)}**",
                    f"{fmt(s['min'], 0)}-{fmt(s['max'], 0)}",
                    str(s["non2xx"]),
                    _cpu(s["cpu"]),
                ]
            )
        heads = [
            "configuration",
            "workers",
            "median ok req/s",
            f"range over {self.r['profile']['rounds']} rounds",
            "non-2xx",
            CPU_HEAD + " (mean)",
        ]
        return table(heads, rows)

    def other_workloads(self) -> list[str]:
        rows = []
        for t in self.r["throughput"]:
            if t["phase"] == "sweep":
                continue
            e, lat = t["errors"], t["latency_ms"]
            sock = e["connect"] + e["read"] + e["write"] + e["timeout"]
            extra = " + flush-lag sampler" if t["phase"] == "flush-lag" else ""
            rows.append(
                [
                    self.name(t["app"]),
                    str(t["workers"]),
                    t["workload"] + extra,
                    fmt(t["ok_rps"], 0),
                    f"{e['status']} / {sock}",
                    f"{fmt(lat['p50'], 2)} / {fmt(lat['p99'], 2)}",
                    _cpu(t["cpu"]),
                ]
            )
        heads = [
            "configuration",
            "workers",
            "workload",
            "ok req/s",
            "non-2xx / socket errors",
            "p50 / p99 ms (closed loop)",
            CPU_HEAD,
        ]
        return table(heads, rows)

    def latency(self) -> list[str]:
        rows = []
        for q in median_rounds(self.r["latency"]):
            lat = q["latency_ms"]
            flags = latency_flags(q)
            trust = f"no: {flags}" if flags else "yes"
            rows.append(
                [
                    self.name(q["app"]),
                    str(q["workers"]),
                    f"{q['fraction']:.0%}",
                    f"{fmt(q['target_rps'], 0)} / {fmt(q['completed_rps'], 0)}",
                    *(fmt(lat[k], 2) for k in ("p50", "p90", "p99", "p99.9")),
                    fmt(q["latency_from_intended_ms"]["p99"], 2),
                    fmt(q["queued"]),
                    f"{fmt(q['dispatch_lag_ms']['p99'], 2)} ms, {fmt(q['cpu'].get('loadgen'), 2)}",
                    "/".join(map(str, q.get("connections_per_worker", []))),
                    " / ".join(fmt(x, 2) for x in q["p99_rounds"]),
                    trust,
                ]
            )
        heads = [
            "configuration",
            "workers",
            "offered",
            "req/s target / done",
            "p50",
            "p90",
            "p99",
            "p99.9 ms",
            "p99 from intended",
            "queued",
            "generator: lag p99, cores",
            "connections per worker",
            "p99 of each round (median shown)",
            "trusted",
        ]
        return table(heads, rows)

    def flush_lag(self) -> list[str]:
        d = self.r.get("flush_lag", {})
        if "lag_s" not in d:
            return [f"Skipped: {d.get('skipped', 'not measured')}", ""]
        lag = d["lag_s"]
        return table(
            [
                "flush interval",
                "samples seen / never seen / send errors",
                "p50 s",
                "p90 s",
                "p99 s",
                "max s",
                "poll resolution",
            ],
            [
                [
                    f"{d['flush_interval_s']:g} s",
                    f"{d['seen_in_postgres']} / {d['never_seen']} / {d['send_errors']}",
                    *(fmt(lag[k], 3) for k in ("p50", "p90", "p99", "max")),
                    f"{d['poll_resolution_s'] * 1000:g} ms",
                ]
            ],
        )

    def memory(self) -> list[str]:
        d = self.r.get("memory", {})
        if "counters" not in d:
            return [f"Not measured: {d.get('error', 'skipped')}", ""]
        rows = []
        where = [
            ("run's cluster, flusher running", "", d["buckets"]),
            ("throwaway cluster", "scale_", d["buckets"]),
            ("throwaway cluster", "scale_sized_", d.get("scale_sized_buckets")),
        ]
        for label, p, buckets in where:
            if p + "counters" not in d:  # the scale fills: full profile only
                continue
            made = fmt(d[p + "counters"])
            if not d.get(p + "complete", True):
                made += f" of {fmt(d[p + 'target_counters'])} (deadline: partial fill)"
            rows.append(
                [
                    made,
                    label,
                    fmt(buckets),
                    fmt(d[p + "fields_in_sample_bucket"]),
                    d[p + "hash_encoding"],
                    fmt(d[p + "bytes_per_counter_dirty"]),
                    fmt(d.get(p + "bytes_per_counter_flushed")),
                    f"{fmt(d.get(p + 'fill_s'))} s",
                ]
            )
        limit = d["hash_max_listpack_entries"]
        return [
            *table(
                [
                    "counters",
                    "where",
                    "buckets",
                    "fields in a sample bucket",
                    "encoding",
                    "bytes/counter with dirty marks",
                    "bytes/counter after flush",
                    "fill",
                ],
                rows,
            ),
            "Redis turns a bucket's hash from listpack into a hashtable past "
            f"hash-max-listpack-entries = {limit} fields, i.e. beyond ~buckets x {limit} "
            'counters in all. On the throwaway cluster, "after flush" is measured after '
            "deleting the dirty-mark zsets, the state a completed flush leaves. The last row "
            "uses the bucket count docs/deploying.md advises for that many counters.",
            "",
        ]

    def batch(self) -> list[str]:
        d = self.r.get("batch", {})
        if "batch_increments_per_s" not in d:
            return [f"Not measured: {d.get('error', 'skipped')}", ""]
        cpu = d["cpu_us_per_increment"]
        lat = d["latency_ms"]
        failed = sum(d["errors"].values())
        row = [
            fmt(d["batch_increments_per_s"]),
            fmt(d["redis_py_pipelined_incrby_per_s"]),
            f"{d['ratio_to_baseline']}",
            " / ".join(fmt(cpu.get(k), 2) for k in ("workers", "redis", "postgresql", "flusher")),
            f"{fmt(d['acknowledged_increments'])} / {fmt(d['flushed_to_postgresql'])}",
            f"{fmt(lat.get('p50'), 2)} / {fmt(lat.get('p99'), 2)}",
            fmt(failed),
        ]
        return [
            *table(
                [
                    "increments/s",
                    "redis-py pipelined INCRBY/s",
                    "ratio",
                    "CPU µs per increment: workers / redis / postgresql / flusher",
                    "acknowledged / flushed",
                    "p50 / p99 ms per request",
                    "failed requests",
                ],
                [row],
            ),
            f"`wrk -t2 -c{d['connections']}` POSTs of {d['batch_size']} increments each over "
            f"{d.get('namespaces', 1000):,} namespaces to {d['workers']} meinheld workers with "
            "their flusher; the baseline sends the same number of `INCRBY`s per pipeline from "
            "one redis-py process to the "
            "same cluster. Flushed counts what PostgreSQL holds once it stops growing, so it may "
            "exceed acknowledged by the requests in flight when wrk stopped.",
            "",
        ]

    def pyspy(self) -> list[str]:
        d = self.r["pyspy"]
        out = [
            f"Worker pid {d['pid']}. *wall*: samples with a Python stack (a blocking call's "
            "wait counts against its caller); *gil*: samples holding the GIL (CPU).",
            "",
        ]
        for mode in ("wall", "gil"):
            m = d.get(mode, {})
            if "self" not in m:
                out += [f"{mode}: skipped: {m.get('skipped', 'no samples')}", ""]
                continue
            out += [
                f"**{mode}**: {m['samples']:,} samples with a Python stack, "
                f"{m['no_python_frame']:,} without (meinheld's C loop); raw: `{m['raw']}`",
                "",
            ]
            rows = [
                [f"`{a['function']}`", fmt(a["pct"]), f"`{b['function']}`", fmt(b["pct"])]
                for a, b in zip(m["self"], m["inclusive"], strict=False)
            ]
            out += table([f"{mode}: self", "%", "inclusive", "%"], rows)
        return out
