"""All SQS calls of the transcoder: receive, delete, change visibility, send a copy.

Retries of single requests are botocore's `standard` mode; what is left after
them comes out as `QueueUnavailable` (transient) or `ReceiptInvalid` (the
message is no longer ours: deleted, or received by another consumer).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

_RECEIPT_GONE = {
    "ReceiptHandleIsInvalid",
    "InvalidReceiptHandle",
    "AWS.SimpleQueueService.MessageNotInflight",
    "MessageNotInflight",
}


class QueueUnavailable(Exception):
    """SQS could not be reached or answered with an error that may pass."""


class ReceiptInvalid(Exception):
    """The receipt handle no longer names an in-flight message of ours."""


@dataclass(frozen=True)
class Message:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int


def _receipt_gone(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    if code in _RECEIPT_GONE:
        return True
    # Real SQS answers InvalidParameterValue with this text for a stale handle.
    return code == "InvalidParameterValue" and "receipt" in str(error.get("Message", "")).lower()


class WorkQueue:
    def __init__(
        self, queue_url: str, region: str, *, read_timeout: int = 30,
        endpoint_url: str | None = None,
    ) -> None:  # fmt: skip
        self.url = queue_url
        # Without endpoint_url, botocore's own AWS_ENDPOINT_URL_SQS applies when set.
        self.client = boto3.client(
            "sqs",
            region_name=region,
            endpoint_url=endpoint_url,
            config=Config(
                retries={"mode": "standard", "max_attempts": 4},
                connect_timeout=10,
                read_timeout=read_timeout,
            ),
        )

    @cached_property
    def _receive_count(self) -> dict[str, list[str]]:
        """How this botocore asks for the receive count: `MessageSystemAttributeNames`
        since 1.34.101, `AttributeNames` before (SQS takes both)."""
        shape = self.client.meta.service_model.operation_model("ReceiveMessage").input_shape
        name = (
            "MessageSystemAttributeNames"
            if "MessageSystemAttributeNames" in shape.members
            else "AttributeNames"
        )
        return {name: ["ApproximateReceiveCount"]}

    def receive(self, wait_seconds: int = 20) -> Message | None:
        try:
            answer = self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=wait_seconds,
                **self._receive_count,
            )
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailable(f"receive: {type(exc).__name__}: {exc}") from exc
        messages = answer.get("Messages") or []
        if not messages:
            return None
        raw = messages[0]
        count_text = raw.get("Attributes", {}).get("ApproximateReceiveCount", "1")
        return Message(
            message_id=raw.get("MessageId", ""),
            receipt_handle=raw["ReceiptHandle"],
            body=raw.get("Body", ""),
            receive_count=int(count_text) if count_text.isdigit() else 1,
        )

    def _call(self, operation: str, **kwargs: object) -> dict:
        try:
            return getattr(self.client, operation)(QueueUrl=self.url, **kwargs)
        except ClientError as exc:
            if _receipt_gone(exc):
                raise ReceiptInvalid(str(exc)) from exc
            raise QueueUnavailable(f"{operation}: {exc}") from exc
        except BotoCoreError as exc:
            raise QueueUnavailable(f"{operation}: {type(exc).__name__}: {exc}") from exc

    def depth(self) -> tuple[int, int]:
        """(waiting, in flight) messages: reaches the queue, touches none."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self._call("get_queue_attributes", AttributeNames=names)["Attributes"]
        return tuple(int(attributes.get(n, 0)) for n in names)  # type: ignore[return-value]

    def delete(self, message: Message) -> None:
        self._call("delete_message", ReceiptHandle=message.receipt_handle)

    def send_copy(self, message: Message, delay_seconds: int) -> str:
        """A fresh copy of `message` (same body, receive count 0), visible after
        `delay_seconds` (at most SQS's 900); returns the copy's message id."""
        return self.send(message.body, delay_seconds)

    def send(self, body: str, delay_seconds: int = 0) -> str:
        """A new message, visible after `delay_seconds` (at most SQS's 900)."""
        answer = self._call(
            "send_message", MessageBody=body, DelaySeconds=max(0, min(int(delay_seconds), 900))
        )
        return str(answer.get("MessageId", ""))

    def set_visibility(self, message: Message, seconds: int) -> None:
        """Make the message invisible for `seconds` from now (0 = visible at once)."""
        self._call(
            "change_message_visibility",
            ReceiptHandle=message.receipt_handle,
            VisibilityTimeout=max(0, min(int(seconds), 43200)),
        )
