"""Training runs: configuration, runner, callbacks and atomic file IO."""

from annzoo.training.runner import RunResult, TrainConfig, main, resolve_run_dir, train

__all__ = ["RunResult", "TrainConfig", "main", "resolve_run_dir", "train"]
