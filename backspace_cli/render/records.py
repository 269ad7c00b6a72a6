"""An event as plain JSON data: the one shape of --format jsonl, the server's edit stream and a saved chat's edits."""
from ..engine.events import Delete, Event, Token


def event_record(event: Event) -> dict:
    """A Token or Delete as its type, id and text; a Done as its finish reason, text, counts and rates."""
    if isinstance(event, Token):
        return {"type": "token", "id": event.id, "text": event.text}
    if isinstance(event, Delete):
        return {"type": "delete", "id": event.id, "text": event.text}
    return {
        "type": "done",
        "finish_reason": event.finish_reason,
        "text": event.text,
        "tokens": event.counts.tokens,
        "generated": event.counts.generated,
        "deletes": event.counts.deletes,
        "prompt_tokens": event.counts.prompt_tokens,
        "prompt_tps": round(event.prompt_tps, 2),
        "gen_tps": round(event.gen_tps, 2),
    }
