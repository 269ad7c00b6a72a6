"""The delete rules, one copy for the engine and the trainer: what a delete may remove, what it bans, when it ends a reply.

Plain Python over token ids (no llama.cpp, no torch), so that the trainer's rollouts follow the same
rules as the engine's replies by calling the same code.
"""
from dataclasses import dataclass, field

from .. import defaults

# What a delete token does, by judge_delete.
DELETED = "deleted"  # the last token is taken back
REFUSED = "refused"  # nothing to delete (or deletes are off): the delete is banned at this position
OVER_BUDGET = "over_budget"  # the reply's delete budget is spent: the reply ends


@dataclass(frozen=True)
class DeleteRules:
    """How deletes work in one reply."""

    token_id: int | None  # the delete token; None: the model has none
    marker: str | None = None  # or a plain-text marker, such as "[DELETE]", that means delete
    # False bans the delete token, or rolls a written marker back and bans its first token there
    # (--no-delete, the A/B baseline: plain generation that never writes the marker).
    enabled: bool = True
    window: int = defaults.REWIND_WINDOW  # how many of the newest tokens can be deleted
    max_deletes: int = defaults.MAX_DELETES  # deletes per reply; one more ends the reply
    max_per_position: int = defaults.MAX_DELETES_PER_POSITION  # then that position's token stays
    # Ban a deleted token at its position. A greedy retry would repeat it, so greedy decoding needs
    # this; a sampled retry is a fresh draw, and a ban would turn every wrong delete into a wrong answer.
    ban_deleted: bool = False

    @property
    def can_delete(self) -> bool:
        return self.enabled and (self.token_id is not None or self.marker is not None)

    @property
    def takes_back(self) -> bool:
        """Whether a reply may roll tokens back: to delete, or, with deletes off, to remove a marker."""
        return self.can_delete or self.marker is not None


@dataclass
class PositionRecord:
    """What is known at one position of the reply, valid only under the prefix it was made under."""

    bans: set[int] = field(default_factory=set)  # tokens that may not be sampled here
    deletes: int = 0  # tokens deleted at this position so far
    delete_starts: set[int] = field(default_factory=set)  # tokens that began a delete right after it


class ReplyEdits:
    """A reply's tokens and what the rules know at each position: its bans and its deletes."""

    def __init__(self, window: int) -> None:
        self.tokens: list[int] = []
        # Only positions that saw a delete have a record: most never do, and the loop stays lean.
        self._positions: dict[int, PositionRecord] = {}
        self.window = window
        self.final = 0  # tokens[:final] are older than the window and can no longer be deleted

    def position(self, index: int) -> PositionRecord:
        """What is known at `index` (len(tokens) is the position being sampled)."""
        position = self._positions.get(index)
        if position is None:
            position = self._positions[index] = PositionRecord()
        return position

    def push(self, token: int) -> None:
        self.tokens.append(token)
        self.final = max(self.final, len(self.tokens) - self.window)

    def pop(self) -> int:
        # The next position's record was made under a prefix that is now gone.
        self._positions.pop(len(self.tokens), None)
        return self.tokens.pop()

    def record_delete(self, token: int, start: int, ban: bool) -> None:
        """`token` was deleted from the end, by a delete that began with `start`."""
        position = self.position(len(self.tokens))
        if ban:
            position.bans.add(token)
        position.deletes += 1
        position.delete_starts.add(start)

    def refuse(self, start: int) -> None:
        """A delete that began with `start` was refused here: it is banned at this position."""
        self.position(len(self.tokens)).bans.add(start)

    def deletable(self) -> int:
        return len(self.tokens) - self.final

    def bans(self, rules: DeleteRules) -> set[int]:
        index = len(self.tokens)
        here, before = self._positions.get(index), self._positions.get(index - 1)
        banned = set(here.bans) if here else set()
        if rules.token_id is not None and not rules.enabled:
            banned.add(rules.token_id)
        if before and before.deletes >= rules.max_per_position:
            banned |= before.delete_starts  # that token stays
        return banned


def judge_delete(rules: DeleteRules, reply: ReplyEdits, deletes: int, hidden: int = 0) -> str:
    """What a delete asked for now does, after `deletes` in this reply; `hidden` of the reply's newest
    tokens are a marker's own, which go in any case."""
    if not rules.enabled or reply.deletable() <= hidden:
        return REFUSED
    if deletes >= rules.max_deletes:
        return OVER_BUDGET
    return DELETED


def delete_last(rules: DeleteRules, reply: ReplyEdits, deletes: int, start: int) -> str:
    """Judge a delete that began with `start` and carry it out on a reply that is its tokens alone (the
    trainer's rollouts; the engine also takes back text and cache): refused, it is banned here; allowed,
    the last token goes and the position records it. Returns the verdict."""
    verdict = judge_delete(rules, reply, deletes)
    if verdict == REFUSED:
        reply.refuse(start)
    elif verdict == DELETED:
        reply.record_delete(reply.pop(), start, ban=rules.ban_deleted)
    return verdict
