"""Evaluation: data and splits, metrics (labels, F1, judges, similarity, trajectories), statistics, running an eval, comparing two results, the gate. It never logs and never resolves NAME@REF."""

from __future__ import annotations

from promptops.evaluation._compare import ChangedExample, Comparison, Contender, IncomparableError, compare_contenders
from promptops.evaluation._data import Dataset, Example, SPLITS, default_data_path, load_dataset, split_file, split_size
from promptops.evaluation._gate import Verdict, gate_verdict, rows_needed, rule_for
from promptops.evaluation._judges import CheckedRow, check_judge, find_judge, Judge, JudgeCheck, Judgement, load_judge_file, read_labelled_rows
from promptops.evaluation._metrics import Metric, accuracy, default_metric, field_scores, is_correct, load_user_metric, normalize, resolve_metric, schema_validity
from promptops.evaluation._run import EvalOptions, EvalResult, ExampleResult, ProgressCallback, coverage_metrics, evaluate
from promptops.evaluation._similarity import DEFAULT_EMBEDDER, embed, embed_with_cost, similarities, similarities_with_cost
from promptops.evaluation._stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, FisherResult, Interval, fisher_exact, percentile, unpaired_bootstrap
from promptops.evaluation._trajectories import calls_match, format_calls, unsafe_actions

__all__ = ["ChangedExample", "CheckedRow", "Comparison", "Contender", "DEFAULT_CONFIDENCE", "DEFAULT_EMBEDDER", "DEFAULT_RESAMPLES", "Dataset", "EvalOptions", "EvalResult", "Example", "ExampleResult", "FisherResult", "IncomparableError", "Interval", "Judge", "JudgeCheck", "Judgement", "Metric", "ProgressCallback", "SPLITS", "Verdict", "accuracy", "calls_match", "check_judge", "compare_contenders", "coverage_metrics", "default_data_path", "default_metric", "embed", "embed_with_cost", "evaluate", "field_scores", "find_judge", "fisher_exact", "format_calls", "gate_verdict", "is_correct", "load_dataset", "load_judge_file", "load_user_metric", "normalize", "percentile", "read_labelled_rows", "resolve_metric", "rows_needed", "rule_for", "schema_validity", "similarities", "similarities_with_cost", "split_file", "split_size", "unpaired_bootstrap", "unsafe_actions"]
