"""The report's numbers counted again straight from the attempt rows with hand-written SQL.

Pages, exports and the API must show exactly these (tests compare them). Deliberately independent of
campaigns.reports and of the per-call facts it reads: it groups the attempts themselves.
"""

from __future__ import annotations

from django.db import connection

# Per variant (by name): counts over calls and their attempts.
VARIANT_SQL = """
SELECT v.name,
       (SELECT COUNT(*) FROM campaigns_call c WHERE c.variant_id = v.id
           AND c.state <> 'invalid' AND c.outcome <> 'do_not_call') AS calls,
       (SELECT COUNT(*) FROM campaigns_callattempt a JOIN campaigns_call c ON c.id = a.call_id
           WHERE c.variant_id = v.id) AS attempts,
       (SELECT COUNT(DISTINCT a.call_id) FROM campaigns_callattempt a JOIN campaigns_call c ON c.id = a.call_id
           WHERE c.variant_id = v.id) AS dialled,
       (SELECT COUNT(DISTINCT a.call_id) FROM campaigns_callattempt a JOIN campaigns_call c ON c.id = a.call_id
           WHERE c.variant_id = v.id AND a.status = 'completed') AS answered,
       (SELECT COUNT(DISTINCT a.call_id) FROM campaigns_callattempt a JOIN campaigns_call c ON c.id = a.call_id
           WHERE c.variant_id = v.id AND a.status = 'completed'
             AND a.answered_by NOT LIKE 'machine%%' AND a.answered_by <> 'fax') AS human,
       (SELECT COUNT(DISTINCT a.call_id) FROM campaigns_callattempt a JOIN campaigns_call c ON c.id = a.call_id
           WHERE c.variant_id = v.id AND a.status = 'completed' AND a.listened_to_end
             AND a.answered_by NOT LIKE 'machine%%' AND a.answered_by <> 'fax') AS listened_to_end,
       (SELECT COUNT(*) FROM campaigns_call c WHERE c.variant_id = v.id AND c.state <> 'invalid'
           AND c.outcome = 'opted_out') AS opted_out,
       (SELECT COUNT(*) FROM campaigns_callattempt a JOIN campaigns_call c ON c.id = a.call_id
           WHERE c.variant_id = v.id AND a.status = 'completed' AND a.duration IS NOT NULL) AS timed_attempts,
       (SELECT COALESCE(SUM(a.duration), 0) FROM campaigns_callattempt a JOIN campaigns_call c ON c.id = a.call_id
           WHERE c.variant_id = v.id AND a.status = 'completed') AS talk_seconds
FROM campaigns_variant v WHERE v.campaign_id = %s ORDER BY v.name
"""

# The keys of each call's latest attempt with keys, per variant.
DIGITS_SQL = """
SELECT v.name, a.digits, COUNT(*) FROM campaigns_callattempt a
JOIN campaigns_call c ON c.id = a.call_id JOIN campaigns_variant v ON v.id = c.variant_id
WHERE v.campaign_id = %s AND a.digits <> '' AND a.number = (
    SELECT MAX(b.number) FROM campaigns_callattempt b WHERE b.call_id = a.call_id AND b.digits <> '')
GROUP BY v.name, a.digits
"""

# Attempts and answered attempts per callee-local weekday (Monday = 0) and hour, computed row by row in Python
# from each attempt's own time and zone (the report groups in the database and converts groups).
ATTEMPTS_SQL = """
SELECT a.placed_at, c.timezone, a.status FROM campaigns_callattempt a JOIN campaigns_call c ON c.id = a.call_id
WHERE c.campaign_id = %s AND a.placed_at IS NOT NULL
"""


def variant_counts(campaign_id: int) -> dict[str, dict[str, int]]:
    """Variant name -> counts (plus confirmed/rescheduled from the campaign's keys and digits)."""
    with connection.cursor() as cursor:
        cursor.execute(VARIANT_SQL, [campaign_id])
        names = [col[0] for col in cursor.description]
        result = {row[0]: dict(zip(names[1:], row[1:], strict=True)) for row in cursor.fetchall()}
        cursor.execute(DIGITS_SQL, [campaign_id])
        for name, digits, count in cursor.fetchall():
            result[name].setdefault("digits", {})[digits] = count
        cursor.execute(
            "SELECT confirm_digit, reschedule_digit FROM campaigns_campaign WHERE id = %s", [campaign_id]
        )
        confirm, reschedule = cursor.fetchone()
    for counts in result.values():
        digits = counts.setdefault("digits", {})
        counts["confirmed"] = digits.get(confirm, 0) if confirm else 0
        counts["rescheduled"] = digits.get(reschedule, 0) if reschedule else 0
    return result


def heatmap_counts(campaign_id: int) -> dict[tuple[int, int], tuple[int, int]]:
    """(weekday, hour) -> (attempts, answered), each attempt converted to its callee's local time."""
    from datetime import UTC
    from zoneinfo import ZoneInfo

    cells: dict[tuple[int, int], tuple[int, int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(ATTEMPTS_SQL, [campaign_id])
        for placed_at, zone, status in cursor.fetchall():
            if isinstance(placed_at, str):  # SQLite hands back text
                from datetime import datetime

                placed_at = datetime.fromisoformat(placed_at)
            if placed_at.tzinfo is None:
                placed_at = placed_at.replace(tzinfo=UTC)
            local = placed_at.astimezone(ZoneInfo(zone))
            attempts, answered = cells.get((local.weekday(), local.hour), (0, 0))
            cells[(local.weekday(), local.hour)] = (attempts + 1, answered + (status == "completed"))
    return cells
