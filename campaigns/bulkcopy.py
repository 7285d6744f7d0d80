"""Write planned calls and their audio rows in bulk: COPY on PostgreSQL, bulk_create elsewhere."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection

from campaigns.models import Call, CallClip, Campaign
from synthesis.models import RenderedAudio

# A planned call, as planning builds it (tuples, not Call instances: a million of those is slow).
CALL_FIELDS = (
    "contact_id", "variant_id", "phone", "timezone", "text", "audio_id", "voicemail_audio_id", "state", "outcome",
    "error",
)
# New audio: render key -> (text, the prepared variant that speaks it: .variant, .keyer, .parameters,
# .parameters_json).
NewAudio = dict[str, tuple[str, Any]]


class BulkWriter:
    """Any database: model instances through bulk_create, conflicts ignored."""

    def __init__(self, campaign: Campaign, start_at: datetime) -> None:
        self.campaign, self.start_at = campaign, start_at

    def start(self, *, first_plan: bool = False) -> None:
        pass

    def fresh_audio(self) -> list[tuple[str, int | None]] | None:
        """bulk_create does not say which rows it skipped: the planner has to look (see CopyWriter)."""
        return None

    def write(self, calls: list[tuple], audio: NewAudio, clips: list[tuple] = ()) -> None:
        renders = [
            RenderedAudio(
                render_key=key, engine=p.variant.voice.engine, engine_version=p.keyer.engine_version,
                voice_id=p.variant.voice_id, text=text, parameters=dict(p.parameters),
            )
            for key, (text, p) in audio.items()
        ]
        RenderedAudio.objects.bulk_create(renders, ignore_conflicts=True, batch_size=2000)
        rows = [dict(zip(CALL_FIELDS, row, strict=True)) for row in calls]
        Call.objects.bulk_create(
            [Call(campaign=self.campaign, next_attempt_at=self.start_at, **row) for row in rows],
            ignore_conflicts=True, batch_size=2000,
        )
        if clips:
            call_of = dict(
                Call.objects.filter(campaign=self.campaign, contact_id__in={row[0] for row in clips}).values_list(
                    "contact_id", "pk"
                )
            )
            CallClip.objects.bulk_create(
                [CallClip(call_id=call_of[c], name=n, audio_id=k, said=s) for c, n, k, s in clips if c in call_of],
                ignore_conflicts=True, batch_size=2000,
            )

    def finish(self) -> None:
        pass


class CopyWriter:
    """PostgreSQL (psycopg 3): COPY into staging tables, then INSERT … SELECT … ON CONFLICT DO NOTHING.

    COPY skips the per-row cost of bulk_create (a model instance and sixteen SQL parameters a row), which was
    most of planning's time. But COPY cannot skip conflicts, and both skips matter: a contact already planned
    keeps its call (planning twice changes nothing), and audio that another campaign inserted first is
    shared, not an error. Staging gives COPY's speed with INSERT's ON CONFLICT. Columns the planner does not
    set get the model's defaults, so the rows are the ones bulk_create would write.
    """

    AUDIO_FIELDS = ("render_key", "text", "engine", "engine_version", "voice_id", "parameters")
    STAGING = (("plan_audio", RenderedAudio, AUDIO_FIELDS), ("plan_call", Call, CALL_FIELDS))

    def __init__(self, campaign: Campaign, start_at: datetime) -> None:
        self.campaign, self.start_at = campaign, start_at
        self.staged_audio: list[tuple[str, int | None]] = []  # (render key, voice id), as staged
        self.staged_calls = self.staged_clips = 0
        self.inserted_audio = self.inserted_calls = -1

    def start(self, *, first_plan: bool = False) -> None:
        """`first_plan`: the campaign has no calls, and the caller holds its row lock until commit."""
        self.first_plan = first_plan
        # The real tables' column types; ON COMMIT DROP in case finish() is never reached.
        with connection.cursor() as cursor:
            for staging, model, fields in self.STAGING:
                cursor.execute(
                    f"CREATE TEMP TABLE {staging} ON COMMIT DROP AS "
                    f"SELECT {_columns(model, fields)} FROM {_table(model)} WITH NO DATA"
                )

    def write(self, calls: list[tuple], audio: NewAudio, clips: list[tuple] = ()) -> None:
        audio_rows = [
            (key, text, p.variant.voice.engine, p.keyer.engine_version, p.variant.voice_id, p.parameters_json)
            for key, (text, p) in audio.items()
        ]
        self.staged_audio.extend((row[0], row[4]) for row in audio_rows)
        self.staged_calls += len(calls)
        with connection.cursor() as cursor:
            for (staging, model, fields), rows in zip(self.STAGING, (audio_rows, calls), strict=True):
                with cursor.copy(f"COPY {staging} ({_columns(model, fields)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            if clips:
                if not self.staged_clips:
                    cursor.execute(
                        "CREATE TEMP TABLE plan_clip (contact_id bigint, name varchar(20), render_key varchar(64), "
                        "said varchar(200)) ON COMMIT DROP"
                    )
                self.staged_clips += len(clips)
                with cursor.copy("COPY plan_clip (contact_id, name, render_key, said) FROM STDIN") as copy:
                    for row in clips:
                        copy.write_row(row)

    def finish(self) -> None:
        with connection.cursor() as cursor:
            # Audio first: a call's clip exists before the call (Call.audio has no database constraint). In
            # key order, the unique index takes the new keys in one sweep instead of at random: about a quarter
            # faster.
            self.inserted_audio = _insert_from_staging(
                cursor, RenderedAudio, "plan_audio", self.AUDIO_FIELDS, {},
                conflict="render_key", order="render_key",
            )
            # Calls in contact order, as before: their ids break ties in the order the dialer takes them. A
            # campaign's first plan cannot meet a planned contact (no calls, planners wait on its row lock, each
            # contact staged once), so it inserts plainly: ON CONFLICT's per-row check and speculative insert
            # cost about a sixth of the insert.
            self.inserted_calls = _insert_from_staging(
                cursor, Call, "plan_call", CALL_FIELDS, {"campaign_id": self.campaign.pk, "next_attempt_at": self.start_at},
                conflict=None if self.first_plan else "campaign_id, contact_id", order="contact_id",
            )
            if self.staged_clips:
                # Each callee's flow clips, joined to the calls just inserted by contact (their ids are new).
                clip, call = _table(CallClip), _table(Call)
                cursor.execute(
                    f"INSERT INTO {clip} (call_id, name, render_key, said) SELECT c.id, s.name, s.render_key, s.said "
                    f"FROM plan_clip s JOIN {call} c ON c.campaign_id = %s AND c.contact_id = s.contact_id "
                    "ORDER BY c.id ON CONFLICT (call_id, name) DO NOTHING",
                    [self.campaign.pk],
                )
                cursor.execute("DROP TABLE plan_clip")
            for staging, _, _ in self.STAGING:
                cursor.execute(f"DROP TABLE {staging}")

    def fresh_audio(self) -> list[tuple[str, int | None]] | None:
        """The staged clips, when this plan inserted every call and every clip it staged; else None.

        Then the campaign's waiting calls are exactly this plan's, and their clips are rows this transaction
        just wrote as pending, invisible to every renderer: no call can be a cache hit yet, and these are the
        clips to render. The planner skips its cache-hit UPDATE and its query for pending clips, which would
        find nothing and these keys. Anything else (a contact planned before, a clip another campaign or an
        earlier chunk already inserted) shows as a skipped row and leaves the answer to those queries.
        """
        if self.inserted_calls == self.staged_calls and self.inserted_audio == len(self.staged_audio):
            return self.staged_audio
        return None


def _table(model: type) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _columns(model: type, fields: Iterable[str]) -> str:
    return ", ".join(connection.ops.quote_name(model._meta.get_field(name).column) for name in fields)


def _insert_from_staging(
    cursor: Any,
    model: type,
    staging: str,
    fields: tuple[str, ...],
    constants: dict[str, Any],
    *,
    conflict: str | None,
    order: str,
) -> int:
    """INSERT the staged rows into the model's table, filling every other column from `constants` or the
    model's field default (a nullable column without one is left NULL); rows that conflict on the `conflict`
    columns are skipped (None: the caller knows none can). Returns how many rows were inserted."""
    columns, values, params = [_columns(model, fields)], [_columns(model, fields)], []
    for f in model._meta.concrete_fields:
        if f.primary_key or f.attname in fields or (f.attname not in constants and f.has_db_default()):
            continue  # the database fills these
        value = f.get_db_prep_save(constants[f.attname] if f.attname in constants else f.get_default(), connection)
        if value is None:
            continue  # left out is NULL
        columns.append(connection.ops.quote_name(f.column))
        values.append(f"CAST(%s AS {f.cast_db_type(connection)})")
        params.append(value)
    cursor.execute(
        f"INSERT INTO {_table(model)} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {staging} "
        f"ORDER BY {order}" + (f" ON CONFLICT ({conflict}) DO NOTHING" if conflict else ""),
        params,
    )
    return cursor.rowcount

