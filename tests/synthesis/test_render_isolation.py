"""One bad text fails only itself (issue 17): the rest of its render batch renders and its calls go on.

The poisoned text is made by the one seam of ours patched here, the normaliser the embedded engine calls
(synthesis.frontend.marks.normalize): it raises for texts holding one contact's order number. Everything
else (the engine, eSpeak NG, the lifecycle, the admin) is real.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns.launch import launch_campaign
from campaigns.models import Call
from synthesis import actions
from synthesis.frontend import marks
from synthesis.models import RenderedAudio
from voices.models import Voice

pytestmark = pytest.mark.django_db

POISON = "SF0000000007"


@pytest.fixture
def poisoned_normaliser(monkeypatch):
    real = marks.normalize

    def normalize(text, hints=None):
        if POISON in text:
            raise IndexError("list index out of range")
        return real(text, hints)

    monkeypatch.setattr(marks, "normalize", normalize)


def _launched(make_campaign, django_capture_on_commit_callbacks, n: int):
    campaign = make_campaign(n, weights=(1, 0), fields=lambda i: {"order_id": f"SF{i:010d}"})
    with django_capture_on_commit_callbacks(execute=False):
        launch_campaign(campaign)
    return campaign


def test_one_poisoned_text_fails_only_its_own_calls(
    make_campaign, django_capture_on_commit_callbacks, poisoned_normaliser
):
    campaign = _launched(make_campaign, django_capture_on_commit_callbacks, 10)
    keys = list(campaign.calls.values_list("audio_id", flat=True))
    assert len(set(keys)) == 10  # one batch, one voice
    summary = actions.render(keys)

    poisoned = campaign.calls.get(contact__fields__order_id=POISON)
    assert summary.failed == [poisoned.audio_id]
    assert sorted(summary.rendered) == sorted(k for k in keys if k != poisoned.audio_id)
    row = RenderedAudio.objects.get(render_key=poisoned.audio_id)
    assert row.state == RenderedAudio.State.FAILED and row.error == "IndexError: list index out of range"
    poisoned.refresh_from_db()
    assert poisoned.state == Call.State.FAILED and "IndexError: list index out of range" in poisoned.error
    others = campaign.calls.exclude(pk=poisoned.pk)
    assert set(others.values_list("state", flat=True)) == {Call.State.READY}
    assert set(RenderedAudio.objects.filter(render_key__in=keys).exclude(pk=row.pk).values_list("state", flat=True)) == {
        RenderedAudio.State.READY
    }


def test_a_batch_without_a_poisoned_text_is_unchanged(make_campaign, django_capture_on_commit_callbacks):
    campaign = _launched(make_campaign, django_capture_on_commit_callbacks, 3)
    keys = list(campaign.calls.values_list("audio_id", flat=True))
    summary = actions.render(keys)
    assert sorted(summary.rendered) == sorted(keys) and summary.failed == []


def test_a_seventeen_digit_amount_renders_without_any_patch(make_campaign, django_capture_on_commit_callbacks):
    campaign = make_campaign(
        2, text="您好{name}，您的余额为{amount}元，积分{points}分。", weights=(1, 0),
        fields=lambda i: {"amount": "100000000000000000", "points": f"1234567890123456{i}"},
    )
    with django_capture_on_commit_callbacks(execute=False):
        launch_campaign(campaign)
    keys = list(campaign.calls.values_list("audio_id", flat=True))
    assert sorted(actions.render(keys).rendered) == sorted(keys)
    assert set(campaign.calls.values_list("state", flat=True)) == {Call.State.READY}


def test_a_voice_that_cannot_render_fails_its_texts_with_the_reason(
    make_campaign, django_capture_on_commit_callbacks, monkeypatch
):
    campaign = _launched(make_campaign, django_capture_on_commit_callbacks, 3)
    keys = list(campaign.calls.values_list("audio_id", flat=True))

    def broken(voice):
        raise KeyError("reference_audio")

    monkeypatch.setattr(actions, "voice_spec", broken)
    summary = actions.render(keys)
    assert sorted(summary.failed) == sorted(keys)
    assert set(RenderedAudio.objects.filter(render_key__in=keys).values_list("error", flat=True)) == {
        "KeyError: 'reference_audio'"
    }
    assert set(campaign.calls.values_list("state", flat=True)) == {Call.State.FAILED}


def test_preview_of_a_poisoned_text_shows_the_reason_not_a_500(admin_client, poisoned_normaliser):
    voice = Voice.objects.create(name="Robot", language="zh", engine="embedded", parameters={"voice": "cmn"})
    url = reverse("admin:voices_voice_preview", args=[voice.pk])
    response = admin_client.post(url, {"text": f"您的订单{POISON}明天送达。"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "<audio" not in page
    assert "The sample could not be rendered: IndexError: list index out of range" in page


def test_preview_of_a_seventeen_digit_amount_plays(admin_client):
    voice = Voice.objects.create(name="Robot", language="zh", engine="embedded", parameters={"voice": "cmn"})
    url = reverse("admin:voices_voice_preview", args=[voice.pk])
    response = admin_client.post(url, {"text": "您的余额为100000000000000000元。"})
    assert response.status_code == 200 and "<audio" in response.content.decode()
