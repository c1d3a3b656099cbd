#!/usr/bin/env bash
# Screenshots for the README (docs/screenshots/*.png): what a user sees of a pipeline run in
# the MLflow UI (the experiment's runs table, a training run's page, the chart view) and in the
# Prefect UI (a flow run's Artifacts tab, its model report). Run it from a project folder where
# the pipeline has run (`make run`), with the project's venv on PATH:
#
#   bash docs/screenshots.sh                  # the latest completed mtl-pipeline flow run
#   FLOW=run bash docs/screenshots.sh         # first run the mtl-pipeline flow against the server
#   FLOW=none bash docs/screenshots.sh        # MLflow screenshots only
#
# It starts `mlflow ui` and `prefect server start` bound to 127.0.0.1 (MLFLOW_PORT, 5000, and
# PREFECT_PORT, 4200, which must be free) and stops them when it ends, failed or not. The
# Prefect server keeps its database in PREFECT_HOME (Prefect's default: ~/.prefect): the flow
# run must have been recorded there (README "Prefect"). FLOW=run runs the flow in this process
# with FLOW_OVERRIDES (default {"train.epochs": 5}): it retrains, and registers a model version.
# Chromium: `apt-get install chromium` (Debian) or CHROMIUM=/path/to/chrome. OUT: where the
# PNGs go (default docs/screenshots).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-docs/screenshots}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
PREFECT_PORT=${PREFECT_PORT:-4200}
FLOW=${FLOW:-existing}
FLOW_OVERRIDES=${FLOW_OVERRIDES:-'{"train.epochs": 5}'}
export CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || echo chromium)}
export MLFLOW_DISABLE_TELEMETRY=${MLFLOW_DISABLE_TELEMETRY:-true} GIT_PYTHON_REFRESH=${GIT_PYTHON_REFRESH:-quiet}
TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}
MLFLOW_UI=http://127.0.0.1:$MLFLOW_PORT
PREFECT_UI=http://127.0.0.1:$PREFECT_PORT
export MLFLOW_UI   # where the links in the flow's artifacts point

