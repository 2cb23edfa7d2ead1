"""The prices a day's cost is estimated at (settings ``PRICE_*``; the cost: ``core.digest``).

Apart from the digest because every path reads the settings, and few render a digest (cold start:
bench/, figure 3). Prices and their sources: docs/platform.md, "What a day costs".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prices:
    """USD per GB: an RDS export (of the snapshot's size) and data transfer out to the internet."""

    export_per_gb: float = 0.010
    egress_per_gb: float = 0.09
