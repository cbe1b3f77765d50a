"""Charts of a paced send for the docs: requests started per second, the allowed rate, the 429s.

``rate_limits.py`` and ``shared_limit.py`` draw them when run with ``--charts DIRECTORY``, from
what the server saw. matplotlib is imported here and nowhere else, and this module only when
charts are asked for: the benchmarks run without it (``pip install -r
benchmarks/requirements.txt`` brings it).

Requests are counted in bins as long as the server's window (6 s here), as requests per second.
A client that keeps to 60 per 6 s sends bursts of 60 at once: counted per second, they would be
spikes six times the allowed rate although the server accepts every request, and a rate counted
over the 6 s before each instant drops to zero whenever a burst leaves that window. The output
is deterministic for the same numbers (no date, fixed SVG ids, text kept as text), so that a
re-run diffs only where the numbers moved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import attrs

ACCEPTED_COLOR = "#4c72b0"
REFUSED_COLOR = "#c44e52"


@attrs.frozen
class Chart:
    """One send as the server saw it, to be drawn to ``<name>.svg``."""

    name: str
    title: str
    #: (seconds since the first request, status) per request, in arrival order.
    requests: Sequence[tuple[float, int]]
    #: The server's limit as requests per second, and as the legend names it.
    allowed_rate: float
    allowed_label: str
    #: The width of a bin in seconds: the server's window.
    bin_s: float


def per_bin(chart: Chart) -> tuple[list[float], list[float]]:
    """Accepted and refused (429) requests started per second, in each bin from 0 s."""
    last = max((at for at, _ in chart.requests), default=0.0)
    accepted = [0.0] * (math.floor(last / chart.bin_s) + 1)
    refused = accepted.copy()
    for at, status in chart.requests:
        counts = refused if status == 429 else accepted
        counts[math.floor(at / chart.bin_s)] += 1 / chart.bin_s
    return accepted, refused


def write_charts(charts: Sequence[Chart], directory: Path) -> list[Path]:
    """Draw each chart to ``directory/<name>.svg``, all on the same scales, so that they can be
    compared at a glance; return the paths."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MultipleLocator

    if not charts:
        return []
    binned = [per_bin(chart) for chart in charts]
    highest = max(
        [chart.allowed_rate for chart in charts]
        + [a + r for accepted, refused in binned for a, r in zip(accepted, refused, strict=True)]
    )
    top = math.ceil(highest * 1.3 / 5) * 5  # room for the legend
    end = max(
        len(accepted) * chart.bin_s for chart, (accepted, _) in zip(charts, binned, strict=True)
    )
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.rc_context(
        {
            "svg.hashsalt": "whop_async-benchmarks",  # the same ids in every run
            "svg.fonttype": "none",
            "font.family": "sans-serif",
            "font.size": 10,
            "legend.fontsize": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    ):
        for chart, (accepted, refused) in zip(charts, binned, strict=True):
            figure = Figure(figsize=(6.4, 2.6), layout="constrained")
            axes = figure.add_subplot()
            starts = [index * chart.bin_s for index in range(len(accepted))]
            refusals = sum(status == 429 for _, status in chart.requests)
            width = chart.bin_s * 0.9
            axes.bar(
                starts,
                accepted,
                color=ACCEPTED_COLOR,
                label=f"accepted ({len(chart.requests) - refusals})",
                width=width,
                align="edge",
            )
            axes.bar(
                starts,
                refused,
                bottom=accepted,
                color=REFUSED_COLOR,
                label=f"answered 429 ({refusals})",
                width=width,
                align="edge",
            )
            axes.axhline(
                chart.allowed_rate,
                color="black",
                linestyle="--",
                linewidth=1,
                label=chart.allowed_label,
            )
            axes.set_xlim(0, end)
            axes.set_ylim(0, top)
            # A tick every 1, 2, 5, 10, 20... bins: 10 ticks at most.
            steps = [step * 10**power for power in range(6) for step in (1, 2, 5)]
            every = next(step for step in steps if end / (chart.bin_s * step) <= 10)
            axes.xaxis.set_major_locator(MultipleLocator(chart.bin_s * every))
            axes.set_xlabel("seconds since the first request")
            axes.set_ylabel(f"requests started / s\n(per {chart.bin_s:g} s)")
            axes.set_title(chart.title, loc="left")
            axes.legend(loc="upper right", frameon=False, ncols=3)
            path = directory / f"{chart.name}.svg"
            figure.savefig(path, format="svg", metadata={"Date": None})
            written.append(path)
    return written
