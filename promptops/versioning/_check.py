"""`promptops check`: the prompts a change touches, each evaluated against what production serves, as a CI gate.

A change touches a prompt through its file, a file of its eval set, or an experiment file that
names it, changed between the base and the working tree (uncommitted edits and new files
included). The base is where this branch left `main` (`git diff main...`); on `main` itself
that is HEAD, so the check covers what is not committed yet.

Each touched prompt is evaluated on its gate split beside its production version (before any
promotion: its version at the base) on the same examples, and judged by the same gate as
`promote` (`promptops.evaluation._gate`: the rule its file sets, by default non-inferiority on the paired
interval), and by the `eval.threshold` its file sets. A new prompt is held to its threshold
only. The eval data must be committed: an uncommitted edit to the yardstick fails the check.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from promptops.evaluation import Comparison, Contender
from promptops.errors import PromptopsError
from promptops.versioning._git import changed_paths, resolve_base
from promptops.evaluation import DEFAULT_RESAMPLES, EvalOptions

if TYPE_CHECKING:
    from promptops.evaluation import EvalResult, ProgressCallback


@dataclass(frozen=True)
class PromptCheck:
    """One touched prompt: what it was compared with, its scores, and why it fails (no reasons: it passes)."""

    prompt: str
    changed: tuple[str, ...]  # the paths that brought it into the check
    baseline: Optional[str]  # e.g. "production v2 (abc12345)"; None for a new prompt
    metric: Optional[str]
    baseline_score: Optional[float]
    score: Optional[float]
    threshold: Optional[float]
    reasons: tuple[str, ...]
    note: Optional[str] = None
    new: bool = False  # no earlier version to compare with
    comparison: Optional[Comparison] = field(default=None, repr=False)
    result: "Optional[EvalResult]" = field(default=None, repr=False)
    verdict: Any = field(default=None, repr=False)  # the gate's Verdict

    @property
    def passed(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class CheckReport:
    base: str  # the ref the base was found from, e.g. main
    base_commit: str
    split: str
    tolerance: Optional[float]  # None: each prompt's own gate
    checks: tuple[PromptCheck, ...]
    removed: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def summary(self) -> dict[str, Any]:
        """JSON-ready, for `--json` and notebooks."""
        return {
            "passed": self.passed, "base": self.base, "base_commit": self.base_commit, "split": self.split,
            "tolerance": self.tolerance, "removed": list(self.removed),
            "prompts": [{
                "prompt": c.prompt, "passed": c.passed, "changed": list(c.changed), "baseline": c.baseline, "metric": c.metric,
                "baseline_score": c.baseline_score, "score": c.score, "threshold": c.threshold, "reasons": list(c.reasons),
                "note": c.note, "new": c.new, "comparison": c.comparison.summary() if c.comparison else None,
                "gate": c.verdict.summary() if c.verdict else None,
            } for c in self.checks],
        }



# --- the API ------------------------------------------------------------------------------


def check(
    base: Optional[str] = None,
    *,
    split: str = "test",
    limit: Optional[int] = None,
    rule: Optional[str] = None,
    tolerance: Optional[float] = None,
    model: Optional[str] = None,
    track: bool = True,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    on_progress: "Optional[ProgressCallback]" = None,
) -> CheckReport:
    """Evaluate every prompt changed since `base` (default: where HEAD left main) against its production version."""
    from promptops.artifact import find_project_root
    from promptops.versioning._git import open_repo

    if tolerance is not None and not 0 <= tolerance <= 1:
        raise PromptopsError(f"tolerance {tolerance:g} must be between 0 and 1, in units of the primary metric")
    root = find_project_root()
    repo = open_repo(root)
    base_name, base_commit = resolve_base(repo, base)
    touched, removed = touched_prompts(changed_paths(repo, base_commit), root)
    if track and touched:
        from promptops import tracking

        tracking.check_store(root)  # before the model calls; a store that does not answer fails every prompt alike
    checks = tuple(
        check_prompt(name, tuple(paths), EvalOptions(split=split, limit=limit, model=model), root=root, base_commit=base_commit,
                     rule=rule, tolerance=tolerance, track=track, resamples=resamples, seed=seed, on_progress=on_progress)
        for name, paths in sorted(touched.items())
    )
    return CheckReport(base_name, base_commit, split, tolerance, checks, tuple(removed))


def check_prompt(
    name: str,
    changed: tuple[str, ...],
    options: EvalOptions,
    *,
    root: Path,
    base_commit: str,
    rule: Optional[str] = None,
    tolerance: Optional[float] = None,
    track: bool = True,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    on_progress: "Optional[ProgressCallback]" = None,
) -> PromptCheck:
    """One prompt against its production version (or its version at the base); a user error fails it, with the message."""
    from promptops import tracking
    from promptops.evaluation import gate_verdict, rule_for
    from promptops.evaluation import evaluate
    from promptops.artifact import check_prompt_file, load_prompt_file
    from promptops.evaluation import IncomparableError
    from promptops.evaluation import compare_contenders
    from promptops.versioning._contenders import require_committed_data
    from promptops.errors import where
    from promptops.evaluation import default_metric
    from promptops.versioning._git import file_revision

    path = root / "prompts" / f"{name}.yaml"
    try:
        check_prompt_file(path, root)  # a symlink out of the project is not read
        revision = file_revision(path)
        candidate = Contender(name, "this change", load_prompt_file(path), None if revision.dirty else revision.commit)
        spec = rule_for(candidate.prompt, rule=rule, tolerance=tolerance)
        require_committed_data(candidate.prompt, None, options.split)
        baseline = _baseline(path, base_commit)
        options = dataclasses.replace(options, metric=default_metric(candidate.prompt))
        note = None if baseline else "New prompt: nothing to compare with; only its threshold applies."
        comparison, result = None, None
        if baseline is not None:
            try:
                comparison = compare_contenders(baseline, candidate, options, resamples=resamples, confidence=spec.confidence,
                                                seed=seed, on_progress=on_progress)
                result = comparison.b_result
            except IncomparableError as exc:
                note = f"Not compared with {baseline.label}, which cannot answer the same examples ({exc}); only its threshold applies."
        if comparison is None:
            result = evaluate(candidate.prompt, split=options.split, limit=options.limit, model=options.model, metric=options.metric,
                              on_progress=on_progress)
            if track:
                tracking.log_eval(result, candidate.prompt, prompt_file=path, git_commit=candidate.commit, git_dirty=revision.dirty, root=root)
        threshold = candidate.prompt.eval.threshold
        verdict = gate_verdict(spec, comparison=comparison, candidate=result, candidate_label=candidate.label, threshold=threshold)
        if comparison is not None and track:
            comparison = dataclasses.replace(comparison, run_id=tracking.log_comparison(comparison, kind="check", verdict=verdict.summary()))
    except PromptopsError as exc:  # this prompt's problem (its file, data, model, the store): its row fails, the others run
        return PromptCheck(name, changed, None, None, None, None, None, (str(exc),))
    reasons = [reason.replace(f"the threshold {threshold:g}", f"the threshold {threshold:g} set in {where(path)}")
               if threshold is not None else reason for reason in verdict.reasons]
    return PromptCheck(name, changed, comparison.a.label if comparison else None, result.metric,
                       comparison.a_score if comparison else None, result.score, threshold, tuple(reasons), note,
                       baseline is None, comparison, result, verdict)


def _baseline(path: Path, base_commit: str) -> Optional[Contender]:
    """What production serves (its commit, as committed at HEAD); else the file at the base; else None."""
    from promptops.artifact import parse_prompt
    from promptops.versioning._channels import pointers, resolve
    from promptops.errors import UnknownVersionError
    from promptops.versioning._git import load_prompt_at, open_repo, read_text_at, relative_path, resolve_version

    name = path.stem
    if pointers(name, path.parent.parent).get("production"):
        version = resolve(path, "production")
        return Contender(f"{name}@production", f"production {version.label}", load_prompt_at(path, version.commit), version.commit)
    try:
        text = read_text_at(path, base_commit)
    except UnknownVersionError:
        return None
    prompt = parse_prompt(text, f"{relative_path(open_repo(path), path)}@{base_commit[:8]}")
    try:
        label = f"{resolve_version(path, base_commit).label} at base"
    except UnknownVersionError:
        label = f"base {base_commit[:8]}"
    return Contender(f"{name}@{base_commit[:8]}", label, prompt, base_commit)


# --- what changed -------------------------------------------------------------------------
# Git access beyond `versions` (merge-base, diff against the work tree); kept here, in one place.


def touched_prompts(paths: list[Path], root: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Prompt name → the changed paths that touch it (its file, its eval set, an experiment naming it); and removed prompts."""
    from promptops.artifact import check_prompt_file, load_prompt_file
    from promptops.evaluation import default_data_path

    root = root.resolve()
    prompts_folder, experiments_folder = root / "prompts", root / "experiments"
    eval_sets: dict[str, Path] = {}
    for file in sorted(prompts_folder.glob("*.yaml")):
        try:
            check_prompt_file(file, root)
            eval_sets[file.stem] = default_data_path(load_prompt_file(file), root).resolve()
        except PromptopsError:
            pass  # a broken file is reported when it is itself changed, and checked
    touched: dict[str, list[str]] = {}
    removed = []
    for path in paths:
        shown = _shown(path, root)
        is_yaml = path.suffix == ".yaml"  # prompts/NAME.yaml and experiments/NAME.yaml, as everywhere else
        if path.parent == prompts_folder and is_yaml:
            if path.exists():
                touched.setdefault(path.stem, []).append(shown)
            else:
                removed.append(path.stem)
        elif path.parent == experiments_folder and is_yaml and path.exists():
            named = _experiment_prompt(path)
            if named and (prompts_folder / f"{named}.yaml").exists():
                touched.setdefault(named, []).append(shown)
        for name, eval_set in eval_sets.items():
            if path == eval_set or eval_set in path.parents:
                touched.setdefault(name, []).append(shown)
    return touched, removed


def _experiment_prompt(path: Path) -> Optional[str]:
    """The prompt an experiment file names; None if the file does not say (its own errors show when it is run)."""
    import yaml

    from promptops.artifact import safe_load

    try:
        data = safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return None
    named = data.get("prompt") if isinstance(data, dict) else None
    return Path(named).stem if isinstance(named, str) and named else None


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
