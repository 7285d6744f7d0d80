"""Rules for automated calls: the disclosure in a cloned voice, consent records, the generic clip when a
personalised one fails, and provenance written into every rendered file."""

from __future__ import annotations

import pytest
from django.utils import timezone

from campaigns.launch import LaunchError, check_compliance
from campaigns.lifecycle import audio_failed
from campaigns.models import Call, Campaign, Variant
from campaigns.planning import plan_calls
from synthesis.actions import render
from synthesis.audio import read_info, read_mulaw_wav
from synthesis.models import RenderedAudio
from voices.models import Voice

DISCLOSURE = "这是一通智能语音通知。"


def _clone_variant_a(campaign: Campaign) -> Voice:
    cloned = Voice.objects.create(name="agent-li", engine=Voice.Engine.GPT_SOVITS)
    Variant.objects.filter(campaign=campaign, name="A").update(voice=cloned)
    return cloned


@pytest.mark.django_db
def test_a_cloned_voice_says_the_disclosure_first_and_a_synthetic_one_need_not(make_campaign):
    campaign = make_campaign(20)
    _clone_variant_a(campaign)
    plan_calls(campaign)
    texts = dict(Call.objects.filter(campaign=campaign).values_list("variant__name", "text").distinct())
    calls = Call.objects.filter(campaign=campaign)
    cloned = calls.filter(variant__name="A")
    assert cloned.exists() and calls.filter(variant__name="B").exists()
    assert all(text.startswith(DISCLOSURE) for text in cloned.values_list("text", flat=True)), texts
    assert not any(text.startswith(DISCLOSURE) for text in calls.filter(variant__name="B").values_list("text", flat=True))
    # The disclosure is part of what is rendered, so it is in the render key's text too.
    assert all(
        audio.text.startswith(DISCLOSURE)
        for audio in RenderedAudio.objects.filter(render_key__in=cloned.values("audio_id"))
    )


@pytest.mark.django_db
def test_the_disclosure_cannot_be_removed_for_a_cloned_voice(make_campaign):
    campaign = make_campaign(2, disclosure_text="   ")
    check_compliance(campaign)  # synthetic voices only: nothing to disclose
    _clone_variant_a(campaign)
    with pytest.raises(LaunchError, match="cloned voice: the disclosure sentence .* is required"):
        check_compliance(campaign)
    campaign.disclosure_text = "您好，这是顺达快递的自动语音通知。"  # the campaign's own wording is fine
    check_compliance(campaign)


@pytest.mark.django_db
def test_a_campaign_that_requires_consent_calls_only_contacts_with_a_record(make_campaign):
    campaign = make_campaign(6, require_consent=True)
    contacts = list(campaign.contact_list.contacts.order_by("pk"))
    for contact in contacts[:2]:
        contact.consent_basis, contact.consent_at, contact.consent_source = "contract", timezone.now(), "checkout"
        contact.save()
    result = plan_calls(campaign)
    assert result.no_consent == 4
    skipped = Call.objects.filter(campaign=campaign, outcome=Call.Outcome.NO_CONSENT)
    assert set(skipped.values_list("contact_id", flat=True)) == {c.pk for c in contacts[2:]}
    assert set(skipped.values_list("state", flat=True)) == {Call.State.DONE}
    assert "no consent record" in skipped.first().error
    assert Call.objects.filter(campaign=campaign, state=Call.State.RENDERING).count() == 2


@pytest.mark.django_db
def test_a_failed_render_falls_back_to_the_generic_clip(make_campaign):
    campaign = make_campaign(4, fallback_text="您好，您的快递明天送达，详情请查看短信。")
    plan_calls(campaign)
    campaign.refresh_from_db()
    fallback = RenderedAudio.objects.get(render_key=campaign.fallback_audio_id)
    assert fallback.state == RenderedAudio.State.PENDING and "详情请查看短信" in fallback.text
    victim = Call.objects.filter(campaign=campaign).first()

    assert audio_failed(victim.audio_id, "engine exploded") == 1
    victim.refresh_from_db()
    assert (victim.audio_id, victim.used_fallback, victim.state) == (fallback.render_key, True, Call.State.RENDERING)
    assert "engine exploded" in victim.error and "generic clip" in victim.error
    # When the generic clip is ready, the call is ready like any other.
    render([fallback.render_key])
    victim.refresh_from_db()
    assert victim.state == Call.State.READY


@pytest.mark.django_db
def test_without_a_generic_clip_or_when_it_fails_too_the_call_is_reported_failed(make_campaign):
    plain = make_campaign(2)
    plan_calls(plain)
    call = Call.objects.filter(campaign=plain).first()
    audio_failed(call.audio_id, "engine exploded")
    call.refresh_from_db()
    assert (call.state, call.outcome, call.used_fallback) == (Call.State.FAILED, Call.Outcome.FAILED, False)

    with_fallback = make_campaign(2, fallback_text="您好，您的快递明天送达。")
    plan_calls(with_fallback)
    with_fallback.refresh_from_db()
    call = Call.objects.filter(campaign=with_fallback).first()
    audio_failed(call.audio_id, "first failure")
    audio_failed(with_fallback.fallback_audio_id, "the generic clip failed too")
    call.refresh_from_db()
    assert (call.state, call.used_fallback) == (Call.State.FAILED, True)
    assert "generic clip failed too" in call.error


@pytest.mark.django_db
def test_generic_clip_text_cannot_have_variables(make_campaign):
    campaign = make_campaign(1, fallback_text="您好{name}")
    with pytest.raises(LaunchError, match="cannot contain"):
        check_compliance(campaign)


@pytest.mark.django_db
def test_rendered_files_carry_their_provenance(make_campaign, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    campaign = make_campaign(1)
    plan_calls(campaign)
    call = Call.objects.select_related("variant__voice").get(campaign=campaign)
    render([call.audio_id])
    audio = RenderedAudio.objects.get(render_key=call.audio_id)
    assert audio.state == RenderedAudio.State.READY, audio.error
    for name in (audio.telephony_file, audio.original_file):
        info = read_info(tmp_path / name)
        assert info["ISFT"].startswith("Herald embedded")
        assert f"voice={call.variant.voice.name} (#{call.variant.voice_id})" in info["ICMT"]
        assert f"campaign={campaign.name} (#{campaign.pk})" in info["ICMT"]
        assert f"render_key={audio.render_key}" in info["ICMT"]
        assert info["IGNR"] == "synthetic speech"
    payload, rate = read_mulaw_wav(tmp_path / audio.telephony_file)  # the metadata does not disturb the audio
    assert rate == 8000 and abs(len(payload) - audio.duration * 8000) <= 8  # duration is stored to the ms


@pytest.mark.django_db
def test_a_consent_record_needs_basis_and_time_together(make_campaign):
    from campaigns.forms import ContactForm

    contact_list = make_campaign(1).contact_list
    base = {"contact_list": contact_list.pk, "phone": "+8613800138000", "name": "李", "timezone": "Asia/Shanghai",
            "fields": "{}"}
    form = ContactForm(data={**base, "consent_basis": "consent"})
    assert not form.is_valid() and "needs its time" in str(form.errors["consent_at"])
    form = ContactForm(data={**base, "consent_at": "2026-11-01 10:00", "consent_source": "web"})
    assert not form.is_valid() and "basis" in str(form.errors["consent_basis"])
    form = ContactForm(data={**base, "consent_basis": "contract", "consent_at": "2026-11-01 10:00",
                             "consent_source": "checkout page"})
    assert form.is_valid(), form.errors
    contact = form.save()
    assert (contact.consent_basis, contact.consent_source) == ("contract", "checkout page")
