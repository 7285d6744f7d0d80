"""A call's flow as the carriers run it: the walk (campaigns.callflow), the call's clips by name, and the signed
node tokens the Twilio gather action carries."""

from __future__ import annotations

from dataclasses import dataclass

from django.core import signing

from campaigns import callflow
from campaigns.models import Call, CallClip, VariantClip

_SALT = "herald.telephony.flow-node"


@dataclass(frozen=True)
class FlowRun:
    flow: callflow.Flow
    clips: dict[str, str]  # clip name -> render key ("message" is the call's own clip)
    said: dict[str, str]  # slot path -> the slot as said to this callee (what a reschedule records)
    input_timeout: int


def flow_run(call: Call) -> FlowRun | None:
    """The call's flow with its clips, or None for a campaign without one (the call ends after the message)."""
    flow = call.campaign.flow
    if flow is None:
        return None
    clips = dict(VariantClip.objects.filter(variant_id=call.variant_id).values_list("name", "audio_id"))
    said: dict[str, str] = {}
    for name, key, slot in CallClip.objects.filter(call_id=call.pk).values_list("name", "audio_id", "said"):
        clips[name] = key
        if slot:
            said[name] = slot
    clips["message"] = call.audio_id
    return FlowRun(flow=flow.build(), clips=clips, said=said, input_timeout=flow.input_timeout)


def node_token(attempt_id: int, menu: str, prompts: int) -> str:
    """Where a key wait is in the flow, signed for one attempt: the gather action's URL carries it back."""
    return signing.Signer(salt=_SALT).sign(f"{attempt_id}:{menu}:{prompts}")


def read_node_token(attempt_id: int, token: str) -> tuple[str, int] | None:
    """(menu path, offers so far) from a token this server signed for this attempt; None for anything else."""
    try:
        value = signing.Signer(salt=_SALT).unsign(token)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    owner, _, rest = value.partition(":")
    menu, _, prompts = rest.rpartition(":")
    if owner != str(attempt_id) or not prompts.isdigit():
        return None
    return menu, int(prompts)
