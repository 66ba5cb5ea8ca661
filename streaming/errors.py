"""Why a job did not succeed: a stable code, a readable message, and whether
trying again could help. The codes end up in `jobs.error_code`."""

from __future__ import annotations

# Never worth retrying: the input or the request itself is wrong.
PERMANENT_CODES = frozenset(
    {
        "INVALID_MESSAGE",  # body not JSON, missing field, id not a UUID
        "JOB_NOT_FOUND",  # no jobs row for the message's job_id
        "JOB_MISMATCH",  # message ids do not match the jobs / media_assets rows
        "ASSET_NOT_FOUND",  # no media_assets row for the job
        "INPUT_INVALID_KEY",  # storage_path/bucket outside the video's own folder
        "STORAGE_BASE_INVALID",  # base_org_storage_path is not orgs/{org_id}/uploads/
        "INPUT_NOT_FOUND",  # the raw upload is not in storage
        "INPUT_UNSUPPORTED",  # not a video FFmpeg may read (text, image, playlist …)
        "INPUT_CORRUPT",  # a video whose data ends or breaks long before its stated end
        "INPUT_TOO_LARGE",  # resolution or duration beyond the configured limits
        "FFMPEG_FAILED",  # the transcode failed with software decoding too
        "FFMPEG_STALLED",  # FFmpeg made no progress for FFMPEG_STALL_SECONDS
        "OUTPUT_INVALID",  # the stream made failed its check twice: never published
        "WORKER_CRASHED",  # every worker that took the job died before finishing it
    }
)

# Worth another try later (the message is released with a back-off).
TRANSIENT_CODES = frozenset(
    {
        "STORAGE_UNAVAILABLE",
        "DATABASE_UNAVAILABLE",
        "QUEUE_UNAVAILABLE",
        "DISK_TOO_SMALL",
        "WORKER_ERROR",  # an unexpected exception in the worker itself
    }
)


class JobError(Exception):
    """A job-ending condition with its `error_code`."""

    def __init__(self, code: str, message: str) -> None:
        if code not in PERMANENT_CODES | TRANSIENT_CODES:
            raise ValueError(f"unknown error code {code}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def permanent(self) -> bool:
        return self.code in PERMANENT_CODES


class JobAborted(Exception):
    """The job must stop now: the worker is shutting down, or lost the job."""

    def __init__(self, reason: str, *, lost: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lost = lost
