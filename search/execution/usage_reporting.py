"""Usage reporting off: the libraries a study drives send nothing home unless the user asks.

MLflow 3 sends usage data (it fetches a config from ``config.mlflow-telemetry.io`` when ``mlflow``
is imported, then posts events); a Ray started by ``ray.init`` reports usage stats; the Hugging Face
hub client has its own telemetry and would look models up online. pers-search promises no network
at run time, so :func:`usage_reporting_off` sets each library's own switch in the environment,
where the command starts using the library and before it is imported, so that the processes it
starts (worker processes, Ray, the ``mlflow server`` of ``ui``) inherit it. A switch the user set
is left as it is: ``MLFLOW_DISABLE_TELEMETRY=false`` turns MLflow's telemetry back on.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import MutableMapping, NamedTuple


class Switch(NamedTuple):
    """One library's off switch: the variable, its "off" value, and the variables by which a user
    has already decided (the library reads them too), so that the switch is left alone."""

    variable: str
    off: str
    user_choices: tuple[str, ...] = ()


SWITCHES = (
    Switch("MLFLOW_DISABLE_TELEMETRY", "true", ("DO_NOT_TRACK",)),  # mlflow/telemetry/utils.py reads both
    Switch("RAY_USAGE_STATS_ENABLED", "0"),
    Switch("HF_HUB_DISABLE_TELEMETRY", "1", ("DO_NOT_TRACK",)),
    Switch("HF_HUB_OFFLINE", "1", ("TRANSFORMERS_OFFLINE",)),  # models load from local files only
)
RAY_CONFIG = "RAY_USAGE_STATS_CONFIG_PATH"  # `ray enable-usage-stats` writes {"usage_stats": true} there


def usage_reporting_off(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Switch usage reporting off in ``environ`` (default ``os.environ``) where the user has not decided.

    Args:
        environ: the environment to change in place (a copy for a subprocess, or ``os.environ``).

    Returns:
        The variables set, with their values (empty when every switch was already decided).
    """
    env = os.environ if environ is None else environ
    changed = {}
    for switch in SWITCHES:
        if _user_decided(switch, env):
            continue
        env[switch.variable] = switch.off
        changed[switch.variable] = switch.off
    if env is os.environ and "MLFLOW_DISABLE_TELEMETRY" in changed:
        _drop_mlflow_telemetry_client()
    return changed


def _user_decided(switch: Switch, env: MutableMapping[str, str]) -> bool:
    if any(name in env for name in (switch.variable, *switch.user_choices)):
        return True
    return switch.variable == "RAY_USAGE_STATS_ENABLED" and _ray_config_decides(env)


def _ray_config_decides(env: MutableMapping[str, str]) -> bool:
    """Whether ``ray enable-usage-stats``/``disable-usage-stats`` wrote the user's choice."""
    path = Path(env.get(RAY_CONFIG) or os.path.expanduser("~/.ray/config.json"))
    try:
        return "usage_stats" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def _drop_mlflow_telemetry_client() -> None:
    """MLflow builds its telemetry client when it is imported: if that already happened in this
    process, build it again under the new setting (MLflow's own re-initialisation, which drops it)."""
    telemetry = sys.modules.get("mlflow.telemetry")
    if telemetry is not None:
        telemetry.set_telemetry_client()
