"""Form fields for a campaign's calling rules, made for people rather than JSON (issue 21, "forms for people").

Each field shows the stored value as a person would set it (weekday checkboxes, time pickers, a list of dates,
minutes per outcome) and gives back exactly what the model stores ("01234", {"5": ["10:00", "18:00"]},
["2026-10-01"], {"busy": 10, "machine": None}), so planning, the API and launch read the same values as before.
Every error names the day, line or outcome that is wrong.
"""

from __future__ import annotations

import re
from datetime import date, time
from typing import Any

from django import forms
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns import phones
from campaigns.policy import MAX_RETRY_MINUTES, RETRY_OUTCOMES

WEEKDAYS = tuple(gettext_lazy(day) for day in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"))
OUTCOME_LABELS = {
    "busy": gettext_lazy("Busy"),
    "no_answer": gettext_lazy("No answer"),
    "failed": gettext_lazy("Failed (network or carrier)"),
    "machine": gettext_lazy("Answering machine"),
    "powered_off": gettext_lazy("Phone switched off (carrier announcement)"),
    "unreachable": gettext_lazy("Out of reach (carrier announcement)"),
    "suspended": gettext_lazy("Number suspended (carrier announcement)"),
}
MAX_HOLIDAYS = 366


class TimePicker(forms.TimeInput):
    """The browser's own time picker (HH:MM), without the admin's clock widget and its server-time warning:
    campaign hours are the callee's local time, not the viewer's or the server's."""

    input_type = "time"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs, format="%H:%M")


