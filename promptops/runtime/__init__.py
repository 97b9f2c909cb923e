"""The production runtime: a loaded prompt guarded, traced, replayable, and fed back into its eval set.

- `spec`: the `guardrails:` section of a prompt file.
- `limits`: token buckets, circuit breakers and spend per session and user key (in-process state).
- `guarded`: `GuardedProgram`, what `promptops.load()` returns: checks, retries, fallbacks, caps,
  and `NeedsReview` for an answer below `output.min_confidence`.
- `tracing`: one MLflow trace per request; `traces` lists them.
- `replay`, `feedback`: re-run a traced request; turn a corrected one into an eval row.

Nothing heavy is imported here: prompt files import `spec` on every load.
"""