case $FLOW in existing|run|none) ;; *) echo "error: FLOW=$FLOW: expected existing, run or none" >&2; exit 2;; esac
[[ -f params.yaml ]] || { echo "error: no params.yaml here: run this in the project folder" >&2; exit 2; }
if [[ $TRACKING_URI == sqlite:///* && ! -f ${TRACKING_URI#sqlite:///} ]]; then
  echo "error: ${TRACKING_URI#sqlite:///} does not exist: run the pipeline first (make run)" >&2; exit 2
fi
command -v "$CHROMIUM" >/dev/null || { echo "error: no Chromium ($CHROMIUM): apt-get install chromium" >&2; exit 2; }

WORK=$(mktemp -d)
SERVERS=()            # process group ids (setsid: each server leads its own group)
cleanup() {
  local pgid
  for pgid in "${SERVERS[@]}"; do kill -TERM -- "-$pgid" 2>/dev/null || true; done
  for pgid in "${SERVERS[@]}"; do
    for _ in $(seq 20); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pgid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME HEALTH_URL LOG COMMAND...: in its own process group, then wait until it answers
start() {
  local name=$1 health=$2 log=$3; shift 3
  if curl -sf -o /dev/null "$health"; then
    echo "error: something already answers at $health: stop it or set another port" >&2; exit 2
  fi
  setsid "$@" >"$log" 2>&1 < /dev/null &
  SERVERS+=("$!")
  for _ in $(seq 180); do
    curl -sf -o /dev/null "$health" && { echo "$name: up"; return 0; }
    kill -0 "$!" 2>/dev/null || break
    sleep 1
  done
  echo "error: $name did not start; its log:" >&2; tail -20 "$log" >&2; exit 1
}

# ---------------------------------------------------------------- Prefect: a flow run
FLOW_RUN_ID= REPORT_ID=
if [[ $FLOW != none ]]; then
  export PREFECT_API_URL=$PREFECT_UI/api
  start "prefect server" "$PREFECT_API_URL/health" "$WORK/prefect.log" \
    prefect server start --host 127.0.0.1 --port "$PREFECT_PORT"
  if [[ $FLOW == run ]]; then
    echo "running the mtl-pipeline flow with $FLOW_OVERRIDES"
    FLOW_OVERRIDES=$FLOW_OVERRIDES python -c '
import json, os
from pipelines.orchestration.flows import mtl_pipeline
mtl_pipeline(overrides=json.loads(os.environ["FLOW_OVERRIDES"]), mlflow_ui=os.environ["MLFLOW_UI"])
'
  fi
  FLOW_RUN_ID=$(curl -sf -X POST "$PREFECT_API_URL/flow_runs/filter" -H 'Content-Type: application/json' \
    -d '{"flows": {"name": {"any_": ["mtl-pipeline"]}},
         "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
         "sort": "START_TIME_DESC", "limit": 1}' |
    python -c 'import json, sys; runs = json.load(sys.stdin); print(runs[0]["id"] if runs else "")')
  if [[ -z $FLOW_RUN_ID ]]; then
    echo "error: no completed mtl-pipeline flow run in this Prefect server (PREFECT_HOME=${PREFECT_HOME:-~/.prefect}):" \
      "run one (README \"Prefect\"), or FLOW=run, or FLOW=none" >&2
    exit 1
  fi
  REPORT_ID=$(curl -sf -X POST "$PREFECT_API_URL/artifacts/filter" -H 'Content-Type: application/json' \
    -d "{\"artifacts\": {\"flow_run_id\": {\"any_\": [\"$FLOW_RUN_ID\"]},
                          \"key\": {\"any_\": [\"mtlflow-model-report\"]}}}" |
    python -c 'import json, sys; found = json.load(sys.stdin); print(found[0]["id"] if found else "")')
fi

# ---------------------------------------------------------------- MLflow: what to show
start "mlflow ui" "$MLFLOW_UI/health" "$WORK/mlflow.log" \
  mlflow ui --backend-store-uri "$TRACKING_URI" --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1

mkdir -p "$OUT"
TRACKING_URI=$TRACKING_URI OUT=$OUT FLOW_RUN_ID=$FLOW_RUN_ID REPORT_ID=$REPORT_ID PREFECT_UI=$PREFECT_UI \
python - >"$WORK/shots.json" <<'EOF'
import json, os
from pathlib import Path

from mlflow import MlflowClient

from pipelines.config import load_params
from pipelines.tracking.runs import TRAINING_VIEW

params = load_params(Path("params.yaml"), [])
client = MlflowClient(os.environ["TRACKING_URI"])
experiment = client.get_experiment_by_name(params.tracking.experiment)
if experiment is None:
    raise SystemExit(f"error: no MLflow experiment {params.tracking.experiment!r}: run the pipeline first")
exp = experiment.experiment_id
# the latest training run named by `mtlflow train` (`train <method> <backbone> ...`)
runs = client.search_runs(
    [exp], "tags.`mtlflow.stage` = 'train' and attributes.status = 'FINISHED'",
    order_by=["attributes.start_time DESC"], max_results=50,
)
runs = [r for r in runs if r.info.run_name.startswith("train ")] or runs
if not runs:
    raise SystemExit("error: no finished training run in the experiment: run the pipeline first")
run = runs[0]
ui, out = os.environ["MLFLOW_UI"], Path(os.environ["OUT"])
name = run.info.run_name
shots = [
    # the runs table in the model training view; the run name column widened to show the names
    {"file": str(out / "mlflow-experiment.png"),
     "url": f"{ui}/#/experiments/{exp}?{TRAINING_VIEW}",
     "wait": ["Model training", "Run Name", name],
     "drag": {"selector": '.ag-header-cell[col-id="attributes.`Run Name`"]', "dx": 140}},
    # a training run: its description (per-task test table, registry decision), expanded
    {"file": str(out / "mlflow-run.png"),
     "url": f"{ui}/#/experiments/{exp}/runs/{run.info.run_id}?{TRAINING_VIEW}",
     "wait": [name, "Description", "Test metrics"],
     "click": "Show more", "wait_after_click": ["Registry"]},
    # the chart view as it opens: its first sections, in the order MLflow lays them out
    {"file": str(out / "mlflow-charts.png"),
     "url": f"{ui}/#/experiments/{exp}/runs?{TRAINING_VIEW}&compareRunsMode=CHART",
     "wait": ["Model metrics", "test/score"], "settle": 6},
]
flow_run, report = os.environ["FLOW_RUN_ID"], os.environ["REPORT_ID"]
if flow_run:
    prefect = os.environ["PREFECT_UI"]
    shots.append(  # the flow run page, Artifacts tab
        {"file": str(out / "prefect-flow-run-artifacts.png"),
         "url": f"{prefect}/runs/flow-run/{flow_run}",
         "wait": ["Artifacts", "Completed"],
         "click": "Artifacts",
         "wait_after_click": ["mtlflow-model-report", "mtlflow-test-metrics"]}
    )
if report:
    shots.append(  # its model report: registry decision, per-task test table, MLflow links
        {"file": str(out / "prefect-model-report.png"),
         "url": f"{os.environ['PREFECT_UI']}/artifacts/artifact/{report}",
         "wait": ["Model report", "Registry", "Test metrics"]}
    )
print(json.dumps(shots, indent=1))
EOF

python "$HERE/screenshots.py" "$WORK/shots.json"
