"""DermAI machine learning: a framework-free package (PyTorch, no Django)."""

from pathlib import Path

# ISIC 2018 Task 3 column order: the order of every tensor, CSV and API list in the project.
CLASS_CODES: tuple[str, ...] = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")

# The model that ships with the project (see ml/MODEL_CARD.md).
SHIPPED_CHECKPOINT = Path(__file__).parent / "weights" / "simplebnconv-v4.pt"
# The opt-in accurate model: a fine-tuned EfficientNet-Lite0 the site serves when DERMAI_CHECKPOINT names it.
ACCURATE_CHECKPOINT = Path(__file__).parent / "weights" / "efficientnet-lite0-v3.pt"
