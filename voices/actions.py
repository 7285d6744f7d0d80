"""Voice verbs: revoking a speaker's consent stops every campaign that speaks with that voice."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from voices.models import SpeakerConsent, Voice

log = logging.getLogger(__name__)


def revoke_consent(consent: SpeakerConsent) -> list[int]:
    """Revoke one consent record; campaigns whose voice is left without consent are paused. Returns their ids."""
    from campaigns.models import Campaign

    with transaction.atomic():
        updated = SpeakerConsent.objects.filter(pk=consent.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if not updated:
            return []
        voice = Voice.objects.get(pk=consent.voice_id)
        if voice.is_usable():
            return []  # another valid consent still covers this voice
        active = Campaign.objects.filter(
            variants__voice=voice, status__in=[Campaign.Status.RUNNING, Campaign.Status.SCHEDULED]
        ).distinct()
        paused = list(active.values_list("pk", flat=True))
        Campaign.objects.filter(pk__in=paused).update(status=Campaign.Status.PAUSED)
    if paused:
        log.warning("consent for voice %s revoked: paused campaigns %s", voice.pk, paused)
    return paused
