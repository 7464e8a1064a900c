"""The open-alert book of one household during one step: opens, updates, resolves."""

from __future__ import annotations

from app.domain.anomaly.alerts import (
    AlertRecord,
    AlertType,
    Evidence,
    OpenAlert,
    Severity,
    alert_id,
)


class AlertBook:
    """Mutable only inside one ``step``/``tick`` call; frozen back into the state after."""

    __slots__ = ("dirty", "household_id", "meter_id", "opened", "out")

    def __init__(self, household_id: str, meter_id: str, opened: tuple[OpenAlert, ...]) -> None:
        self.household_id = household_id
        self.meter_id = meter_id
        self.opened: dict[str, OpenAlert] = {a.type: a for a in opened}
        self.out: list[AlertRecord] = []
        self.dirty = False
        """An alert was opened, updated or resolved (the state's ``open`` must be rebuilt)."""

    def is_open(self, kind: AlertType) -> bool:
        return kind in self.opened

    def open(
        self,
        kind: AlertType,
        opened_at: int,
        detected_at: int,
        severity: Severity,
        observed: float,
        baseline: float,
        threshold: float,
        unit: str,
        direction: int = 1,
    ) -> None:
        if kind in self.opened:
            return
        alert = OpenAlert(
            kind,
            alert_id(self.household_id, kind, opened_at),
            opened_at,
            severity,
            float(observed),
            float(baseline),
            float(threshold),
            unit,
            direction,
        )
        self.opened[kind] = alert
        self.dirty = True
        self.out.append(self._record(alert, "open", detected_at, detected_at, None))

    def extreme(self, kind: AlertType, value: float) -> None:
        """Remember the most extreme value seen while the alert is open."""
        a = self.opened.get(kind)
        if a is not None and (value - a.observed) * a.direction > 0:
            self.dirty = True
            self.opened[kind] = OpenAlert(
                a.type, a.alert_id, a.opened_at, a.severity, float(value), a.baseline,
                a.threshold, a.unit, a.direction,
            )  # fmt: skip

    def resolve(self, kind: AlertType, resolved_at: int, detected_at: int) -> None:
        a = self.opened.pop(kind, None)
        if a is not None:
            self.dirty = True
            resolved_at = max(resolved_at, a.opened_at)
            self.out.append(self._record(a, "resolved", detected_at, resolved_at, resolved_at))

    def frozen(self) -> tuple[OpenAlert, ...]:
        return tuple(sorted(self.opened.values(), key=lambda a: a.type))

    def records(self) -> list[AlertRecord]:
        """The records in the order they were found (reading by reading), which does not
        depend on how the readings were split into calls."""
        return self.out

    def _record(
        self, a: OpenAlert, status: str, detected_at: int, end: int, resolved_at: int | None
    ) -> AlertRecord:
        return AlertRecord(
            alert_id=a.alert_id,
            household_id=self.household_id,
            meter_id=self.meter_id,
            type=a.type,
            severity=a.severity,
            status="open" if status == "open" else "resolved",
            opened_at=a.opened_at,
            detected_at=detected_at,
            evidence=Evidence(
                observed=a.observed,
                baseline=a.baseline,
                threshold=a.threshold,
                duration_ms=max(0, end - a.opened_at),
                unit=a.unit,
            ),
            resolved_at=resolved_at,
        )
