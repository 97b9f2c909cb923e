"""`promptops.optimize`: a budgeted, multi-objective search whose winner becomes a prompt version.

- `_experiment`: the experiment file (search space, objectives, budget).
- `_candidates`: a trial's configuration compiled into a prompt by a DSPy optimizer.
- `_study`: the Optuna study, rungs and pruning, budget and resume; `_shared`: one budget across workers.
- `_front`: the Pareto front, the winner rule, the plot.
- `_runs`: the MLflow parent run and one nested run per trial (through `tracking`).
- `_winner`: the test comparison and the new version with the `candidate` alias.
- `_optimize`: `optimize`, the whole of it.
- `_trials`: a study's trials read back from its storage (`promptops trials`, `show EXPERIMENT@trial:N`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptops._lazy import lazy_exports

if TYPE_CHECKING:
    from promptops.optimizer._candidates import TrialConfig, compile_candidate, configured_prompt, example_metric
    from promptops.optimizer._experiment import Experiment, ExperimentFileError, load_experiment
    from promptops.optimizer._front import FrontPoint, RungPruner, pareto_front, pick_winner
    from promptops.optimizer._optimize import OptimizationResult, optimize
    from promptops.optimizer._shared import SharedBudget, SharedStudy
    from promptops.optimizer._study import Progress, StudyOutcome, load_context, worker_line
    from promptops.optimizer._trials import TrialListing, parse_trial_reference, trial_prompt, trials

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "_candidates": "TrialConfig compile_candidate configured_prompt example_metric",
    "_experiment": "Experiment ExperimentFileError load_experiment",
    "_front": "FrontPoint RungPruner pareto_front pick_winner",
    "_optimize": "OptimizationResult optimize",
    "_shared": "SharedBudget SharedStudy",
    "_study": "Progress StudyOutcome load_context worker_line",
    "_trials": "TrialListing parse_trial_reference trial_prompt trials",
})
