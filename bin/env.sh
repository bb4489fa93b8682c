# shellcheck shell=bash
# Environment shared by bin/setup, bin/test and bin/demo: sourced, never executed.
# It pins every tool to the repo's .venv and keeps Airflow's state inside the repo (var/airflow)
# unless STARMAMUT_HOME or AIRFLOW_HOME say otherwise. Sourcing it twice changes nothing.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
export REPO VENV

# Prepend $2 to the colon-separated variable named $1 unless it is already there.
_starmamut_prepend_path() {
    local current="${!1:-}"
    case ":$current:" in
        *":$2:"*) ;;
        *) export "$1=$2${current:+:$current}" ;;
    esac
}

# Airflow standalone starts its components by running `airflow` from PATH: the venv must come first.
_starmamut_prepend_path PATH "$VENV/bin"
_starmamut_prepend_path PYTHONPATH "$REPO/include"
# The dev tooling (the sandbox and the Mamut mock bin/demo starts); bin/setup installs it editable as well.
_starmamut_prepend_path PYTHONPATH "$REPO/devtools"
unset -f _starmamut_prepend_path

export AIRFLOW_HOME="${STARMAMUT_HOME:-${AIRFLOW_HOME:-$REPO/var/airflow}}"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO/plugins"
export GX_ANALYTICS_ENABLED=false
