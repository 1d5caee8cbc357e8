"""Reading the Prometheus textfiles rdsssl writes, in tests: `prometheus_client`'s own parser
(names, types, labels, values), and `promtool check metrics` (Prometheus' linter) wherever
promtool is installed (Debian/Ubuntu: the `prometheus` package)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


def labels(**values: str) -> Labels:
    """A sample's label set as `read_metrics` keys it."""
    return tuple(sorted(values.items()))


@dataclass(frozen=True)
class Family:
    type: str
    help: str
    samples: dict[Labels, float]


def read_metrics(text: str) -> dict[str, Family]:
    """Every family of `text` with its type, help and samples (keyed by sorted labels). Fails
    on a family given twice, a sample named unlike its family or a label set given twice."""
    assert text.endswith("\n")
    found: dict[str, Family] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in found, f"{family.name} given twice"
        samples: dict[Labels, float] = {}
        for sample in family.samples:
            assert sample.name == family.name, f"{sample.name} outside its family"
            key = tuple(sorted(sample.labels.items()))
            assert key not in samples, f"{family.name}{key} given twice"
            samples[key] = sample.value
        found[family.name] = Family(family.type, family.documentation, samples)
    promtool_check(text)
    return found


def promtool_check(text: str) -> None:
    """`promtool check metrics` must accept `text` (no lint problem) when promtool is here."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr
