"""POST /api/v1/tts: a text said in one of Herald's voices, streamed back as it is made, for systems that play it
live (an IVR's prompt, an order system's call-back).

The web process runs no engine: a synthesis worker does (synthesis.tasks.speak), and the audio comes back through
Redis (synthesis.streaming). The answer starts only once the first audio is here, so a failure before it is a
JSON error with its status; after it, a failure cuts the transfer short (no final chunk), which a client can
tell from a complete answer.

It needs the read scope, since it creates nothing (it is in the audit log all the same, being a POST: who spoke
with which voice), and the voices.view_voice permission.
"""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request

from campaigns import api
from campaigns.models import ApiToken
from synthesis.keys import normalise_text
from synthesis.speech import speech_response, start_speech
from synthesis.streaming import SpeechFailed, StreamUnavailable, speech_problem
from voices.models import Voice

MAX_TEXT_CHARS = 1000  # about a minute of speech: a prompt, not a recording session
SAMPLE_RATES = (8000, 16000, 32000)
FORMATS = ("wav", "pcm")
RETRY_AFTER_SECONDS = 5  # a busy or restarting engine, a queue or Redis that is back: worth asking again soon


class SpeechRequestSerializer(serializers.Serializer):
    voice = serializers.IntegerField(min_value=1, help_text="The id of the voice to speak with.")
    text = serializers.CharField(
        help_text=f"What to say, 1 to {MAX_TEXT_CHARS:,} characters (whitespace runs count as one). Chinese texts "
        "are read as scripts are: codes digit by digit, money, dates, reading hints."
    )
    format = serializers.ChoiceField(
        choices=FORMATS,
        default="wav",
        help_text="wav: 16-bit mono PCM WAV whose header gives no length (sizes 0xFFFFFFFF: read to the end); "
        "pcm: the raw samples as RFC 2586 audio/L16, signed 16-bit big-endian (network byte order) mono.",
        error_messages={"invalid_choice": '"{input}" is not a format: use "wav" or "pcm".'},
    )
    sample_rate = serializers.ChoiceField(
        choices=SAMPLE_RATES,
        default=16000,
        help_text="Samples per second: 8000 is what phone lines carry.",
        error_messages={
            "invalid_choice": "{input} is not a sample rate here: use " + ", ".join(map(str, SAMPLE_RATES)) + "."
        },
    )

    def validate_text(self, value: str) -> str:
        text = normalise_text(value)
        if len(text) > MAX_TEXT_CHARS:
            raise serializers.ValidationError(
                f"The text is {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}: "
                "split it and ask for each part."
            )
        return text

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            known = ", ".join(self.fields)
            raise serializers.ValidationError({name: f"Unknown field: the fields are {known}." for name in unknown})
        return data


AUDIO = OpenApiResponse(
    OpenApiTypes.BINARY,
    description="The audio as it is made (chunked): a WAV, or raw PCM. Cut short without a final chunk when the "
    "engine fails after the audio began.",
)
SPEECH_ERRORS = {
    **api.ERRORS,
    409: OpenApiResponse(api.ErrorSerializer, description="The voice cannot speak: no valid consent, or its "
                         "engine or base models are not set up here."),
    502: OpenApiResponse(api.ErrorSerializer, description="The engine failed for this voice or text."),
    503: OpenApiResponse(api.ErrorSerializer, description="The engine is busy or could not start (try again), "
                         "or the queue or Redis cannot be reached."),
    504: OpenApiResponse(api.ErrorSerializer, description="No synthesis worker answered in time."),
}


class SpeechView(api.ApiView):
    http_method_names = ["post"]
    permissions = {"POST": (["voices.view_voice"], "to speak with a voice")}
    scopes = {"POST": ApiToken.Scope.READ}

    @extend_schema(
        request=SpeechRequestSerializer,
        responses={(200, "audio/wav"): AUDIO, (200, "audio/L16"): AUDIO, **SPEECH_ERRORS},
        examples=[
            OpenApiExample(
                "A phone prompt", request_only=True,
                value={"voice": 3, "text": "您好，您的包裹明天上午送达。确认请按1。", "format": "wav", "sample_rate": 8000},
            )
        ],
    )
    def post(self, request: Request) -> StreamingHttpResponse:
        """Say a text in a voice and stream the audio back as it is made: the first sentence comes while the
        rest are still being said. WAV (default) or raw PCM, 8, 16 (default) or 32 kHz."""
        serializer = SpeechRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        voice = Voice.objects.select_related("fill_voice").filter(pk=data["voice"]).first()
        if voice is None:
            raise api.ApiError(404, f"No voice with id {data['voice']}.")
        text, audio_format, rate = data["text"], data["format"], data["sample_rate"]
        self.audit_ids = [voice.pk]
        self.audit_summary = f"speech: {len(text)} characters, {audio_format} at {rate} Hz"
        problem = speech_problem(voice)
        if problem:
            raise api.ApiError(409, f"Voice {voice.pk} ({voice.name}) cannot speak: {problem}.")
        try:
            stream, first = start_speech(voice.pk, text, rate)
        except StreamUnavailable as exc:
            raise _unavailable(str(exc)) from None
        except SpeechFailed as exc:
            if exc.status == 503:
                raise _unavailable(exc.message) from None
            raise api.ApiError(exc.status, exc.message) from None
        return speech_response(stream, first, rate, audio_format)


def _unavailable(message: str) -> api.ApiError:
    return api.ApiError(503, message, retry_after=RETRY_AFTER_SECONDS)

