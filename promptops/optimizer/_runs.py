"""What a study records in MLflow: the parent run, one nested run per trial, the front, the test and the winner.

The records are written by `promptops.tracking` (the only package that talks to MLflow); these
are the optimizer's names for them.
"""

from __future__ import annotations

from promptops.tracking import (
    check_store,
    close_trial_run,
    finish_study_run,
    log_front,
    log_trial,
    start_study_run,
)
from promptops.tracking import log_test_comparison as log_test
from promptops.tracking import tag_study_winner as tag_winner

__all__ = ["check_store", "close_trial_run", "finish_study_run", "log_front", "log_test", "log_trial", "start_study_run", "tag_winner"]
