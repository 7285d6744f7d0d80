"""The GPT-SoVITS v2 phone symbol table (732 symbols) and phone -> id lookup.

The table is interface data: a phone id means something to a v2 checkpoint only if it is the index the
official `text/symbols2.py` gives it (RVC-Boss/GPT-SoVITS, commit 48b1a01). It is built here from its
component inventories in the same order the official one is: the sorted union of pad, Mandarin initials,
toned Mandarin finals, Japanese phones, punctuation and ARPAbet; then the two Japanese pitch marks; then
the sorted Korean jamo; then the sorted Cantonese phones. tests/frontend/test_g2p.py checks every
(phone, id) pair of the reference vectors against it.
"""

from __future__ import annotations

from collections.abc import Iterable

PAD = "_"
PUNCTUATION = ("!", "?", "…", ",", ".", "-")
PAUSES = ("SP", "SP2", "SP3", "UNK")

# Mandarin: AA/EE/OO are the zero-initial onsets of a-, e-, o- syllables (opencpop-strict convention).
ZH_INITIALS = tuple("AA EE OO b c ch d f g h j k l m n p q r s sh t w x y z zh".split())
# i0 is the apical i of zi/ci/si, ir that of zhi/chi/shi/ri; E/En are the finals of ye/yan.
ZH_FINALS = tuple(
    "E En a ai an ang ao e ei en eng er i i0 ia ian iang iao ie in ing iong ir iu "
    "o ong ou u ua uai uan uang ui un uo v van ve vn".split()
)
ZH_TONES = "12345"  # 5 = neutral tone

JA_PHONES = tuple(
    "I N U a b by ch cl d dy e f g gy h hy i j k ky m my n ny o p py r ry s sh t ts u v w y z".split()
)
JA_PITCH_MARKS = ("[", "]")

ARPA_VOWELS = tuple("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())
ARPA_CONSONANTS = tuple("B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH".split())
# Stressed vowels 0/1/2, plus the two unstressed spellings the official inventory also carries.
ARPA = tuple(v + s for v in ARPA_VOWELS for s in "012") + ARPA_CONSONANTS + ("ER", "IH")

KO_PHONES = tuple("ㄱㄴㄷㄹㅁㅂㅅㅇㅈㅊㅋㅌㅍㅎㄲㄸㅃㅆㅉㅏㅓㅗㅜㅡㅣㅐㅔ空停")

# Cantonese (jyutping pieces prefixed with Y): these finals take tones 1-6; the initials and a few
# finals also stand alone without a tone.
_YUE_TONED = (
    "a aa aai aak aam aan aang aap aat aau ai ak am an ang ap at au e ei ek eng eoi eon eot g i ik im in "
    "ing ip it iu k m n o oe oek oeng oi ok on ong ot ou p t u ui uk un ung ut yu yun yut"
).split()
_YUE_BARE = "b c d f g gw h j k kw l m n ng p s t w z a aa ai ak au e o oi ok on ou uk".split()
YUE_PHONES = tuple(["Y" + f + t for f in _YUE_TONED for t in "123456"] + ["Y" + f for f in _YUE_BARE])


def _build_table() -> list[str]:
    zh_finals = [f + t for f in ZH_FINALS for t in ZH_TONES]
    core = {PAD, *ZH_INITIALS, *zh_finals, *JA_PHONES, *PUNCTUATION, *PAUSES, *ARPA}
    return sorted(core) + list(JA_PITCH_MARKS) + sorted(KO_PHONES) + sorted(YUE_PHONES)


SYMBOLS: tuple[str, ...] = tuple(_build_table())
SYMBOL_TO_ID: dict[str, int] = {s: i for i, s in enumerate(SYMBOLS)}

assert len(SYMBOLS) == 732 and len(SYMBOL_TO_ID) == 732, len(SYMBOLS)


class UnknownPhoneError(KeyError):
    """A phone that is not in the v2 symbol table (the model has no embedding for it)."""


def phone_ids(phones: Iterable[str]) -> list[int]:
    """Map phones to v2 ids, as the official `cleaned_text_to_sequence(phones, "v2")`."""
    ids = []
    for position, phone in enumerate(phones):
        try:
            ids.append(SYMBOL_TO_ID[phone])
        except KeyError:
            raise UnknownPhoneError(
                f"phone {phone!r} at position {position} is not a GPT-SoVITS v2 symbol"
            ) from None
    return ids
