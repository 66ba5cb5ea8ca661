"""The live enums of the rows the workers write (../shared/CONTRACT.md section 2)."""

from __future__ import annotations

import enum


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED)


class AssetStatus(str, enum.Enum):
    UPLOADED = "uploaded"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class AssetStage(str, enum.Enum):
    UPLOADED = "uploaded"
    TRANSCODING = "transcoding"
    TRANSCODED = "transcoded"
    COMPLETE = "complete"
    FAILED = "failed"
