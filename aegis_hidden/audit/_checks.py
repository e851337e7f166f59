"""The checks: each turns the facts of every input into one :class:`CheckResult`."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from ._facts import Facts, Link
from ._model import FAIL, MAX_FINDINGS, PASS, SKIPPED, CheckResult, Thresholds, Topology


@dataclass(frozen=True)
class Expectations:
    """What the node is configured to do, that the timing checks compare with."""

    rate: float | None = None  # λ, slots per second per link (None: fitted per link)
    constant: bool = False  # constant-rate slots (the paranoid profile) instead of Poisson
    skip_first: int = 3  # departures per link left out: the handshake flights


def _result(name: str, ok: bool | None, summary: str, th: Thresholds, **kw: Any) -> CheckResult:
    status = SKIPPED if ok is None else PASS if ok else FAIL
    return CheckResult(name, status, summary, th.of(name), **kw)


def _r(x: float | None, digits: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits) + 0.0


# -- leaks --------------------------------------------------------------------


def check_off_loopback(facts: Sequence[Facts], th: Thresholds) -> CheckResult:
    caps = [f for f in facts if f.off_loopback is not None]
    if not caps:
        return _result("leak_off_loopback", None, "no capture among the inputs", th)
    flows = [dict(x, input=f.name) for f in caps for x in f.off_loopback or []]
    packets = sum(x["packets"] for x in flows)
    limit = th.get("leak_off_loopback.max_packets")
    ok = packets <= limit
    summary = (f"{packets} packet(s) in {len(flows)} flow(s) with a non-loopback address"
               if packets else "every packet stayed on loopback (or went to a listed relay)")
    return _result("leak_off_loopback", ok, summary, th,
                   figures={"packets": packets, "flows": len(flows)},
                   findings=flows[:MAX_FINDINGS])


def check_dns(facts: Sequence[Facts], th: Thresholds) -> CheckResult:
    caps = [f for f in facts if f.dns is not None]
    if not caps:
        return _result("leak_dns", None, "no capture among the inputs", th)
    queries = sum(f.streams.get("dns queries", 0) for f in caps)
    found = [dict(x, input=f.name) for f in caps for x in f.dns or []]
    ok = queries <= th.get("leak_dns.max_queries")
    names = sorted({n for x in found for n in x["names"]})
    return _result("leak_dns", ok, f"{queries} DNS/mDNS/LLMNR quer{'y' if queries == 1 else 'ies'}"
                   + (": " + ", ".join(names[:5]) if names else ""), th,
                   figures={"queries": queries, "names": names[:MAX_FINDINGS]},
                   findings=found[:MAX_FINDINGS])


def check_connections(facts: Sequence[Facts], th: Thresholds,
                      topology: Topology | None) -> CheckResult:
    caps = [f for f in facts if f.connections is not None]
    if not caps:
        return _result("leak_connections", None, "no capture among the inputs", th)
    allowed = topology.allowed_ports if topology else frozenset()
    flows = [dict(x, input=f.name) for f in caps for x in f.connections or []]
    if not allowed:
        return _result("leak_connections", None,
                       f"{len(flows)} loopback flow(s) seen; no allowed ports given, so none "
                       "judged", th, figures={"loopback_flows": len(flows)})
    bad = [x for x in flows if x["port"] not in allowed]
    ok = len(bad) <= th.get("leak_connections.max_connections")
    ports = Counter(x["port"] for x in bad)
    summary = (f"{len(bad)} loopback connection(s) to ports not allowed: "
               + ", ".join(f"{p} (x{n})" for p, n in ports.most_common(5))
               if bad else f"all {len(flows)} loopback flows go to allowed ports")
    return _result("leak_connections", ok, summary, th,
                   figures={"loopback_flows": len(flows), "disallowed": len(bad),
                            "allowed_ports": sorted(allowed),
                            "disallowed_ports": sorted(ports)},
                   findings=bad[:MAX_FINDINGS])


def check_canary(facts: Sequence[Facts], th: Thresholds, needles: int) -> CheckResult:
    caps = [f for f in facts if f.hits is not None]
    if not caps:
        return _result("canary", None, "no capture among the inputs", th)
    if not needles:
        return _result("canary", None, "no canary or address to search for", th)
    hits = [dict(x, input=f.name) for f in caps for x in f.hits or []]
    allowed = sum(f.hits_allowed for f in caps)
    ok = len(hits) <= th.get("canary.max_hits")
    kinds = Counter(x["label"] for x in hits)
    summary = (f"{len(hits)} occurrence(s) in the clear: "
               + ", ".join(f"{k} (x{n})" for k, n in kinds.most_common(5))
               if hits else "no canary anywhere, no address outside SOCKS/SAM/control")
    return _result("canary", ok, summary, th,
                   figures={"needles": needles, "hits": len(hits),
                            "addresses_where_they_belong": allowed},
                   findings=hits[:MAX_FINDINGS])


# -- cells --------------------------------------------------------------------


def check_cells(facts: Sequence[Facts], th: Thresholds) -> CheckResult:
    sizes: Counter[int] = Counter()
    frames = 0
    bad = 0
    findings: list[dict[str, Any]] = []
    cell_sizes: Counter[int] = Counter()
    for f in facts:
        if f.kind == "capture":
            frames += f.frames_checked
            bad += len(f.misaligned) + f.streams.get("misaligned beyond the findings kept", 0)
            findings += [dict(x, input=f.name) for x in f.misaligned]
            for link in f.links:
                sizes.update(link.sizes)
                cell_sizes[link.cell_size] += 1
        else:
            for link in f.links:
                sizes.update(link.sizes)
                cell_sizes[link.cell_size] += 1
                n = sum(link.sizes.values())
                frames += n
                wrong = n - link.sizes.get(link.cell_size, 0)
                if wrong:
                    bad += wrong
                    findings.append({"input": f.name, "where": link.name, "cells": wrong,
                                     "sizes": sorted(s for s in link.sizes
                                                     if s != link.cell_size),
                                     "cell_size": link.cell_size})
    if not frames:
        return _result("cells", None, "no cell stream (node-to-tor/SAM) or traced cell found",
                       th)
    ok = bad <= th.get("cells.max_misaligned")
    summary = (f"{bad} of {frames} frames are not whole cells" if bad
               else f"all {frames} frames are whole cells")
    return _result("cells", ok, summary, th,
                   figures={"frames": frames, "misaligned": bad,
                            "cell_sizes": sorted(cell_sizes),
                            "frame_sizes": len(sizes)},
                   findings=findings[:MAX_FINDINGS],
                   plots={"size_histogram": [[s, n] for s, n in sorted(sizes.items())]})


# -- timing -------------------------------------------------------------------


def _intervals(link: Link, skip: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    times = np.asarray(link.times[skip:], dtype=np.float64)
    if times.size < 2:
        return np.empty(0)
    gaps = np.diff(times)
    return gaps[gaps >= 0]


#: Exponential samples drawn for the Lilliefors null of :func:`_lilliefors_exp_p`.
_LILLIEFORS_SAMPLES = 1000


def _lilliefors_exp_p(d: float, n: int) -> float:
    """The p-value of a KS distance ``d`` to Exp(1/mean) when the mean was taken from
    the same ``n`` gaps (Lilliefors): the plain KS p-value assumes a rate given in
    advance and is then far too large (an off node's steady pace passed at p 0.012
    on 112 gaps). Monte Carlo over seeded unit exponential samples of size n, each
    scaled by its own mean (the statistic does not depend on the rate); at least
    1 / (1 + samples), and the caller keeps the plain p-value when it is smaller
    (it is conservative, so still an upper bound)."""
    gen = np.random.default_rng(n)  # seeded: the same input, the same report
    i = np.arange(1, n + 1, dtype=np.float64)
    reached = 0
    rows = max(1, min(_LILLIEFORS_SAMPLES, 2_000_000 // max(1, n)))  # memory per chunk
    for start in range(0, _LILLIEFORS_SAMPLES, rows):
        k = min(rows, _LILLIEFORS_SAMPLES - start)
        sims = np.sort(gen.exponential(1.0, size=(k, n)), axis=1)
        cdf = 1.0 - np.exp(-sims / sims.mean(axis=1, keepdims=True))
        null = np.maximum((i / n - cdf).max(axis=1), (cdf - (i - 1) / n).max(axis=1))
        reached += int((null >= d).sum())
    return (1 + reached) / (1 + _LILLIEFORS_SAMPLES)


def check_timing(facts: Sequence[Facts], th: Thresholds, exp: Expectations) -> CheckResult:
    min_n = th.get("timing.min_intervals")
    alpha = th.get("timing.alpha")
    tested: list[tuple[str, Link, np.ndarray[Any, np.dtype[np.float64]]]] = []
    for f in facts:
        for link in f.links:
            if link.direction != "out":
                continue
            gaps = _intervals(link, exp.skip_first)
            if gaps.size >= min_n and gaps.mean() > 0:
                tested.append((f.name, link, gaps))
    if not tested:
        return _result("timing", None, f"no outgoing link with {min_n:g} inter-departure "
                       "times", th)
    bound = alpha / len(tested)
    rows = []
    failed = 0
    for name, link, gaps in tested:
        mean = float(gaps.mean())
        rate = exp.rate if exp.rate else 1.0 / mean
        row: dict[str, Any] = {"input": name, "link": link.name, "intervals": int(gaps.size),
                               "mean_interval": _r(mean), "observed_rate": _r(1.0 / mean, 4),
                               "expected_rate": _r(rate, 4)}
        if exp.constant:
            cv = float(gaps.std() / mean)
            off = abs(mean * rate - 1.0)
            bad = (cv > th.get("timing.constant_max_cv")
                   or off > th.get("timing.constant_max_rate_error"))
            row.update(cv=_r(cv, 4), rate_error=_r(off, 4))
        else:
            res = stats.kstest(gaps, "expon", args=(0, 1.0 / rate))
            pvalue = float(res.pvalue)
            if not exp.rate:  # the rate was fitted to these gaps: Lilliefors' null
                pvalue = min(pvalue, _lilliefors_exp_p(float(res.statistic), gaps.size))
            row.update(ks_d=_r(float(res.statistic)), p=_r(pvalue, 8))
            bad = pvalue < bound
        row["passed"] = not bad
        failed += bad
        rows.append(row)
    pooled = np.concatenate([g for _, _, g in tested])
    rate = exp.rate or 1.0 / float(pooled.mean())
    top = float(np.quantile(pooled, 0.995)) if pooled.size else 1.0
    counts, edges = np.histogram(pooled, bins=40, range=(0.0, max(top, 1e-6)))
    ok = failed == 0
    what = "constant-rate" if exp.constant else f"Exp(λ={rate:g}) (KS, p < {bound:.3g} fails)"
    summary = (f"{failed} of {len(tested)} link(s) do not depart as {what}" if failed
               else f"all {len(tested)} link(s) depart as {what}")
    worst = min((r.get("p", 1.0) or 0.0 for r in rows), default=None)
    return _result("timing", ok, summary, th,
                   figures={"links_tested": len(tested), "links_failed": failed,
                            "p_bound": _r(bound, 8), "lowest_p": _r(worst, 8),
                            "expected_rate": _r(exp.rate, 6), "schedule":
                            "constant" if exp.constant else "poisson"},
                   findings=[r for r in rows if not r["passed"]][:MAX_FINDINGS],
                   plots={"links": rows[:MAX_FINDINGS],
                          "histogram": {"edges": [_r(e) for e in edges],
                                        "counts": [int(c) for c in counts],
                                        "n": int(pooled.size), "rate": _r(rate)}})


def check_bursts(facts: Sequence[Facts], th: Thresholds, exp: Expectations) -> CheckResult:
    max_cells = th.get("bursts.max_cells_per_write")
    max_disp = th.get("bursts.max_dispersion")
    width = th.get("bursts.bin") or 1.0
    rows: list[dict[str, Any]] = []
    failed = 0
    for f in facts:
        for link in f.links:
            if link.direction != "out" or len(link.times) <= exp.skip_first + 1:
                continue
            times = np.asarray(link.times[exp.skip_first:], dtype=np.float64)
            cells = link.cells[exp.skip_first:]
            span = float(times[-1] - times[0])
            bins = int(span // width)
            disp = None
            if bins >= 10:
                counts = np.histogram(times, bins=bins, range=(times[0], times[0] + bins * width))[0]
                m = float(counts.mean())
                disp = float(counts.var() / m) if m > 0 else None
            most = max(cells) if cells else 0
            bad = most > max_cells or (disp is not None and disp > max_disp)
            failed += bad
            rows.append({"input": f.name, "link": link.name, "departures": len(cells),
                         "max_cells_per_write": most, "dispersion": _r(disp, 4),
                         "passed": not bad})
    if not rows:
        return _result("bursts", None, "no outgoing link with departures", th)
    ok = failed == 0
    worst_cells = max(r["max_cells_per_write"] for r in rows)
    disps = [r["dispersion"] for r in rows if r["dispersion"] is not None]
    summary = (f"{failed} of {len(rows)} link(s) burst (most cells in one write "
               f"{worst_cells}, highest dispersion {max(disps, default=0):.2f})" if failed
               else f"no burst on {len(rows)} link(s) (most cells in one write {worst_cells})")
    return _result("bursts", ok, summary, th,
                   figures={"links": len(rows), "links_failed": failed,
                            "max_cells_per_write": worst_cells,
                            "max_dispersion": _r(max(disps), 4) if disps else None},
                   findings=[r for r in rows if not r["passed"]][:MAX_FINDINGS],
                   plots={"links": rows[:MAX_FINDINGS]})


# -- correlation --------------------------------------------------------------


def _binned(links: Sequence[Link], start: float, bins: int, width: float, skip: int
            ) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Cells per bin of ``links`` together, without each link's first ``skip`` departures."""
    total = np.zeros(bins)
    for link in links:
        if len(link.times) <= skip:
            continue
        idx = ((np.asarray(link.times[skip:]) - start) // width).astype(np.int64)
        keep = (idx >= 0) & (idx < bins)
        np.add.at(total, idx[keep], np.asarray(link.cells[skip:], dtype=np.float64)[keep])
    return total


def _levels(x: np.ndarray[Any, np.dtype[np.float64]], k: int = 4
            ) -> np.ndarray[Any, np.dtype[np.int64]]:
    edges = np.unique(np.quantile(x, np.linspace(0, 1, k + 1)[1:-1]))
    return np.searchsorted(edges, x, side="right").astype(np.int64)


def mutual_information(a: np.ndarray[Any, np.dtype[np.int64]],
                       b: np.ndarray[Any, np.dtype[np.int64]]) -> float:
    """Plug-in mutual information in bits between two discrete series of equal length."""
    n = a.size
    if n == 0:
        return 0.0
    joint: Counter[tuple[int, int]] = Counter(zip(a.tolist(), b.tolist(), strict=True))
    pa = Counter(a.tolist())
    pb = Counter(b.tolist())
    mi = 0.0
    for (x, y), c in joint.items():
        mi += c / n * math.log2(c * n / (pa[x] * pb[y]))
    return max(mi, 0.0)


def _lagged(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], lag: int
            ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """a[t] against b[t + lag]."""
    if lag >= 0:
        return a[:a.size - lag], b[lag:]
    return a[-lag:], b[:b.size + lag]


def _pearson(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    if a.size < 3 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def check_correlation(facts: Sequence[Facts], th: Thresholds, exp: Expectations
                      ) -> CheckResult:
    width = th.get("correlation.bin") or 1.0
    max_lag = int(th.get("correlation.max_lag"))
    min_bins = th.get("correlation.min_bins")
    r_max = th.get("correlation.r_max")
    alpha = th.get("correlation.alpha")
    mi_max = th.get("correlation.mi_max")
    rows: list[dict[str, Any]] = []
    heatmaps: list[dict[str, Any]] = []
    skipped: list[str] = []
    judged: list[tuple[Facts, str, list[Link]]] = []
    for f in facts:
        groups: dict[str, list[Link]] = {}
        for link in f.links:
            groups.setdefault(link.group, []).append(link)
        judged += [(f, group, links) for group, links in groups.items()]
    # One test per node: each is judged at alpha / nodes (Bonferroni), so the check's
    # false-alarm rate over the whole capture stays alpha however many nodes it holds,
    # with enough shuffles that the MI's p-value can still reach that level.
    shuffles = max(_SHUFFLES, math.ceil(4 * max(1, len(judged)) / alpha))
    for f, group, links in judged:
        label = f"{f.name}: {group}" if group != f.name else f.name
        outs = [lk for lk in links if lk.direction == "out" and lk.times]
        ins = [lk for lk in links if lk.direction == "in" and lk.times]
        if not outs or not ins:
            skipped.append(f"{label}: no {'incoming' if outs else 'outgoing'} cells")
            continue
        start = min(min(lk.times) for lk in links if lk.times)
        end = max(max(lk.times) for lk in links if lk.times)
        bins = int((end - start) // width) + 1
        if bins < min_bins:
            skipped.append(f"{label}: {bins} bins of {width:g} s (< {min_bins:g})")
            continue
        out_c = _binned(outs, start, bins, width, exp.skip_first)
        in_c = _binned(ins, start, bins, width, exp.skip_first)
        lags = list(range(-max_lag, max_lag + 1))
        rs = [_pearson(*_lagged(in_c, out_c, lag)) for lag in lags]
        best = max(range(len(lags)), key=lambda i: abs(rs[i]))
        r = rs[best]
        n = bins - abs(lags[best])
        p = _r_pvalue(r, n) * len(lags)
        a, b = _lagged(in_c, out_c, lags[best])
        la, lb = _levels(a), _levels(b)
        raw = mutual_information(la, lb)
        gen = np.random.default_rng(0)  # seeded: the same input, the same report
        null = np.asarray([mutual_information(la, gen.permutation(lb))
                           for _ in range(shuffles)])
        shuffled = float(null.mean())
        mi = max(raw - shuffled, 0.0)
        mi_p = (1 + int((null >= raw).sum())) / (1 + shuffles)
        rows.append({"node": label, "bins": bins, "best_lag_bins": lags[best],
                     "r": _r(r, 4), "p": _r(min(p, 1.0), 8), "mi_bits": _r(mi, 4),
                     "mi_p": _r(mi_p, 6),
                     "mi_raw_bits": _r(raw, 4), "mi_shuffled_bits": _r(shuffled, 4),
                     "r_by_lag": [_r(x, 4) for x in rs], "passed": True})
        if len(heatmaps) < 4:
            heatmaps.append(_heatmap(label, ins, outs, start, bins, width,
                                     exp.skip_first))
    level = alpha / max(1, len(rows))
    for row in rows:
        bad_r = abs(row["r"] or 0) > r_max and (row["p"] if row["p"] is not None else 1) < level
        bad_mi = (row["mi_bits"] or 0) > mi_max and row["mi_p"] < level
        row["passed"] = not (bad_r or bad_mi)
        row["alpha"] = _r(level, 6)
    if not rows:
        return _result("correlation", None, "nothing to correlate: " + "; ".join(skipped[:5]),
                       th, figures={"skipped": skipped[:MAX_FINDINGS]})
    failed = sum(not r["passed"] for r in rows)
    worst = max(rows, key=lambda r: abs(r["r"] or 0))
    summary = (f"{failed} of {len(rows)} node(s): incoming and outgoing cell counts are "
               f"matched (|r| up to {abs(worst['r'] or 0):.2f}, MI up to "
               f"{max(r['mi_bits'] or 0 for r in rows):.3f} bits)" if failed
               else f"{len(rows)} node(s): in/out counts independent (|r| <= "
               f"{abs(worst['r'] or 0):.2f})")
    return _result("correlation", not failed, summary, th,
                   figures={"nodes": len(rows), "nodes_failed": failed,
                            "max_abs_r": _r(abs(worst["r"] or 0), 4),
                            "max_mi_bits": _r(max(r["mi_bits"] or 0 for r in rows), 4),
                            "skipped": skipped[:MAX_FINDINGS]},
                   findings=[r for r in rows if not r["passed"]][:MAX_FINDINGS],
                   plots={"nodes": rows[:MAX_FINDINGS], "heatmaps": heatmaps,
                          "lags": list(range(-max_lag, max_lag + 1))})


#: Shuffles of the outgoing counts: the estimator's bias and the MI's p-value.
_SHUFFLES = 400


def _r_pvalue(r: float, n: int) -> float:
    """Two-sided p of Pearson r over n pairs (t distribution, n - 2 degrees of freedom)."""
    if n < 4 or abs(r) >= 1.0:
        return 0.0 if abs(r) >= 1.0 else 1.0
    t = r * math.sqrt((n - 2) / (1 - r * r))
    return float(2 * stats.t.sf(abs(t), n - 2))


def _heatmap(label: str, ins: list[Link], outs: list[Link], start: float, bins: int,
             width: float, skip: int) -> dict[str, Any]:
    """Pearson r at lag 0 between each incoming and each outgoing link's counts."""
    ins = sorted(ins, key=lambda lk: -lk.total_cells)[:16]
    outs = sorted(outs, key=lambda lk: -lk.total_cells)[:16]
    rows = []
    series_out = [_binned([o], start, bins, width, skip) for o in outs]
    for i in ins:
        si = _binned([i], start, bins, width, skip)
        rows.append([_r(_pearson(si, so), 3) for so in series_out])
    return {"node": label, "in": [lk.name for lk in ins], "out": [lk.name for lk in outs],
            "r": rows}


# -- volume -------------------------------------------------------------------


def check_volume(facts: Sequence[Facts], th: Thresholds) -> CheckResult:
    min_s = th.get("volume.min_seconds")
    max_cv = th.get("volume.max_rate_cv")
    max_over = th["volume.max_cover_overhead"]
    rows: list[dict[str, Any]] = []
    kinds: Counter[str] = Counter()
    for f in facts:
        for link in f.links:
            if link.direction == "out":
                kinds.update(link.kinds)
            if len(link.times) < 2:
                continue
            span = link.times[-1] - link.times[0]
            cells = link.total_cells
            rows.append({"input": f.name, "link": link.name, "direction": link.direction,
                         "seconds": _r(span, 3), "cells": cells,
                         "cells_per_second": _r(cells / span, 4) if span > 0 else None,
                         "bytes_per_second": _r(cells * link.cell_size / span, 1)
                         if span > 0 else None,
                         "judged": span >= min_s and link.direction == "out"})
    judged: list[float] = [r["cells_per_second"] for r in rows if r["judged"] and r["cells_per_second"]]
    real = kinds.get("real", 0)
    cover = kinds.get("cover", 0) + kinds.get("loop", 0)
    overhead = cover / real if real else None
    if not rows and not kinds:
        return _result("volume", None, "no link with cells", th)
    cv = float(np.std(judged) / np.mean(judged)) if len(judged) >= 2 else None
    bad_cv = cv is not None and cv > max_cv
    bad_over = max_over is not None and overhead is not None and overhead > max_over
    if cv is None and (max_over is None or overhead is None):
        ok: bool | None = None
        summary = (f"{len(rows)} link direction(s); fewer than two outgoing links lasted "
                   f"{min_s:g} s, nothing to compare")
    else:
        ok = not (bad_cv or bad_over)
        parts = []
        if cv is not None:
            parts.append(f"cell rate across {len(judged)} outgoing links varies by "
                         f"{cv:.2f} (CV)")
        if overhead is not None:
            parts.append(f"cover overhead {overhead:.2f} cover per real cell")
        summary = "; ".join(parts)
    return _result("volume", ok, summary, th,
                   figures={"links": len(rows), "links_judged": len(judged),
                            "rate_cv": _r(cv, 4), "real_cells": real, "cover_cells":
                            kinds.get("cover", 0), "loop_cells": kinds.get("loop", 0),
                            "cover_overhead": _r(overhead, 4),
                            "mean_cells_per_second": _r(float(np.mean(judged)), 4)
                            if judged else None},
                   findings=[r for r in rows if bad_cv and r["judged"]][:MAX_FINDINGS]
                   if bad_cv else [],
                   plots={"links": rows[:MAX_FINDINGS]})


# -- anonymity ----------------------------------------------------------------


def sender_entropy(dist: Sequence[float]) -> float:
    """Shannon entropy in bits of a distribution over senders."""
    return -sum(p * math.log2(p) for p in dist if p > 0) + 0.0


def check_anonymity(facts: Sequence[Facts], th: Thresholds) -> CheckResult:
    points = [(t, d) for f in facts for t, d in f.anonymity]
    if not points:
        return _result("anonymity", None, "no ground-truth lines (only simulations have them)",
                       th)
    points.sort(key=lambda x: x[0])
    hs = np.asarray([sender_entropy(d) for _, d in points])
    ns = np.asarray([len(d) for _, d in points])
    degrees = np.where(ns > 1, hs / np.log2(np.maximum(ns, 2)), 0.0)
    h_mean = float(hs.mean())
    degree = float(degrees.mean())
    aset = 2 ** h_mean
    ok = degree >= th.get("anonymity.min_degree") and aset >= th.get("anonymity.min_set")
    times = np.asarray([t for t, _ in points])
    k = min(30, len(points))
    edges = np.linspace(times[0], times[-1] + 1e-9, k + 1)
    idx = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, k - 1)
    series = []
    for b in range(k):
        sel = hs[idx == b]
        if sel.size:
            series.append([_r(float((edges[b] + edges[b + 1]) / 2), 3),
                           _r(float(2 ** sel.mean()), 4), int(sel.size)])
    summary = (f"H = {h_mean:.3f} bits, anonymity set 2^H = {aset:.1f} of N = "
               f"{int(np.median(ns))}, degree H/log2 N = {degree:.3f} over {len(points)} "
               "messages")
    return _result("anonymity", ok, summary, th,
                   figures={"messages": len(points), "entropy_mean": _r(h_mean, 4),
                            "entropy_p10": _r(float(np.quantile(hs, 0.1)), 4),
                            "entropy_median": _r(float(np.median(hs)), 4),
                            "anonymity_set": _r(aset, 4), "degree": _r(degree, 4),
                            "senders_median": int(np.median(ns))},
                   plots={"series": series})
