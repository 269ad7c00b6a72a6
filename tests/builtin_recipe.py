"""What the built-in model's recipe (training/recipe.json) says the model is: its description and examples."""
import json
from pathlib import Path

RECIPE = json.loads((Path(__file__).resolve().parent.parent / "training" / "recipe.json").read_text(encoding="utf-8"))
DESCRIPTION: str = RECIPE["description"]
EXAMPLES: tuple[str, ...] = tuple(RECIPE["examples"])
