"""``tune``: an Optuna study over architecture, training and loss weighting.

Every trial is a nested MLflow run under one parent run per ``mtlflow tune`` process. The
study lives in ``tune.storage`` (SQLite by default), so an interrupted tune continues when run
again and several processes (or machines, with a server database) can share it. The best
trial's values go to ``reports/best_params.yaml``, which ``train`` applies.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import mlflow
import optuna

from pipelines import tracking
from pipelines.config import Params
from pipelines.data.splits import load_input_specs, load_split, split_digest
from pipelines.files import ProjectPaths, sqlite_lock
from pipelines.redaction import redact
from pipelines.services.augmentation import resolve_augmentation
from pipelines.services.best_params import write_best_params
from pipelines.services.fitting import check_backbone
from pipelines.services.study import (
    FINISHED,
    default_values,
    load_study,
    make_sampler,
    open_storage,
    report_study,
    sigterm_as_interrupt,
)
from pipelines.services.trial_cap import StudyFull
from pipelines.services.trials import Objective, StopOnFailures, TrialConfigError, TrialPrinter


def tune(params: Params, paths: ProjectPaths, project_run: str | None = None) -> dict[str, Any]:
    """Run the study until it holds ``tune.n_trials`` finished trials; write the best params.
    The tune run nests under ``project_run`` (a flow run's) when given."""
    cfg = params.tune
    if not cfg.enabled or not cfg.search_space:
        reason = "tune.enabled is false" if not cfg.enabled else "tune.search_space is empty"
        print(f"tune: skipped ({reason}); train uses params.yaml as it is")
        content: dict[str, Any] = {"study": None, "skipped": reason, "params": {}}
        write_best_params(paths, content)
        # DVC requires every declared output: the search's folder exists, saying why it is empty
        paths.tune_dir.mkdir(parents=True, exist_ok=True)
        (paths.tune_dir / "SKIPPED").write_text(f"tune skipped: {reason}\n")
        return content
    multi = cfg.objective == "per_task"
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # TrialPrinter says it once, shorter
    tasks = params.task_specs()
    data = load_split(paths, "train", tasks), load_split(paths, "val", tasks)
    input_specs = load_input_specs(paths)
    resolve_augmentation(params)  # fails before any trial
    check_backbone(params, input_specs)
    storage = open_storage(params)
    # Serialises creating the study among local workers of a SQLite study.
    with sqlite_lock(cfg.storage):
        study = load_study(params, storage, seed=cfg.seed)
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in FINISHED for t in trials)
        # A resumed study draws new random values rather than replaying the first run's.
        study.sampler = make_sampler(params, cfg.seed + len(trials))
        if cfg.enqueue_defaults and done < cfg.n_trials:
            # params.yaml's own values are trial 0, so the search never returns worse than
            # them (values outside their entry's range are left to the sampler)
            with suppress(StudyFull):  # another worker took the last slot meanwhile
                storage.enqueue_once(study, default_values(params))
    remaining = cfg.n_trials - done
    print(
        f"tune: study {study.study_name} in {redact(cfg.storage)}: {done} finished trials, "
        f"{max(remaining, 0)} to run ({cfg.epochs} epochs each, pruner {cfg.pruner.name}"
        f"{', off for per-task objectives' if multi and cfg.pruner.name != 'none' else ''})"
    )
    with tracking.training_run(params, paths.root, "tune", join=False, project_run=project_run):
        mlflow.set_tags(
            {
                "mtlflow.stage": "tune",
                "optuna.study": study.study_name,
                "data.split_sha256": split_digest(paths),
            }
        )
        if remaining > 0:
            objective = Objective(params, *data, input_specs=input_specs)
            try:
                with sigterm_as_interrupt():
                    failures = StopOnFailures(limit=max(5, cfg.n_trials))
                    study.optimize(
                        objective,
                        catch=(TrialConfigError,),
                        callbacks=[
                            optuna.study.MaxTrialsCallback(cfg.n_trials, states=FINISHED),
                            TrialPrinter(multi),
                            failures,
                        ],
                    )
                    failures.check()
            except StudyFull:  # the other workers ran the last trials
                print(f"tune: the study holds its {cfg.n_trials} trials")
            except KeyboardInterrupt:
                print("tune: interrupted; run `mtlflow tune` again to continue the study")
                raise
        return report_study(params, paths, study, multi)
