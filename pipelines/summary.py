"""What `make run` prints of its steps' results (pipelines/operations.py): the ingest, features,
metrics and candidates tables, one viewer's candidates, and one viewer's ranked feed asked of the
running service (with the curl command to ask it yourself). Used by pipelines/run.py; the
benchmarks print the ingest and metrics tables too.
"""

from __future__ import annotations

from pathlib import Path

from data.days import day_end_ms
from data.settings import Settings, serving_secrets


def sample_candidates(settings: Settings, redis_url: str, day: str, embeddings_index: Path) -> str:
    """One simulated viewer's candidates per source and what the filters removed, as text."""
    from candidate_gen.blend import blend
    from candidate_gen.config import CandidateConfig
    from candidate_gen.explore.embeddings import load
    from candidate_gen.filters import default_chain
    from candidate_gen.reads import StepReader
    from candidate_gen.sources.base import SourceRequest, run_sources
    from candidate_gen.sources.catalog import build_sources
    from data.redis_client import connect

    cfg, client = CandidateConfig.load(), connect(redis_url)
    model = load(embeddings_index)
    sources = list(build_sources(client, cfg, model).values())
    viewer, _ = sample_viewer(settings, day)
    now = day_end_ms(day)
    # the first request opens the Redis connection and loads the scripts: a service warms up
    # before taking traffic, so the sample is the second request
    reader = StepReader(client)
    run_sources(sources, SourceRequest(viewer, now), reader)
    outcomes = run_sources(sources, SourceRequest(viewer, now), reader)
    mixed = blend({o.name: o.candidates for o in outcomes}, {s.name: s.config.cap for s in sources}, 200)
    filtered = default_chain(client, cfg).run(viewer, mixed, now)
    lines = [f"candidates for viewer {viewer} at the end of {day}:"]
    lines += [f"  {o.name:<11} {o.status:<8} {len(o.candidates):>5} candidates  {o.elapsed_ms:6.1f} ms"
              for o in outcomes]
    lines.append(f"  blended {len(mixed)}, kept {len(filtered.kept)} after filters, removed {dict(filtered.counts)}")
    return "\n".join(lines)


def format_metrics_table(training: dict) -> str:
    lines = []
    for surface, s in training["surfaces"].items():
        if "evaluation" not in s:
            lines += [f"{surface}: skipped: {s.get('skipped')}", ""]
            continue
        ev = s["evaluation"]
        lines.append(f"{surface}: test day {training['test_day']}, {ev['requests']:,} requests, "
                     f"challenger {ev['model_name']} v{ev['challenger_version']} ({ev['challenger_kind']})")
        head = f"  {'ranker':<15}{'NDCG@10':>9}{'NDCG@50':>9}{'NDCG@10 real.':>15}{'MAP':>8}"
        lines += [head, "  " + "-" * (len(head) - 2)]
        for name, m in ev["rankers"].items():
            lines.append(f"  {name:<15}{m['ndcg10']:>9.4f}{m['ndcg50']:>9.4f}"
                         f"{m['ndcg10_realised']:>15.4f}{m['map']:>8.4f}")
        pct = ev.get("pct_of_oracle")
        lines.append(f"  % of oracle: {pct:.1f}   lift vs chronological: {ev['lift_vs_chronological_pct']:+.1f}%"
                     if pct is not None else f"  lift vs chronological: {ev['lift_vs_chronological_pct']:+.1f}%")
        trained = s.get("trained", {})
        for head, why in trained.get("heads_dropped", {}).items():
            lines.append(f"  value-model head {head} dropped: {why}")
        for kind, why in trained.get("not_trained", {}).items():
            lines.append(f"  {kind} not trained: {why}")
        d = s["decision"]
        outcome = ("PROMOTED" if d.get("promoted") else "kept champion" if d.get("champion_version")
                   else "nothing promoted: the service keeps its heuristic")
        lines.append(f"  promotion: {outcome} ({d.get('reason')})")
        ab = s["ab_test"]
        if "skipped" in ab:
            lines.append(f"  simulated A/B: skipped ({ab['skipped']})")
        if "engagements" in ab:
            e = ab["engagements"]
            lines.append(f"  simulated A/B vs chronological: engagements/session {e['lift_pct']:+.1f}% "
                         f"(95% CI {e['ci95_pct'][0]:+.1f} .. {e['ci95_pct'][1]:+.1f}), "
                         f"{ab['viewers']['treatment']:,}/{ab['viewers']['control']:,} viewers")
        lines.append("")
    for day, check in training.get("skew_check", {}).items():
        verdict = "passed" if check["passed"] else f"FAILED on {check['failing_features']}"
        lines.append(f"train/serve skew check {day}: {check['rows_compared']:,} served rows with scored vectors "
                     f"compared, {verdict}")
    return "\n".join(lines)


