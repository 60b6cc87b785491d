"""DermAI machine learning: a framework-free package (PyTorch, no Django)."""

# ISIC 2018 Task 3 column order: the order of every tensor, CSV and API list in the project.
CLASS_CODES: tuple[str, ...] = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
