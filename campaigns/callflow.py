"""A call flow, walked one key at a time: what to play next, where to wait for a key, and how the call ends.

The same walk runs in two places: the Twilio gather view answers each key with the next node's TwiML, and the
SIP user agent runs it on the worker with the clips it already has. Neither decides anything itself.

A flow is a tree of menus. The root menu is the message; each key of a menu leads to a node:

- ``confirm``: its clip (a thank-you), then the call ends: *confirmed*.
- ``reschedule``: its clip is a submenu prompt ("明天上午请按1，明天下午请按2"); its keys are ``slot`` nodes.
- ``slot``: its clip repeats the chosen slot, then the call ends: *rescheduled* (the slot is the detail).
- ``opt_out``: the number goes on the do-not-call list at once, its clip confirms it, the call ends.
- ``transfer``: its clip announces the transfer, then the call goes to a person (Twilio ``<Dial>``, SIP
  REFER); where the trunk refuses, its fallback clip says the number to call.
- ``repeat``: the menu it belongs to is offered again, from its prompt.

A key no node takes is *invalid* (said, then the menu again); silence is *no input* (said, then the menu
again). A menu is offered at most ``max_prompts`` times, repeats included; after that the goodbye clip ends
the call (*no input*). Clips are named by :func:`clip_names`: the node paths, and ``message``, ``menu``, ``invalid``,
``no_input``, ``goodbye`` and ``<path>:fallback``.

Pure Python: no Django, but for the problems `check` names, which staff read in the admin: they come in the
staff member's language where Django is set up (herald.translation), as written here otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from herald.translation import gettext

__all__ = [
    "ACTIONS",
    "FINAL_ACTIONS",
    "MAX_DEPTH",
    "Flow",
    "FlowError",
    "Node",
    "Step",
    "build",
    "clip_names",
    "press",
    "start",
]

CONFIRM, RESCHEDULE, SLOT, OPT_OUT, TRANSFER, REPEAT = "confirm", "reschedule", "slot", "opt_out", "transfer", "repeat"
ACTIONS = (CONFIRM, RESCHEDULE, SLOT, OPT_OUT, TRANSFER, REPEAT)
# How an attempt that reached the menu ended (CallAttempt.action): the node actions that end a call, and the
# two ways a call ends without one.
CONFIRMED, RESCHEDULED, OPTED_OUT, TRANSFERRED = "confirmed", "rescheduled", "opted_out", "transferred"
TRANSFER_REFUSED, NO_INPUT, HUNG_UP = "transfer_refused", "no_input", "hung_up"
FINAL_ACTIONS = (CONFIRMED, RESCHEDULED, OPTED_OUT, TRANSFERRED, TRANSFER_REFUSED, NO_INPUT, HUNG_UP)
_ENDS = {CONFIRM: CONFIRMED, SLOT: RESCHEDULED, OPT_OUT: OPTED_OUT, TRANSFER: TRANSFERRED}
KEYS = "0123456789*"  # '#' ends a key wait (as in Twilio's <Gather>); it is never a menu key
ROOT = ""  # the root menu's path: the message
MAX_DEPTH = 2  # the message's menu and one submenu (reschedule slots)
MAX_KEYS = 20  # a call's keys as recorded (CallAttempt.digits)


class FlowError(ValueError):
    """A flow that cannot run; the message names each node and what is wrong with it (`problems`, one each)."""

    def __init__(self, *problems: str) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Node:
    path: str  # "" for the root; a key path like "2" or "2.1"
    action: str  # one of ACTIONS, or "menu" for the root
    detail: str = ""  # a slot as said (recorded as the rescheduled slot), a transfer's target
    children: Mapping[str, Node] = field(default_factory=dict)

    @property
    def is_menu(self) -> bool:
        return self.path == ROOT or self.action == RESCHEDULE


@dataclass(frozen=True)
class Flow:
    root: Node
    max_prompts: int = 3
    has_menu_prompt: bool = False  # a "menu" clip replaces the message when the root menu is offered again
    transfer_fallback: frozenset[str] = frozenset()  # transfer paths with a fallback clip

    def node(self, path: str) -> Node:
        node = self.root
        if path == ROOT:
            return node
        for key in path.split("."):
            child = node.children.get(key)
            if child is None:
                raise FlowError(f"no node at {path!r}")
            node = child
        return node


@dataclass(frozen=True)
class Step:
    """What the call does next: play these clips, then wait for a key in `gather` (a menu path), or end.

    `action` is set when this step ends the call (one of FINAL_ACTIONS), with `detail` (the slot chosen, the
    menu the callee stopped answering in). `transfer_to`: connect the callee there after the clips.
    `opt_out`: put the number on the do-not-call list now, before the confirmation plays.
    """

    play: tuple[str, ...]
    gather: str | None = None
    prompts: int = 0  # times the `gather` menu has been offered, this one included
    node: str = ROOT  # the node this step is in (recorded in the attempt's path)
    action: str = ""
    detail: str = ""
    transfer_to: str = ""
    opt_out: bool = False


def build(root_keys: Iterable[tuple[str, str, str, Iterable[tuple[str, str, str]]]], *, max_prompts: int = 3,
          has_menu_prompt: bool = False, transfer_fallback: Iterable[str] = ()) -> Flow:
    """A Flow from (key, action, detail, children) rows; children are (key, action, detail), the slots of a
    reschedule node. Raises FlowError naming every problem (see `check` for the rules)."""
    children: dict[str, Node] = {}
    for key, action, detail, subkeys in root_keys:
        path = key
        sub = {k: Node(path=f"{path}.{k}", action=a, detail=d) for k, a, d in subkeys}
        children[key] = Node(path=path, action=action, detail=detail, children=sub)
    flow = Flow(
        root=Node(path=ROOT, action="menu", children=children),
        max_prompts=max_prompts,
        has_menu_prompt=has_menu_prompt,
        transfer_fallback=frozenset(transfer_fallback),
    )
    problems = check(flow)
    if problems:
        raise FlowError(*problems)
    return flow


def check(flow: Flow) -> list[str]:
    """Every problem that would leave a callee stuck: keys that lead nowhere, dead ends, too deep a menu."""
    problems: list[str] = []
    if not 1 <= flow.max_prompts <= 5:
        problems.append(gettext("a menu may be offered 1 to 5 times, not %(n)s") % {"n": flow.max_prompts})
    if not flow.root.children:
        problems.append(gettext("the message's menu has no keys: add at least one (e.g. 1 to confirm)"))

    def walk(node: Node, depth: int) -> None:
        where = gettext("key %(key)s") % {"key": node.path} if node.path else gettext("the message's menu")
        for key, child in node.children.items():
            at = {"key": child.path, "action": child.action}
            if key not in KEYS or len(key) != 1:
                problems.append(
                    gettext("%(where)s: %(key)r is not a key callees can press (0-9 or *)") % {"where": where, "key": key}
                )
            if child.action not in ACTIONS:
                problems.append(gettext("key %(key)s: unknown action %(action)r") % at)
            if child.action == SLOT and node.action != RESCHEDULE:
                problems.append(gettext("key %(key)s: a slot belongs under a reschedule key") % at)
            if node.action == RESCHEDULE and child.action not in (SLOT, REPEAT):
                problems.append(gettext("key %(key)s: a reschedule menu offers slots (or repeat), not %(action)s") % at)
            if child.action == RESCHEDULE:
                if depth + 1 >= MAX_DEPTH:
                    problems.append(
                        gettext("key %(key)s: menus may be %(depth)s deep at most") % {**at, "depth": MAX_DEPTH}
                    )
                elif not any(c.action == SLOT for c in child.children.values()):
                    problems.append(gettext("key %(key)s: a reschedule key needs at least one slot under it") % at)
            elif child.children:
                problems.append(
                    gettext("key %(key)s: only a reschedule key has keys under it (%(action)s ends there)") % at
                )
            if child.action == TRANSFER and not child.detail:
                problems.append(gettext("key %(key)s: a transfer needs a number or SIP address to transfer to") % at)
            walk(child, depth + 1)

    walk(flow.root, 0)
    return problems


def clip_names(flow: Flow) -> list[str]:
    """Every clip a call on this flow may play (the renders a call waits for before it may be dialled)."""
    names = ["message", "invalid", "no_input", "goodbye"]
    if flow.has_menu_prompt:
        names.append("menu")

    def walk(node: Node) -> None:
        for child in node.children.values():
            if child.action != REPEAT:
                names.append(child.path)
            if child.path in flow.transfer_fallback:
                names.append(f"{child.path}:fallback")
            walk(child)

    walk(flow.root)
    return names


def start(flow: Flow) -> Step:
    """The call was answered: the message, then a key in the root menu."""
    return Step(play=("message",), gather=ROOT, prompts=1, node=ROOT)


def _prompt_of(flow: Flow, menu: Node) -> str:
    if menu.path != ROOT:
        return menu.path
    return "menu" if flow.has_menu_prompt else "message"


def _offer_again(flow: Flow, menu: Node, prompts: int, said: str) -> Step:
    """`said` (invalid or no input), then the menu again; after the last offer, goodbye."""
    if prompts >= flow.max_prompts:
        return Step(play=(said, "goodbye"), node=menu.path, action=NO_INPUT, detail=menu.path or "message")
    return Step(play=(said, _prompt_of(flow, menu)), gather=menu.path, prompts=prompts + 1, node=menu.path)


def press(flow: Flow, menu_path: str, prompts: int, key: str | None) -> Step:
    """The callee pressed `key` (None or "": nothing before the wait ended) in the menu at `menu_path`,
    offered `prompts` times so far. Raises FlowError for a path that is not a menu of this flow."""
    menu = flow.node(menu_path)
    if not menu.is_menu:
        raise FlowError(f"{menu_path!r} is not a menu")
    key = (key or "")[:1]
    if not key:
        return _offer_again(flow, menu, prompts, "no_input")
    child = menu.children.get(key)
    if child is None:
        return _offer_again(flow, menu, prompts, "invalid")
    if child.action == REPEAT:
        # An offer like any other: a callee who only ever presses repeat hears the goodbye in the end.
        if prompts >= flow.max_prompts:
            return Step(play=("goodbye",), node=child.path, action=NO_INPUT, detail=menu.path or "message")
        return Step(play=(_prompt_of(flow, menu),), gather=menu.path, prompts=prompts + 1, node=child.path)
    if child.action == RESCHEDULE:
        return Step(play=(child.path,), gather=child.path, prompts=1, node=child.path)
    final = _ENDS[child.action]
    detail = child.detail if child.action == SLOT else ""
    return Step(
        play=(child.path,),
        node=child.path,
        action=final,
        detail=detail,
        transfer_to=child.detail if child.action == TRANSFER else "",
        opt_out=child.action == OPT_OUT,
    )


def transfer_refused(flow: Flow, path: str) -> Step:
    """The carrier would not transfer the call: the fallback clip (the number to call), then the end."""
    play = (f"{path}:fallback",) if path in flow.transfer_fallback else ("goodbye",)
    return Step(play=play, node=path, action=TRANSFER_REFUSED)


def record(path: list[str], step: Step) -> list[str]:
    """The attempt's path ("message" first) with this step's node added; a menu offered again is recorded again."""
    return [*(path or ["message"]), step.node or "message"]
