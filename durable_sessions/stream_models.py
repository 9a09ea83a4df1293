"""Generic Durable Streams: a stream, its appends and its idempotent producers.

A stream is addressed by its path under ``STREAMS_PREFIX``. Each append is one
:class:`StreamEntry` with the next ``seq`` (gapless per stream, like a session's events);
its ``end`` is the stream's length in bytes after it, so the offset after an entry,
``"<seq>_<end>"`` zero-padded, grows with every append and sorts as text. In JSON mode an
entry holds the messages of one append as JSON texts joined by commas. A fork copies the
entries it inherits (the offsets stay those of the source), so reading a fork never
touches its source.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

JSON_TYPE = "application/json"


class Stream(models.Model):
    """One generic stream: its configuration, its tail and whether it is closed."""

    path = models.CharField(max_length=1024, unique=True, verbose_name=_("path"))
    content_type = models.CharField(max_length=255, verbose_name=_("content type"))
    # The content type without parameters, lower case: what appends must match.
    media_type = models.CharField(max_length=255, verbose_name=_("media type"))
    created_at = models.DateTimeField(verbose_name=_("created at"))
    # Reads and writes move this forward; a stream with ``ttl_seconds`` expires after
    # that much idleness.
    last_access_at = models.DateTimeField(verbose_name=_("last access at"))
    ttl_seconds = models.BigIntegerField(null=True, blank=True, verbose_name=_("ttl seconds"))
    expires_at = models.DateTimeField(null=True, blank=True, verbose_name=_("expires at"))
    # The header exactly as given: echoed on HEAD, compared by an idempotent re-create.
    expires_at_text = models.CharField(max_length=64, blank=True, verbose_name=_("expires at text"))
    tail_seq = models.BigIntegerField(default=0, verbose_name=_("tail seq"))
    tail_bytes = models.BigIntegerField(default=0, verbose_name=_("tail bytes"))
    closed = models.BooleanField(default=False, verbose_name=_("closed"))
    # The producer request that closed the stream: its retry is a duplicate, not an error.
    closed_by = models.CharField(max_length=300, blank=True, verbose_name=_("closed by"))
    # Highest Stream-Seq accepted (compared as text); the scope is the stream.
    last_stream_seq = models.CharField(
        max_length=255, null=True, blank=True, verbose_name=_("last stream seq")
    )
    forked_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="forks",
        verbose_name=_("forked from"),
    )
    fork_source_path = models.CharField(
        max_length=1024, blank=True, verbose_name=_("fork source path")
    )
    fork_offset = models.CharField(max_length=64, blank=True, verbose_name=_("fork offset"))
    fork_sub_offset = models.BigIntegerField(default=0, verbose_name=_("fork sub offset"))
    # Deleted (or expired) while forks still refer to it: 410 to everyone, path blocked.
    soft_deleted = models.BooleanField(default=False, verbose_name=_("soft deleted"))

    class Meta:
        app_label = "durable_sessions"
        verbose_name = _("stream")
        verbose_name_plural = _("streams")

    def __str__(self) -> str:
        return self.path

    @property
    def is_json(self) -> bool:
        return self.media_type == JSON_TYPE


def media_type_of(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


class StreamEntry(models.Model):
    """One append: its bytes (or, in JSON mode, its messages) and where it ends."""

    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="entries")
    seq = models.BigIntegerField()
    end = models.BigIntegerField()
    data = models.BinaryField()

    class Meta:
        app_label = "durable_sessions"
        constraints = [
            models.UniqueConstraint(fields=["stream", "seq"], name="ds_stream_entry_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}:{self.seq}"


class StreamProducer(models.Model):
    """The state of one idempotent producer of a stream: its epoch and last batch."""

    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="producers")
    producer_id = models.CharField(max_length=255)
    epoch = models.BigIntegerField()
    last_seq = models.BigIntegerField()

    class Meta:
        app_label = "durable_sessions"
        constraints = [
            models.UniqueConstraint(fields=["stream", "producer_id"], name="ds_stream_producer_id"),
        ]

    def __str__(self) -> str:
        return f"{self.producer_id}@{self.epoch}"
