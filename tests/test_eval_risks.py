"""backspace eval reports a delete model's risks per setting: the most deletes in one reply, the longest run of
deletes, and the share of replies that deleted everything they had written."""
import json

from click.testing import CliRunner

from backspace_cli.cli.data import eval_command
from backspace_cli.data.reply_deletes import ReplyDeletes
from backspace_cli.engine.events import Delete, Token

# Tasks the tiny random model gets right now and then: a reply that holds a common letter.
TASKS = "".join(json.dumps({"prompt": f"the water {i}", "answer": letter}) + "\n"
                for i, letter in enumerate("etaoinshrdlu"))
TINY = ("--scoring", "contains", "-t", "2", "-c", "128", "--temp", "0.8")


def evaluate(tmp_path, model, *args) -> tuple[dict, dict[str, list[dict]]]:
    """eval's JSON settings by name, and its --answers records by setting."""
    tasks, answers = tmp_path / "tasks.jsonl", tmp_path / "answers.jsonl"
    tasks.write_text(TASKS)
    result = CliRunner().invoke(eval_command, [str(arg) for arg in (tasks, "-m", model, *TINY, *args, "--json",
                                                                    "--answers", answers)])
    assert result.exit_code == 0, result.output
    settings = {setting["name"]: setting for setting in json.loads(result.stdout)["settings"]}
    records: dict[str, list[dict]] = {}
    for line in answers.read_text().splitlines():
        record = json.loads(line)
        records.setdefault(record["setting"], []).append(record)
    return settings, records


def risks(setting: dict) -> tuple:
    return setting["max_deletes"], setting["longest_delete_run"], setting["share_emptied"]


def assert_risks_match_the_replies(setting: dict, replies: list[dict]) -> None:
    assert setting["max_deletes"] == max(reply["deletes"] for reply in replies)
    assert setting["longest_delete_run"] == max(reply["longest_delete_run"] for reply in replies)
    assert setting["share_emptied"] == sum(reply["emptied"] for reply in replies) / len(replies)
    for reply in replies:
        assert reply["longest_delete_run"] <= reply["deletes"]
        assert reply["deletes"] > 0 or not reply["emptied"]


def test_a_run_is_deletes_with_no_token_between_them_and_emptied_is_deleting_back_to_nothing():
    replies = {
        "two back, one more": [Token(1, "a"), Token(2, "b"), Token(3, "c"), Delete(3, "c"), Delete(2, "b"),
                               Token(4, "d"), Delete(4, "d")],
        "all of it, then more": [Token(1, "a"), Token(2, "b"), Delete(2, "b"), Delete(1, "a"), Token(5, "e")],
        "never": [Token(1, "a")],
    }
    found = {}
    for name, events in replies.items():
        deletes = ReplyDeletes()
        for event in events:
            deletes.add(event)
        found[name] = (deletes.longest_run, deletes.emptied)
    assert found == {"two back, one more": (2, False), "all of it, then more": (2, True), "never": (0, False)}


def test_a_forced_delete_empties_every_reply_one_token_at_a_time(tmp_path, tiny_llama_path):
    # A delete on an empty reply is refused, so the model writes one token before each delete.
    settings, records = evaluate(tmp_path, tiny_llama_path, "-n", "6", "--limit", "4", "--logit-bias",
                                 "<|delete|>=100")
    forced, banned = settings["deletes"], settings["no-delete"]
    assert forced["max_deletes"] > 1 and forced["longest_delete_run"] == 1 and forced["share_emptied"] == 1.0
    assert risks(banned) == (0, 0, 0.0)
    for name in ("deletes", "no-delete"):
        assert_risks_match_the_replies(settings[name], records[name])


def test_a_strong_delete_bias_gives_runs_and_emptied_replies_and_a_banned_delete_none(tmp_path, tiny_llama_path):
    settings, records = evaluate(tmp_path, tiny_llama_path, "-n", "12", "--logit-bias", "<|delete|>=20")
    biased, banned = settings["deletes"], settings["no-delete"]
    assert biased["longest_delete_run"] > 1 and 0 < biased["share_emptied"] < 1
    assert risks(banned) == (0, 0, 0.0)
    for name in ("deletes", "no-delete"):
        assert_risks_match_the_replies(settings[name], records[name])


def test_the_table_shows_the_risks(tmp_path, tiny_llama_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(TASKS)
    result = CliRunner().invoke(eval_command, [str(arg) for arg in (tasks, "-m", tiny_llama_path, *TINY, "-n", "6",
                                                                    "--limit", "2", "--logit-bias", "<|delete|>=100")])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 2}
    assert [cell.strip() for cell in rows["emptied a reply"].split("│")[2:4]] == ["100.0%", "0.0%"]
    assert [cell.strip() for cell in rows["longest run"].split("│")[2:4]] == ["1", "0"]
    assert "most deletes" in rows
