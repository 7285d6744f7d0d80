"""{% getting_started_progress as progress %}: (steps done, steps) of the getting-started page, for the admin index."""

from __future__ import annotations

from django import template

from campaigns import getting_started

register = template.Library()


@register.simple_tag
def getting_started_progress() -> tuple[int, int]:
    return getting_started.progress()