def format_ingest_table(totals: dict[str, dict]) -> str:
    head = f"{'log':<12}{'read':>12}{'landed':>12}{'quarantined':>13}{'duplicates':>12}"
    lines = [head, "-" * len(head)]
    for log, t in totals.items():
        lines.append(
            f"{log:<12}{t['rows_read']:>12,}{t['rows_landed']:>12,}"
            f"{t['rows_quarantined']:>13,}{t['duplicates_dropped']:>12,}"
        )
    lines += ["", "quarantined rows per reason:"]
    for log, t in totals.items():
        for reason, n in sorted(t["quarantined_by_reason"].items()):
            lines.append(f"  {log:<12} {reason:<32}{n:>8,}")
    unknown = [(log, field, values) for log, t in totals.items()
               for field, values in sorted(t.get("unknown_values", {}).items())]
    if unknown:
        lines += ["", ("values outside the contract or the log vocabulary "
                       "(quarantined; LOUPE_VOCABULARY declares more):")]
        lines += [f"  {log:<12} {field}: " + ", ".join(f"{v} ({n:,})" for v, n in sorted(values.items()))
                  for log, field, values in unknown]
    return "\n".join(lines)


def format_features(features: dict) -> str:
    """Rows of the last day per feature table, seconds per table (its own jobs, all days; a day's tables
    run side by side, so they add up to more than the stage), the online checks."""
    rows, seconds = features["rows_last_day"], features["seconds"]
    head = f"  {'asset':<24}{'rows (last day)':>16}{'seconds':>10}"
    lines = ["features:", head, "  " + "-" * (len(head) - 2)]
    for name in list(rows) + [n for n in seconds if n not in rows]:
        count = f"{rows[name]:,}" if name in rows else ""
        lines.append(f"  {name:<24}{count:>16}{seconds.get(name, 0.0):>10.1f}")
    lines += [f"  check {name} {'passed' if ok else 'FAILED'}" for name, ok in features.get("checks", {}).items()]
    return "\n".join(lines)


def format_candidates(candidates: dict) -> str:
    """The candidate assets' seconds and what the fan-out worker did."""
    steps = ", ".join(f"{name.split('/')[-1]} {sec:.1f} s" for name, sec in candidates["seconds"].items())
    lines = [f"candidates for the end of {candidates['day']}: {steps}"]
    f = candidates.get("fanout") or {}
    if f:
        lines.append(f"  fan-out: {f['applied']:,} of {f['events']:,} events applied, {f['posts']:,} posts "
                     f"({f['celebrity_posts']:,} celebrity), {f['deletions']:,} deletions, {f['inserts']:,} "
                     f"inserts to {f['fanout_targets']:,} targets in {f['batches']:,} batches, {f['retries']} retries"
                     + (f", skipped {f['skipped']}" if f.get("skipped") else ""))
    return "\n".join(lines)


def sample_viewer(settings: Settings, day: str) -> tuple[int, str]:
    """A viewer and the surface worth showing them: Home for an account that follows someone as of
    `day`; Explore for a viewer with impressions when nobody follows anyone (an export without a
    social graph, e.g. Open Bandit)."""
    from candidate_gen.rebuild import active_viewers
    from candidate_gen.viewers import viewers_with_followees

    viewers = viewers_with_followees(settings.lake_dir, day, 1)
    if len(viewers):
        return int(viewers[0]), "home"
    active = active_viewers(settings.lake_dir, day, 1)
    if len(active):
        return int(active[0]), "explore"
    raise RuntimeError(f"no account in the lake follows anyone or saw an impression as of {day}: no feed to show")


def sample_feed(settings: Settings, day: str) -> dict:
    """One viewer's ranked feed (Home, or Explore when nobody follows anyone), asked of the running
    service over HTTP: the response and a printable text."""
    from serving.__main__ import post

    viewer, surface = sample_viewer(settings, day)
    body = post(f"http://127.0.0.1:{settings.serving_port}/v1/feed/{surface}", {"viewer_id": viewer, "limit": 10},
                serving_secrets(settings).api_token)
    title = "Home" if surface == "home" else "Explore (nobody follows anyone in this data)"
    candidates, degraded = sum(body["candidates"].values()), body["degraded"] or "none"
    lines = [(f"ranked {title} feed for viewer {viewer}: request {body['request_id']}, "
              f"model {body['model_version']} ({body['scorer']}), {candidates} candidates, degraded: {degraded}"),
             f"  {'pos':>3} {'post':>9} {'author':>8} {'source':<11} {'score':>8}"]
    lines += [f"  {i['position']:>3} {i['post_id']:>9} {i['author_id']:>8} {i['source']:<11} {i['score']:>8.3f}"
              for i in body["items"]]
    stages = ", ".join(f"{k} {v:.1f}" for k, v in body["stage_ms"].items())
    lines.append(f"  stage ms: {stages}")
    lines.append("  ask it yourself:\n" + sample_request(settings, surface, viewer))
    return {"viewer": viewer, "surface": surface, "response": body, "text": "\n".join(lines)}


def sample_request(settings: Settings, surface: str, viewer: int) -> str:
    """A curl command for one feed, with the token read where the service reads it (never printed)."""
    token = "$LOUPE_API_TOKEN" if settings.api_token else f"$(cat {settings.api_token_file})"
    return (f"  curl -s http://127.0.0.1:{settings.serving_port}/v1/feed/{surface} "
            f"-H \"Authorization: Bearer {token}\" -H 'Content-Type: application/json' "
            f"-d '{{\"viewer_id\": {viewer}, \"limit\": 10}}'")
