"""`schedule:` and `build:` in revetl.yml: how `revetl schedule run` runs the project.

```yaml
schedule:
  timezone: Europe/Berlin   # the zone cron times are read in (IANA name; default UTC)
  parallel: 4               # jobs (syncs, the build) running at once (default 4)
build:
  schedule: "0 * * * *"     # run `revetl build` on its own schedule; syncs saying `after: build` follow it
```

Strict like every revetl settings block (config.py's `Strict`, defined again here so that config.py can
import this module): unknown keys are errors, values immutable. A schedule's cron expression is checked
when the file is read (cron.py), so a typo is one sentence naming the file, line and key.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["BuildSettings", "ScheduleSettings", "cron_expression"]


def cron_expression(value: str | None) -> str | None:
    """A validator for a `schedule:` value: the expression, or ValueError saying what is wrong with it."""
    if value is None:
        return None
    from revetl.schedule.cron import problem

    found = problem(value)
    if found:
        raise ValueError(found)
    return value.strip()


class ScheduleSettings(BaseModel):
    """`schedule:` in revetl.yml: the time zone of every cron expression, and how many jobs run at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    parallel: int = Field(4, ge=1, le=64)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from revetl.schedule.cron import zone

        zone(value)  # ValueError with a sentence when unknown
        return value


class BuildSettings(BaseModel):
    """`build:` in revetl.yml: `schedule` runs `revetl build` on its own cron schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule: str | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return cron_expression(value)
