"""What the built-in model's recipe (its last run's, training/recipe-chats.json) says the model is: its description and examples."""
import json
from pathlib import Path

RECIPE_FILE = Path(__file__).resolve().parent.parent / "training" / "recipe-chats.json"
RECIPE = json.loads(RECIPE_FILE.read_text(encoding="utf-8"))
DESCRIPTION: str = RECIPE["description"]
EXAMPLES: tuple[str, ...] = tuple(RECIPE["examples"])
