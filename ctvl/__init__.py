"""ctvl: a 3D CT vision-language toolkit.

Layers (data flows top to bottom, lower layers never import higher ones):
``io`` → ``data`` → ``tokenizers`` → ``report`` / ``synthesis`` → ``eval`` → ``train`` → ``cli``.
"""

__version__ = "0.1.0"
