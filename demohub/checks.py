"""Settings checks that need more than the settings: the demos found (an unknown
demo in `--model`) or what earlier runs measured (a budget no model fits). Pure
functions returning sentences; hub.py prints them in argparse's style."""

from __future__ import annotations

from typing import Iterable, Mapping

from demohub.loadtimes import LastLoad
from demohub.spec import ModelSource


def mb(size: int) -> str:
    return f"{size / 2**20:.0f} MB" if size < 2**30 else f"{size / 2**30:.1f} GB"


def check_models(known: Iterable[str], models: Mapping[str, ModelSource],
                 settings: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for the model overrides: a name that is no demo is an
    error that lists the demos; a Hub repo without @revision is served, with one
    warning, since what it serves can change under the operator."""
    known = sorted(set(known))
    errors, warnings = [], []
    for name, source in models.items():
        setting = settings.get(name, f"--model {name}=...")
        if name not in known:
            errors.append(f"{setting}: there is no demo named {name!r}; the demos are: {', '.join(known)}")
        elif source.is_hub and not source.revision:
            warnings.append(f"{setting}: no @revision, so what is served can change with every push to "
                            f"{source.repo_id}; pin one: {name}={source.repo_id}@<commit sha> "
                            "(python -m demohub.publish prints it)")
    return errors, warnings


def check_budget(budget: int | None, metric: str, served: Iterable[str],
                 last: Mapping[str, LastLoad]) -> str | None:
    """A budget smaller than one model's last measured size (same metric) could
    never hold that model: refuse it at start, with the number."""
    if budget is None:
        return None
    for name in served:
        seen = last.get(name)
        if seen is not None and seen.memory_metric == metric and seen.memory_bytes > budget:
            return (f"--memory-budget {mb(budget)} is smaller than the {name} model's last measured size "
                    f"({mb(seen.memory_bytes)} {metric.upper()}), so it could never load; raise the budget "
                    f"above {mb(seen.memory_bytes)} or leave {name} out with --only")
    return None
