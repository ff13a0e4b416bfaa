"""ctvl: a 3D CT vision-language toolkit.

Layers, top to bottom (a module imports only from its own layer's package or from layers below it;
``pyproject.toml``'s ``[tool.importlinter]`` states them and ``tests/test_layers.py`` checks them):

1. ``__main__``, ``cli``, ``commands``: the command line (``commands`` is one module per command group);
2. ``viewer`` | ``bench``: the Gradio viewer and the benchmarks;
3. ``eval``: clinical labeler, metrics, reconstruction and generation evaluation;
4. ``report`` | ``synthesis``: report generation and text-to-CT generation;
5. ``tokenizers``: the causal 3D tokenizer, general-domain tokenizers, quantizers, token reduction;
6. ``data``: preprocessing spec and transforms, labels, phantom, datasets;
7. ``io`` | ``train``: volume I/O, bundles; the model-agnostic trainer (loops, strategies, resume);
8. ``atomic`` | ``psnr``: atomic file/folder writes, PSNR from MSE;
9. ``errors``: the one-line errors every layer raises.

No two sibling modules import each other, directly or round a longer loop. Modules import ctvl
modules at the top, with three kinds of exception, each said where it happens: the command line,
viewer and benchmarks defer their stacks into the functions that use them (``ctvl --help`` answers at
once, the viewer serves a page before any model loads, a benchmark times the imports it measures); a
hot path keeps out what it rarely needs (report generation, the reduction kinds, anti-aliasing); and a
heavy third-party library used by one function (matplotlib, scipy, SimpleITK, pydicom, transformers,
scikit-learn, pycocoevalcap) is imported in that function.
"""

__version__ = "0.1.0"
