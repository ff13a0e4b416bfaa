"""ctvl: a 3D CT vision-language toolkit.

Layers (data flows top to bottom, lower layers never import higher ones):
``io`` → ``data`` → ``tokenizers`` → ``report`` / ``synthesis`` → ``eval`` → ``train`` → ``cli``.
Below them all, :mod:`ctvl.errors` (one-line errors) and :mod:`ctvl.atomic` (atomic file and folder
writes) import nothing from ctvl and serve every layer.
"""

__version__ = "0.1.0"