class WeekdaysField(forms.MultipleChoiceField):
    """Days to call as checkboxes; stored as the model's digits, Monday=0 … Sunday=6 ("01234")."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("max_length", None)  # the model field's; the value is at most 7 digits by construction
        kwargs.pop("empty_value", None)
        super().__init__(choices=[(str(i), day) for i, day in enumerate(WEEKDAYS)], **kwargs)
        self.error_messages["required"] = gettext_lazy("Tick at least one day to call on.")

    def prepare_value(self, value: Any) -> Any:
        return list(value) if isinstance(value, str) else value

    def clean(self, value: Any) -> str:
        return "".join(sorted(super().clean(value)))

    def has_changed(self, initial: Any, data: Any) -> bool:
        return "".join(sorted(initial or "")) != "".join(sorted(data or ""))


class _ComparedCleaned:
    """has_changed by what would be stored: a posted form equal to the stored value has not changed, however it
    was spelled (times as 9:30 or 09:30, dates in another order); one that does not clean has."""

    def stored(self, initial: Any) -> Any:
        return initial or {}

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return self.clean(data) != self.stored(initial)  # type: ignore[attr-defined]
        except forms.ValidationError:
            return True


class _TableWidget(forms.MultiWidget):
    """A MultiWidget laid out as a table of labelled rows, `per_row` inputs each."""

    template_name = "campaigns/widgets/rule_table.html"
    per_row = 2
    headings: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        parts = context["widget"]["subwidgets"]
        context["widget"]["rows"] = [
            (label, parts[i * self.per_row : (i + 1) * self.per_row]) for i, label in enumerate(self.labels)
        ]
        context["widget"]["headings"] = self.headings
        return context


class WeekdayHoursWidget(_TableWidget):
    headings = (gettext_lazy("Day"), gettext_lazy("From"), gettext_lazy("To"))
    labels = WEEKDAYS

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__([TimePicker() for _ in range(2 * len(WEEKDAYS))], attrs)

    def decompress(self, value: Any) -> list[Any]:
        hours = value if isinstance(value, dict) else {}
        parts: list[Any] = []
        for day in range(len(WEEKDAYS)):
            pair = hours.get(str(day))
            parts.extend(pair if isinstance(pair, list | tuple) and len(pair) == 2 else (None, None))
        return parts


class WeekdayHoursField(_ComparedCleaned, forms.MultiValueField):
    """Other hours on some weekdays: both times or neither per day; stored as {"5": ["10:00", "18:00"]}."""

    widget = WeekdayHoursWidget

    def __init__(self, **kwargs: Any) -> None:
        for unused in ("encoder", "decoder", "max_length", "empty_value"):
            kwargs.pop(unused, None)
        fields = [
            forms.TimeField(required=False, error_messages={"invalid": format_lazy(message, day=day)})
            for day in WEEKDAYS
            for message in (gettext_lazy("{day} from: enter a time like 09:30"), gettext_lazy("{day} to: enter a time like 09:30"))
        ]
        super().__init__(fields, require_all_fields=False, required=False, **kwargs)

    def compress(self, data_list: list[time | None]) -> dict[str, list[str]]:
        hours: dict[str, list[str]] = {}
        errors = []
        for day, name in enumerate(WEEKDAYS):
            start, end = (data_list[2 * day : 2 * day + 2] + [None, None])[:2] if data_list else (None, None)
            if start is None and end is None:
                continue
            if start is None or end is None:
                errors.append(_("%(day)s: give both times, or neither to use the campaign's hours") % {"day": name})
            elif end <= start:
                errors.append(_("%(day)s: %(end)s is not after %(start)s") % {"day": name, "end": f"{end:%H:%M}", "start": f"{start:%H:%M}"})
            else:
                hours[str(day)] = [f"{start:%H:%M}", f"{end:%H:%M}"]
        if errors:
            raise forms.ValidationError(errors)
        return hours



class HolidaysField(_ComparedCleaned, forms.CharField):
    """Callee-local dates with no calls, one per line (commas and spaces also separate); stored as a sorted list
    of ISO dates."""

    def __init__(self, **kwargs: Any) -> None:
        for unused in ("encoder", "decoder", "max_length", "empty_value"):
            kwargs.pop(unused, None)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 4, "cols": 20, "placeholder": "2026-10-01"}))
        super().__init__(required=False, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(str(day) for day in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value)
        days: set[date] = set()
        errors = []
        for number, line in enumerate(str(text).splitlines(), start=1):
            for item in re.split(r"[,\s]+", line.strip()):
                if not item:
                    continue
                try:
                    days.add(date.fromisoformat(item))
                except ValueError:
                    errors.append(_("line %(line)d: %(item)r is not a date like 2026-10-01") % {"line": number, "item": item})
        if errors:
            raise forms.ValidationError(errors)
        if len(days) > MAX_HOLIDAYS:
            raise forms.ValidationError(_("%(n)d dates; at most %(max)d") % {"n": len(days), "max": MAX_HOLIDAYS})
        return [day.isoformat() for day in sorted(days)]

    def stored(self, initial: Any) -> Any:
        return sorted(initial or [])


class RetryPolicyWidget(_TableWidget):
    headings = (gettext_lazy("Outcome"), gettext_lazy("Minutes"), gettext_lazy("Never retry"))
    labels = tuple(OUTCOME_LABELS[o] for o in RETRY_OUTCOMES)

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        minutes = {"min": 0, "max": MAX_RETRY_MINUTES, "step": "any", "style": "width: 7em"}
        parts: list[forms.Widget] = []
        for _outcome in RETRY_OUTCOMES:
            parts += [forms.NumberInput(attrs=minutes), forms.CheckboxInput()]
        super().__init__(parts, attrs)

    def decompress(self, value: Any) -> list[Any]:
        policy = value if isinstance(value, dict) else {}
        parts: list[Any] = []
        for outcome in RETRY_OUTCOMES:
            if outcome in policy and policy[outcome] is None:
                parts += [None, True]
            else:
                parts += [policy.get(outcome), False]
        return parts


class RetryPolicyField(_ComparedCleaned, forms.MultiValueField):
    """Minutes before another attempt, per outcome: blank uses the campaign's retry delay (answering machines:
    never), "never retry" stops there; stored as {"busy": 10, "machine": None}."""

    widget = RetryPolicyWidget

    def __init__(self, **kwargs: Any) -> None:
        for unused in ("encoder", "decoder", "max_length", "empty_value"):
            kwargs.pop(unused, None)
        fields: list[forms.Field] = []
        for outcome in RETRY_OUTCOMES:
            label = OUTCOME_LABELS[outcome]
            minutes = format_lazy(gettext_lazy("{label}: minutes must be a number from 0 to {max}"), label=label,
                                  max=f"{MAX_RETRY_MINUTES:,}")
            fields += [
                forms.FloatField(
                    required=False,
                    min_value=0,
                    max_value=MAX_RETRY_MINUTES,
                    error_messages={"invalid": minutes, "min_value": minutes, "max_value": minutes},
                ),
                forms.BooleanField(required=False),
            ]
        super().__init__(fields, require_all_fields=False, required=False, **kwargs)

    def compress(self, data_list: list[Any]) -> dict[str, float | int | None]:
        policy: dict[str, float | int | None] = {}
        errors = []
        for i, outcome in enumerate(RETRY_OUTCOMES):
            minutes, never = (data_list[2 * i : 2 * i + 2] + [None, False])[:2] if data_list else (None, False)
            if never and minutes is not None:
                errors.append(_("%(outcome)s: give minutes or tick never retry, not both") % {"outcome": OUTCOME_LABELS[outcome]})
            elif never:
                policy[outcome] = None
            elif minutes is not None:
                policy[outcome] = int(minutes) if float(minutes).is_integer() else minutes
        if errors:
            raise forms.ValidationError(errors)
        return policy



class CallerIdInput(forms.TextInput):
    """The caller id typed or picked from every account's numbers (a datalist labelled with the account)."""

    template_name = "campaigns/widgets/caller_id.html"

    def __init__(self, numbers: list[tuple[str, str]], attrs: dict[str, Any] | None = None) -> None:
        super().__init__({"list": "herald-caller-ids", "autocomplete": "off", **(attrs or {})})
        self.numbers = numbers  # (number, account name)

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["widget"]["numbers"] = self.numbers
        return context


class CallerIdPoolField(forms.Field):
    """More caller ids, one per line, in any usual spelling; each stored in E.164 (every bad line named)."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 24, "placeholder": "+862161234568"})

    def prepare_value(self, value: Any) -> str:
        return "\n".join(value) if isinstance(value, list) else (value or "")

    def to_python(self, value: Any) -> list[str]:
        numbers, errors = [], []
        for n, line in enumerate(str(value or "").splitlines(), start=1):
            if not line.strip():
                continue
            number, why = phones.parse_phone(line.strip(), None)
            if number is None:
                errors.append(_("line %(n)s: %(value)r is not a number in E.164 form (%(why)s)") % {
                    "n": n, "value": line.strip(), "why": why
                })
            else:
                numbers.append(phones.e164(number))
        if errors:
            raise forms.ValidationError(errors)
        return list(dict.fromkeys(numbers))
